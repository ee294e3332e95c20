package storetest

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/sluicehq/sluice/jobs"
)

var fetchTests = []subtest{
	{"Claims", func(h *h) {
		j := h.enqueue1(T0, job("q"))
		got := h.fetch(at(time.Second), "q", "w1", 10, 30*time.Second)
		if len(got) != 1 {
			h.t.Fatalf("Fetch claimed %d jobs, want 1", len(got))
		}
		want := *j
		want.State, want.Attempt, want.LeaseOwner = jobs.StateRunning, 1, "w1"
		want.LeaseExpiresAt, want.UpdatedAt = at(31*time.Second), at(time.Second)
		h.wantSameJob("fetched job", got[0], &want)
		h.wantSameJob("Get after Fetch", h.get(j.ID), &want)
		if again := h.fetch(at(2*time.Second), "q", "w2", 10, 30*time.Second); len(again) != 0 {
			h.t.Errorf("a second Fetch claimed running job(s) %v", ids(again))
		}
	}},
	{"Texts", func(h *h) {
		// A fetched job's idempotency key, group and last error, with
		// separators and non-ASCII letters in them, are those Get reads.
		n := job("q")
		n.IdempotencyKey, n.Group = "k;1,2;", ",g;ü"
		h.enqueue1(T0, n)
		j := h.fetch1(T0, "q", "w", time.Minute)
		h.wantSameJob("fetched job", j, h.get(j.ID))
		o := ok(j, jobs.Retry)
		o.Error = "3,4;err ✗"
		h.completeOK(at(time.Second), "w", o)
		again := h.fetch1(at(time.Second), "q", "w", time.Minute)
		if again.LastError != o.Error || again.IdempotencyKey != n.IdempotencyKey || again.Group != n.Group {
			h.t.Errorf("refetched job = %s, key %q, group %q", show(again), again.IdempotencyKey, again.Group)
		}
		h.wantSameJob("refetched job", again, h.get(j.ID))
	}},
	{"Order", func(h *h) {
		// Highest priority first, then oldest RunAt, then lowest ID.
		mk := func(kind string, prio int, runAt time.Duration) jobs.NewJob {
			n := job("q")
			n.Kind, n.Priority, n.RunAt = kind, prio, at(runAt)
			return n
		}
		h.enqueue(T0, "q",
			mk("a", 0, 0), mk("b", 5, 2*time.Second), mk("c", 5, time.Second),
			mk("d", 0, 0), mk("e", 9, 3*time.Second), mk("f", 5, time.Second))
		var got []string
		for range 6 {
			got = append(got, h.fetch1(at(time.Minute), "q", "w", time.Minute).Kind)
		}
		if want := "e c f b a d"; strings.Join(got, " ") != want {
			h.t.Errorf("Fetch(limit 1) order = %v, want %s", got, want)
		}
	}},
	{"OrderWithinBatch", func(h *h) {
		// A Fetch with a limit below the waiting count takes the first
		// jobs in run order.
		var batch []jobs.NewJob
		for i := range 10 {
			n := job("q")
			n.Priority = i % 3
			batch = append(batch, n)
		}
		js := h.enqueue(T0, "q", batch...)
		got := h.fetch(T0, "q", "w", 4, time.Minute)
		want := []int64{js[2].ID, js[5].ID, js[8].ID, js[1].ID}
		if !sameIDs(ids(got), want) {
			h.t.Errorf("Fetch(limit 4) claimed %v, want %v (the three priority-2 jobs, then the oldest priority-1)", ids(got), want)
		}
	}},
	{"FutureRunAt", func(h *h) {
		n := prio("q", jobs.MaxPriority)
		n.RunAt = at(time.Minute)
		j := h.enqueue1(T0, n)
		due := h.enqueue1(T0, job("q"))
		if got := h.fetch(at(59*time.Second), "q", "w", 10, time.Minute); len(got) != 1 || got[0].ID != due.ID {
			h.t.Errorf("Fetch before RunAt claimed %v, want only the due lower-priority job %d", ids(got), due.ID)
		}
		got := h.fetch(at(time.Minute), "q", "w", 10, time.Minute)
		if len(got) != 1 || got[0].ID != j.ID {
			h.t.Errorf("Fetch at RunAt claimed %v, want [%d]", ids(got), j.ID)
		}
	}},
	{"DeadlinePassed", func(h *h) {
		a, b, c := job("q"), job("q"), job("q")
		a.Deadline, b.Deadline = at(time.Minute), at(2*time.Minute)
		js := h.enqueue(T0, "q", a, b, c)
		// At the deadline the job may no longer start.
		got := h.fetch(at(time.Minute), "q", "w", 10, time.Hour)
		if want := []int64{js[1].ID, js[2].ID}; !sameIDs(ids(got), want) {
			h.t.Fatalf("Fetch at job %d's deadline claimed %v, want %v", js[0].ID, ids(got), want)
		}
		h.wantState(js[0].ID, jobs.StateWaiting)

		n, err := h.s.ExpireDue(h.ctx, at(time.Minute))
		if err != nil || n != 1 {
			h.t.Fatalf("ExpireDue at the deadline = %d, %v, want 1, nil", n, err)
		}
		j := h.wantState(js[0].ID, jobs.StateExpired)
		h.wantTime("expired job's FinishedAt", j.FinishedAt, at(time.Minute))
		if j.Reason == "" {
			h.t.Errorf("expired job has no Reason")
		}
		// Running jobs are not expired by ExpireDue; a job without a
		// deadline never is.
		if n, err := h.s.ExpireDue(h.ctx, at(time.Hour)); err != nil || n != 0 {
			h.t.Errorf("ExpireDue with only running jobs left = %d, %v, want 0, nil", n, err)
		}
		h.wantState(js[1].ID, jobs.StateRunning)
	}},
	{"ExpireDue", func(h *h) {
		mk := func(q string, d time.Duration) jobs.NewJob {
			n := job(q)
			if d > 0 {
				n.Deadline = at(d)
			}
			return n
		}
		a := h.enqueue(T0, "q1", mk("q1", time.Minute), mk("q1", 2*time.Minute), mk("q1", 0))
		b := h.enqueue(T0, "q2", mk("q2", time.Minute))
		for _, c := range []struct {
			now  time.Duration
			want int
		}{{59 * time.Second, 0}, {time.Minute, 2}, {time.Minute, 0}, {90 * time.Second, 0}, {2 * time.Minute, 1}, {time.Hour, 0}} {
			n, err := h.s.ExpireDue(h.ctx, at(c.now))
			if err != nil || n != c.want {
				h.t.Errorf("ExpireDue(T0+%v) = %d, %v, want %d, nil", c.now, n, err, c.want)
			}
		}
		for _, id := range []int64{a[0].ID, a[1].ID, b[0].ID} {
			h.wantState(id, jobs.StateExpired)
		}
		h.wantState(a[2].ID, jobs.StateWaiting)
	}},
	{"PausedQueue", func(h *h) {
		h.putQueue(jobs.QueueConfig{Name: "p", Paused: true})
		j := h.enqueue1(T0, job("p")) // paused queues accept jobs
		if got := h.fetch(T0, "p", "w", 10, time.Minute); len(got) != 0 {
			h.t.Errorf("Fetch from a paused queue claimed %v", ids(got))
		}
		h.wantState(j.ID, jobs.StateWaiting)
		h.putQueue(jobs.QueueConfig{Name: "p"})
		if got := h.fetch(T0, "p", "w", 10, time.Minute); len(got) != 1 {
			h.t.Errorf("Fetch after resuming the queue claimed %v, want [%d]", ids(got), j.ID)
		}
	}},
	{"LimitAndQueue", func(h *h) {
		var b1, b2 []jobs.NewJob
		for range 5 {
			b1 = append(b1, job("q1"))
		}
		for range 2 {
			b2 = append(b2, job("q2"))
		}
		q1 := h.enqueue(T0, "q1", b1...)
		q2 := h.enqueue(T0, "q2", b2...)
		if got := h.fetch(T0, "q1", "w", 0, time.Minute); len(got) != 0 {
			h.t.Errorf("Fetch(limit 0) claimed %v", ids(got))
		}
		first := h.fetch(T0, "q1", "w", 3, time.Minute)
		second := h.fetch(T0, "q1", "w", 3, time.Minute)
		if len(first) != 3 || len(second) != 2 {
			h.t.Errorf("two Fetch(limit 3) from 5 jobs claimed %d then %d, want 3 then 2", len(first), len(second))
		}
		if !sameIDs(append(ids(first), ids(second)...), ids(q1)) {
			h.t.Errorf("Fetch from q1 claimed %v and %v, want q1's jobs %v", ids(first), ids(second), ids(q1))
		}
		if got := h.fetch(T0, "q2", "w", 10, time.Minute); !sameIDs(ids(got), ids(q2)) {
			h.t.Errorf("Fetch from q2 claimed %v, want %v", ids(got), ids(q2))
		}
		if got := h.fetch(T0, "none", "w", 10, time.Minute); len(got) != 0 {
			h.t.Errorf("Fetch from an unknown queue claimed %v", ids(got))
		}
	}},
}

