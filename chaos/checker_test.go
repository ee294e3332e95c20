package chaos_test

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/chaos"
	"github.com/sluicehq/sluice/jobs"
)

// job is a final stored state for the checker tests.
func job(id int64, state jobs.State, attempt int) *jobs.Job {
	return &jobs.Job{ID: id, State: state, Attempt: attempt}
}

func check(t *testing.T, log string, final ...*jobs.Job) *chaos.Report {
	t.Helper()
	lg, err := chaos.ReadLog(strings.NewReader(log))
	if err != nil {
		t.Fatal(err)
	}
	return chaos.Checker{}.Check(lg, final)
}

func TestCheckerRules(t *testing.T) {
	type want struct {
		ok                                         bool
		lost, phantom, unexplained, shutdown, dups []int64
		interrupted, unacked                       []int64
		inFlight                                   int
	}
	cases := []struct {
		name  string
		log   string
		final []*jobs.Job
		want  want
	}{{
		name: "clean run",
		log: `accept 1
accept 2
start 1 1 1
start 2 1 1
done 2 1 1
done 1 1 1
end 1 term
`,
		final: []*jobs.Job{job(1, jobs.StateSucceeded, 1), job(2, jobs.StateSucceeded, 1)},
		want:  want{ok: true},
	}, {
		name: "lost: not succeeded, missing, no done line",
		log: `accept 1
accept 2
accept 3
start 1 1 1
end 1 term
start 3 1 2
end 2 kill
`,
		final: []*jobs.Job{job(1, jobs.StateWaiting, 0), job(3, jobs.StateSucceeded, 1)},
		want:  want{lost: []int64{1, 2, 3}, interrupted: []int64{1}, inFlight: 1},
	}, {
		name: "duplicate after a graceful stop is unexplained",
		log: `accept 1
start 1 1 1
done 1 1 1
end 1 term
start 1 2 2
done 1 2 2
end 2 term
`,
		final: []*jobs.Job{job(1, jobs.StateSucceeded, 2)},
		want:  want{unexplained: []int64{1}, shutdown: []int64{1}},
	}, {
		name: "duplicate after a kill is allowed",
		log: `accept 1
start 1 1 1
done 1 1 1
end 1 kill
start 1 2 2
done 1 2 2
end 2 term
`,
		final: []*jobs.Job{job(1, jobs.StateSucceeded, 2)},
		want:  want{ok: true, dups: []int64{1}},
	}, {
		name: "duplicate within the killed incarnation itself is unexplained",
		log: `accept 1
start 1 1 1
done 1 1 1
start 1 2 1
done 1 2 1
end 1 kill
`,
		final: []*jobs.Job{job(1, jobs.StateSucceeded, 2)},
		want:  want{unexplained: []int64{1}, shutdown: []int64{1}},
	}, {
		name: "two kills explain two repeats",
		log: `accept 1
start 1 1 1
done 1 1 1
end 1 kill
start 1 2 2
done 1 2 2
end 2 kill
start 1 3 3
done 1 3 3
end 3 term
`,
		final: []*jobs.Job{job(1, jobs.StateSucceeded, 3)},
		want:  want{ok: true, dups: []int64{1}},
	}, {
		name: "in flight at a kill, run again: no duplicate effect",
		log: `accept 1
start 1 1 1
end 1 kill
start 1 2 2
done 1 2 2
end 2 term
`,
		final: []*jobs.Job{job(1, jobs.StateSucceeded, 2)},
		want:  want{ok: true, inFlight: 1},
	}, {
		name: "attempt used by a graceful shutdown",
		log: `accept 1
start 1 1 1
end 1 term
start 1 2 2
done 1 2 2
end 2 term
`,
		final: []*jobs.Job{job(1, jobs.StateSucceeded, 2)},
		want:  want{shutdown: []int64{1}, interrupted: []int64{1}},
	}, {
		name: "interrupted by a graceful shutdown and released: attempt given back",
		log: `accept 1
start 1 1 1
end 1 term
start 1 1 2
done 1 1 2
end 2 term
`,
		final: []*jobs.Job{job(1, jobs.StateSucceeded, 1)},
		want:  want{ok: true, interrupted: []int64{1}},
	}, {
		name: "claimed, then killed before its handler began",
		log: `accept 1
end 1 kill
start 1 2 2
done 1 2 2
end 2 term
`,
		final: []*jobs.Job{job(1, jobs.StateSucceeded, 2)},
		want:  want{ok: true},
	}, {
		name: "claimed and never started with no kill to explain it",
		log: `accept 1
end 1 term
start 1 2 2
done 1 2 2
end 2 term
`,
		final: []*jobs.Job{job(1, jobs.StateSucceeded, 2)},
		want:  want{shutdown: []int64{1}},
	}, {
		name: "one kill explains one attempt",
		log: `accept 1
start 1 1 1
end 1 kill
start 1 3 2
done 1 3 2
end 2 term
`,
		final: []*jobs.Job{job(1, jobs.StateSucceeded, 3)},
		want:  want{shutdown: []int64{1}, inFlight: 1},
	}, {
		name: "phantom success",
		log: `accept 1
start 1 1 1
done 1 1 1
end 1 kill
start 1 2 2
end 2 term
`,
		final: []*jobs.Job{job(1, jobs.StateSucceeded, 2)},
		want:  want{phantom: []int64{1}, dups: []int64{1}, interrupted: []int64{1}},
	}, {
		name: "an unacknowledged job need not succeed",
		log: `start 9 1 1
end 1 term
`,
		final: []*jobs.Job{job(9, jobs.StateWaiting, 0)},
		want:  want{ok: true, interrupted: []int64{9}, unacked: []int64{9}},
	}, {
		name: "an unacknowledged job must not repeat its effect",
		log: `start 9 1 1
done 9 1 1
end 1 term
start 9 2 2
done 9 2 2
end 2 term
`,
		final: []*jobs.Job{job(9, jobs.StateSucceeded, 2)},
		want:  want{unexplained: []int64{9}, unacked: []int64{9}},
	}}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := check(t, c.log, c.final...)
			eq := func(what string, got, want []int64) {
				t.Helper()
				if !slices.Equal(got, want) {
					t.Errorf("%s = %v, want %v", what, got, want)
				}
			}
			eq("lost", r.Lost, c.want.lost)
			eq("phantom", r.Phantom, c.want.phantom)
			eq("unexplained duplicates", r.UnexplainedDuplicates, c.want.unexplained)
			eq("shutdown attempts", r.ShutdownAttempts, c.want.shutdown)
			eq("allowed duplicates", r.AllowedDuplicates, c.want.dups)
			eq("interrupted", r.Interrupted, c.want.interrupted)
			eq("unacknowledged", r.Unacknowledged, c.want.unacked)
			if r.InFlightAtKill != c.want.inFlight {
				t.Errorf("in flight at kills = %d, want %d", r.InFlightAtKill, c.want.inFlight)
			}
			if err := r.Err(); (err == nil) != c.want.ok {
				t.Errorf("Err() = %v, want ok %v", err, c.want.ok)
			}
			if r.OK() != c.want.ok {
				t.Errorf("OK() = %v, want %v", r.OK(), c.want.ok)
			}
			if t.Failed() {
				t.Logf("report: %s\nproblems: %q", r, r.Problems)
			}
		})
	}
}

