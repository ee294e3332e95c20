package chaos_test

import (
	"context"
	"errors"
	"io"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/sluicehq/sluice/chaos"
)

func TestSummarizeNearestRank(t *testing.T) {
	var s []time.Duration
	for i := 100; i >= 1; i-- { // unsorted on purpose
		s = append(s, time.Duration(i))
	}
	got := chaos.Summarize(s)
	if got != (chaos.Latencies{N: 100, P50: 50, P90: 90, P99: 99, Max: 100}) {
		t.Fatalf("Summarize(1..100) = %+v", got)
	}
	if s[0] != 100 {
		t.Fatal("Summarize sorted its argument")
	}
	if got := chaos.Summarize([]time.Duration{7}); got.P99 != 7 || got.P50 != 7 {
		t.Fatalf("one sample: %+v", got)
	}
	if got := chaos.Summarize([]time.Duration{1, 2, 3}); got.P50 != 2 {
		t.Fatalf("p50 of 1,2,3 = %v", got.P50)
	}
	if got := chaos.Summarize(nil); got.N != 0 {
		t.Fatalf("no samples: %+v", got)
	}
}

// TestOpenLoopKeepsTheSchedule runs the generator on a fake clock: every
// arrival is sent at its due time, a send that fails is counted, and a
// slow sender makes later arrivals late or missed instead of slowing the
// schedule down.
func TestOpenLoopKeepsTheSchedule(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		sentAt := map[int64]time.Duration{}
		start := time.Now()
		boom := errors.New("boom")
		st, err := chaos.OpenLoop{Rate: 100, N: 50, Senders: 2}.Run(context.Background(), func(_ context.Context, i int64) error {
			mu.Lock()
			defer mu.Unlock()
			sentAt[i] = time.Since(start)
			if i == 7 {
				return boom
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if st.Due != 50 || st.Sent != 49 || st.Errs != 1 || st.Late != 0 || st.Missed != 0 || st.FirstErr != boom {
			t.Fatalf("stats %+v", st)
		}
		for i := range int64(50) {
			want := 20*time.Millisecond + time.Duration(i)*10*time.Millisecond
			if sentAt[i] != want {
				t.Fatalf("arrival %d sent at %v, want %v", i, sentAt[i], want)
			}
		}

		// One sender that takes 300 ms per call at 100/s: it falls behind,
		// so arrivals are late, and those more than MissAfter behind are
		// skipped; the run still ends about on time.
		begin := time.Now()
		st, err = chaos.OpenLoop{Rate: 100, N: 100, MissAfter: 500 * time.Millisecond}.Run(context.Background(), func(context.Context, int64) error {
			time.Sleep(300 * time.Millisecond)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if st.Late == 0 || st.Missed == 0 || st.Sent+st.Missed != 100 {
			t.Fatalf("slow sender: %+v", st)
		}
		if d := time.Since(begin); d > 2*time.Second {
			t.Fatalf("a 1 s schedule took %v", d)
		}
	})
}

func TestOpenLoopReport(t *testing.T) {
	loop := chaos.OpenLoop{Rate: 100, N: 3}
	st := chaos.LoadStats{Due: 3, Sent: 3}
	var out strings.Builder
	if err := loop.Report(&out, time.Second, st, []time.Duration{time.Millisecond, 2 * time.Millisecond, 3 * time.Millisecond}, time.Second); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "arrivals: 3 due at 100/s over 1s: 3 enqueued") ||
		!strings.Contains(out.String(), "latency: 3 jobs at 3/s: p50 2ms p90 3ms p99 3ms max 3ms") {
		t.Fatalf("report:\n%s", out.String())
	}
	if err := loop.Report(io.Discard, time.Second, st, []time.Duration{time.Millisecond}, time.Second); err == nil || !strings.Contains(err.Error(), "2 of 3 sent jobs had not started") {
		t.Fatalf("missing starts: %v", err)
	}
	if err := loop.Report(io.Discard, time.Second, chaos.LoadStats{Due: 3}, nil, time.Second); err == nil {
		t.Fatal("a run that sent nothing reported no error")
	}
}