var completeTests = []subtest{
	{"Succeeded", func(h *h) {
		h.enqueue1(T0, job("q"))
		j := h.fetch1(T0, "q", "w", time.Minute)
		h.completeOK(at(5*time.Second), "w", ok(j, jobs.Succeeded))
		got := h.wantState(j.ID, jobs.StateSucceeded)
		h.wantTime("FinishedAt", got.FinishedAt, at(5*time.Second))
		h.wantTime("UpdatedAt", got.UpdatedAt, at(5*time.Second))
		if got.Attempt != 1 {
			h.t.Errorf("Attempt = %d, want 1", got.Attempt)
		}
		// The same outcome again is not applied: the job no longer runs.
		if a := h.complete(at(6*time.Second), "w", ok(j, jobs.Succeeded)); a[0] {
			h.t.Errorf("a second Complete of a finished job was applied")
		}
		h.wantSameJob("job after a repeated Complete", h.get(j.ID), got)
	}},
	{"TerminalKinds", func(h *h) {
		for _, c := range []struct {
			kind   jobs.OutcomeKind
			state  jobs.State
			errMsg string
			reason string
		}{
			{jobs.Failed, jobs.StateFailed, "boom", "bad input"},
			{jobs.Canceled, jobs.StateCanceled, "", "user asked"},
			{jobs.Expired, jobs.StateExpired, "", "deadline passed"},
		} {
			h.enqueue1(T0, job("q"))
			j := h.fetch1(T0, "q", "w", time.Minute)
			o := ok(j, c.kind)
			o.Error, o.Reason = c.errMsg, c.reason
			h.completeOK(at(time.Second), "w", o)
			got := h.wantState(j.ID, c.state)
			h.wantTime(fmt.Sprintf("%s job's FinishedAt", c.state), got.FinishedAt, at(time.Second))
			if got.Reason != c.reason {
				h.t.Errorf("%s job's Reason = %q, want %q", c.state, got.Reason, c.reason)
			}
			if c.errMsg != "" && got.LastError != c.errMsg {
				h.t.Errorf("%s job's LastError = %q, want %q", c.state, got.LastError, c.errMsg)
			}
		}
	}},
	{"Retry", func(h *h) {
		n := job("q")
		n.MaxAttempts = 3
		h.enqueue1(T0, n)
		j := h.fetch1(T0, "q", "w", time.Minute)
		o := ok(j, jobs.Retry)
		o.RunAt, o.Error = at(time.Minute), "try again"
		h.completeOK(at(time.Second), "w", o)
		got := h.wantState(j.ID, jobs.StateWaiting)
		h.wantTime("retried job's RunAt", got.RunAt, at(time.Minute))
		if got.Attempt != 1 || got.LastError != "try again" || !got.FinishedAt.IsZero() {
			h.t.Errorf("retried job = %s, want Attempt 1, LastError %q, no FinishedAt", show(got), "try again")
		}
		if js := h.fetch(at(59*time.Second), "q", "w", 10, time.Minute); len(js) != 0 {
			h.t.Errorf("Fetch before the retry's RunAt claimed %v", ids(js))
		}
		j2 := h.fetch1(at(time.Minute), "q", "w", time.Minute)
		if j2.ID != j.ID || j2.Attempt != 2 {
			h.t.Errorf("Fetch at the retry's RunAt = %s, want job %d attempt 2", show(j2), j.ID)
		}
	}},
	{"RetryExhausted", func(h *h) {
		n := job("q")
		n.MaxAttempts = 2
		id := h.enqueue1(T0, n).ID
		for i := 1; i <= 2; i++ {
			j := h.fetch1(at(time.Duration(i)*time.Minute), "q", "w", time.Minute)
			if j.Attempt != i {
				h.t.Fatalf("attempt %d: fetched Attempt = %d", i, j.Attempt)
			}
			o := ok(j, jobs.Retry)
			o.RunAt, o.Error = at(time.Duration(i+1)*time.Minute), fmt.Sprintf("error %d", i)
			h.completeOK(at(time.Duration(i)*time.Minute+time.Second), "w", o)
		}
		got := h.get(id)
		if got.State != jobs.StateFailed {
			h.t.Fatalf("Retry of the last attempt left the job %s, want failed", show(got))
		}
		h.wantTime("FinishedAt", got.FinishedAt, at(2*time.Minute+time.Second))
		if got.LastError != "error 2" {
			h.t.Errorf("LastError = %q, want %q", got.LastError, "error 2")
		}
	}},
	{"Released", func(h *h) {
		h.enqueue1(T0, job("q"))
		j := h.fetch1(T0, "q", "w1", time.Minute)
		h.completeOK(at(time.Second), "w1", ok(j, jobs.Released))
		got := h.wantState(j.ID, jobs.StateWaiting)
		if got.Attempt != 0 {
			h.t.Errorf("released job's Attempt = %d, want 0 (a release does not use the attempt)", got.Attempt)
		}
		h.wantTime("RunAt after a release without RunAt", got.RunAt, T0)
		j2 := h.fetch1(at(time.Second), "q", "w2", time.Minute)
		if j2.ID != j.ID || j2.Attempt != 1 || j2.LeaseOwner != "w2" {
			h.t.Errorf("Fetch right after the release = %s, want job %d attempt 1 owned by w2", show(j2), j.ID)
		}
	}},
	{"ReleasedWithRunAt", func(h *h) {
		// A handler that withheld the work (a saturated dependency) hands
		// the job back for later without using the attempt.
		h.enqueue1(T0, job("q"))
		j := h.fetch1(T0, "q", "w1", time.Minute)
		o := ok(j, jobs.Released)
		o.RunAt = at(time.Minute)
		h.completeOK(at(time.Second), "w1", o)
		got := h.wantState(j.ID, jobs.StateWaiting)
		if got.Attempt != 0 {
			h.t.Errorf("Attempt = %d, want 0", got.Attempt)
		}
		h.wantTime("RunAt", got.RunAt, at(time.Minute))
		if js := h.fetch(at(30*time.Second), "q", "w2", 10, time.Minute); len(js) != 0 {
			h.t.Errorf("fetched %v before its RunAt", ids(js))
		}
		if j2 := h.fetch1(at(time.Minute), "q", "w2", time.Minute); j2.ID != j.ID || j2.Attempt != 1 {
			h.t.Errorf("Fetch at RunAt = %s", show(j2))
		}
	}},
	{"Fencing", func(h *h) {
		h.enqueue1(T0, job("q"))
		old := h.fetch1(T0, "q", "w1", 10*time.Second)
		if n := h.recover(at(11 * time.Second)); n != 1 {
			h.t.Fatalf("RecoverLeases = %d, want 1", n)
		}
		cur := h.fetch1(at(11*time.Second), "q", "w2", time.Minute)
		if cur.Attempt != 2 {
			h.t.Fatalf("refetched Attempt = %d, want 2", cur.Attempt)
		}
		before := h.get(cur.ID)

		stale := ok(old, jobs.Succeeded)
		wrongOwner := ok(cur, jobs.Failed)
		unknown := jobs.Outcome{Attempt: jobs.Attempt{ID: cur.ID + 1000, Attempt: 1}, Kind: jobs.Succeeded}
		if a := h.complete(at(12*time.Second), "w1", stale, wrongOwner, unknown); a[0] || a[1] || a[2] {
			h.t.Errorf("Complete by the old owner (stale attempt, foreign attempt, unknown job) applied = %v, want all false", a)
		}
		h.wantSameJob("job after fenced-off outcomes", h.get(cur.ID), before)

		if a := h.complete(at(13*time.Second), "w2", ok(old, jobs.Failed), ok(cur, jobs.Succeeded)); a[0] || !a[1] {
			h.t.Errorf("Complete(stale attempt, current attempt) by the current owner applied = %v, want [false true]", a)
		}
		h.wantState(cur.ID, jobs.StateSucceeded)
	}},
	{"LargeBatch", func(h *h) {
		// Many outcomes in one call, each fenced on its own.
		js := h.claim("q", "w", 10)
		var os []jobs.Outcome
		for _, j := range js[:6] {
			os = append(os, ok(j, jobs.Succeeded))
		}
		stale := ok(js[6], jobs.Succeeded)
		stale.Attempt.Attempt = 2
		unknown := jobs.Outcome{Attempt: jobs.Attempt{ID: js[9].ID + 1000, Attempt: 1}, Kind: jobs.Succeeded}
		os = append(os, stale, unknown, ok(js[0], jobs.Succeeded), ok(js[7], jobs.Failed),
			ok(js[8], jobs.Succeeded), ok(js[9], jobs.Succeeded))
		got := h.complete(at(time.Second), "w", os...)
		want := []bool{true, true, true, true, true, true, false, false, false, true, true, true}
		if !slices.Equal(got, want) {
			h.t.Errorf("applied = %v, want %v (stale attempt, unknown job, second outcome for one job not applied)", got, want)
		}
		for i, j := range js {
			state := jobs.StateSucceeded
			switch i {
			case 6:
				state = jobs.StateRunning
			case 7:
				state = jobs.StateFailed
			}
			h.wantState(j.ID, state)
		}
		// Another owner's batch applies nothing.
		js = h.claim("q", "w", 10)
		os = os[:0]
		for _, j := range js {
			os = append(os, ok(j, jobs.Succeeded))
		}
		if got := h.complete(at(time.Second), "intruder", os...); slices.Contains(got, true) {
			h.t.Errorf("another owner's outcomes applied = %v, want all false", got)
		}
		// The owner's batch applies in full.
		if got := h.complete(at(2*time.Second), "w", os...); slices.Contains(got, false) {
			h.t.Errorf("the owner's outcomes applied = %v, want all true", got)
		}
		for _, j := range js {
			h.wantTime("FinishedAt", h.wantState(j.ID, jobs.StateSucceeded).FinishedAt, at(2*time.Second))
		}
	}},
	{"OutlandishAttempt", func(h *h) {
		// An outcome whose attempt number no fetch gave applies to
		// nothing, however a store encodes attempts: 1<<20+1, 1<<32+1
		// and 1<<62+1 for the job before another running job.
		js := h.claim("q", "w", 6)
		for _, n64 := range []int64{1<<20 + 1, 1<<32 + 1, 1<<62 + 1} {
			if n64 > math.MaxInt {
				continue // 32-bit int
			}
			n := int(n64)
			bogus := ok(js[0], jobs.Succeeded)
			bogus.Attempt.Attempt = n
			os := []jobs.Outcome{bogus}
			for _, j := range js[2:] {
				o := ok(j, jobs.Succeeded)
				o.Attempt.Attempt = 2 // stale: none applies
				os = append(os, o)
			}
			if got := h.complete(at(time.Second), "w", os...); slices.Contains(got, true) {
				h.t.Errorf("attempt %d: applied = %v, want all false", n, got)
			}
			for _, j := range js {
				h.wantState(j.ID, jobs.StateRunning)
			}
			if lost, _ := h.heartbeat(at(time.Second), "w", time.Hour, bogus.Attempt); !sameIDs(lost, []int64{js[0].ID}) {
				h.t.Errorf("attempt %d: Heartbeat lost = %v, want [%d]", n, lost, js[0].ID)
			}
			h.wantTime("LeaseExpiresAt", h.get(js[0].ID).LeaseExpiresAt, at(time.Minute))
		}
	}},
	{"Batch", func(h *h) {
		var batch []jobs.NewJob
		for range 4 {
			batch = append(batch, job("q"))
		}
		h.enqueue(T0, "q", batch...)
		js := h.fetch(T0, "q", "w", 4, time.Minute)
		if len(js) != 4 {
			h.t.Fatalf("Fetch claimed %d, want 4", len(js))
		}
		retry := ok(js[1], jobs.Retry)
		retry.RunAt = at(time.Hour)
		h.completeOK(at(time.Second), "w", ok(js[0], jobs.Succeeded), retry, ok(js[2], jobs.Failed), ok(js[3], jobs.Released))
		for i, want := range []jobs.State{jobs.StateSucceeded, jobs.StateWaiting, jobs.StateFailed, jobs.StateWaiting} {
			h.wantState(js[i].ID, want)
		}
	}},
}