func TestCheckerErrListsJobs(t *testing.T) {
	r := check(t, "accept 7\naccept 8\nstart 8 1 1\ndone 8 1 1\nstart 8 2 1\ndone 8 2 1\nend 1 term\n",
		job(8, jobs.StateSucceeded, 2))
	err := r.Err()
	if err == nil {
		t.Fatal("Err() = nil")
	}
	for _, want := range []string{"lost: 1 [7]", "unexplained duplicates: 1 [8]", "attempts used by shutdown: 1 [8]", "job 7:", "job 8:"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Err() lacks %q:\n%v", want, err)
		}
	}
	if r.Unacknowledged != nil {
		t.Errorf("unacknowledged = %v", r.Unacknowledged)
	}
}

func TestReadLogTornLines(t *testing.T) {
	// The killed process's last line was cut short and the orchestrator's
	// end line landed right after it; the file's last line is torn too.
	log := "accept 1\nstart 1 1 1\ndone 1 1 1\nstart 2 1end 1 kill\n\nstart 1 2 2\ndone 1 2 2\nend 2 kill\ndone 1 2"
	lg, err := chaos.ReadLog(strings.NewReader(log))
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"start 2 1", "done 1 2"}; !slices.Equal(lg.Torn, want) {
		t.Fatalf("torn = %q, want %q", lg.Torn, want)
	}
	if n := len(lg.Events); n != 7 {
		t.Fatalf("%d events, want 7: %v", n, lg.Events)
	}
	r := chaos.Checker{}.Check(lg, []*jobs.Job{job(1, jobs.StateSucceeded, 2)})
	if err := r.Err(); err != nil {
		t.Fatalf("two torn lines, two kills: %v", err)
	}
	lg.Torn = append(lg.Torn, "xx")
	if r := (chaos.Checker{}).Check(lg, []*jobs.Job{job(1, jobs.StateSucceeded, 2)}); !r.TooManyTorn || r.Err() == nil {
		t.Fatalf("three torn lines, two kills: TooManyTorn %v, Err %v", r.TooManyTorn, r.Err())
	}
}

func TestEffectLogConcurrentAppends(t *testing.T) {
	path := filepath.Join(t.TempDir(), "effects.log")
	const writers, each = 8, 200
	var wg sync.WaitGroup
	for w := range writers {
		el, err := chaos.OpenEffectLog(path) // one file handle each, like separate processes
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer el.Close()
			h := &chaos.EffectHandler{Log: el, Incarnation: w + 1}
			for i := range each {
				if err := h.Work(context.Background(), &jobs.Job{ID: int64(w*each + i + 1), Attempt: 1}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	lg, err := chaos.ReadLogFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(lg.Torn) != 0 || len(lg.Events) != 2*writers*each {
		t.Fatalf("%d events and %d torn lines, want %d and 0", len(lg.Events), len(lg.Torn), 2*writers*each)
	}
	seen := make(map[string]bool)
	for _, e := range lg.Events {
		k := fmt.Sprint(e)
		if seen[k] {
			t.Fatalf("line %q twice", k)
		}
		seen[k] = true
	}
}

func TestEffectHandlerErrorWritesNoDone(t *testing.T) {
	path := filepath.Join(t.TempDir(), "effects.log")
	el, err := chaos.OpenEffectLog(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	h := &chaos.EffectHandler{Log: el, Incarnation: 3, Do: chaos.RandomSleep(time.Hour, time.Hour, 1)}
	if err := h.Work(ctx, &jobs.Job{ID: 5, Attempt: 2}); err == nil {
		t.Fatal("Work with an ended context returned nil")
	}
	el.Close()
	lg, err := chaos.ReadLogFile(path)
	if err != nil {
		t.Fatal(err)
	}
	want := []chaos.Event{{Op: chaos.OpStart, Job: 5, Attempt: 2, Incarnation: 3}}
	if !slices.Equal(lg.Events, want) {
		t.Fatalf("events %v, want %v", lg.Events, want)
	}
}
