package storetest

import (
	"errors"
	"time"

	"github.com/sluicehq/sluice/jobs"
)

// member returns a job of group g in queue q with priority p.
func member(q, g string, p int) jobs.NewJob {
	n := prio(q, p)
	n.Group = g
	return n
}

// wantGroup fails unless group g's counts are want (states not in want
// must count zero).
func (h *h) wantGroup(g string, want map[jobs.State]int) {
	h.t.Helper()
	got, err := h.s.Group(h.ctx, g)
	if err != nil {
		h.t.Fatalf("Group(%q): %v", g, err)
	}
	for _, s := range []jobs.State{jobs.StateWaiting, jobs.StateRunning, jobs.StateSucceeded,
		jobs.StateFailed, jobs.StateCanceled, jobs.StateExpired, jobs.StateShed} {
		if got[s] != want[s] {
			h.t.Errorf("Group(%q) = %v, want %v", g, got, want)
			return
		}
	}
}

var groupTests = []subtest{
	{"Counts", func(h *h) {
		h.enqueue(T0, "q", member("q", "g", 2), member("q", "g", 1), member("q", "g", 0), member("q", "other", 0))
		h.enqueue(T0, "q2", member("q2", "g", 0)) // groups span queues
		first := h.fetch1(T0, "q", "w", time.Minute)
		h.completeOK(T0, "w", ok(first, jobs.Succeeded))
		h.fetch1(T0, "q", "w", time.Minute)
		h.wantGroup("g", map[jobs.State]int{jobs.StateWaiting: 2, jobs.StateRunning: 1, jobs.StateSucceeded: 1})
		h.wantGroup("other", map[jobs.State]int{jobs.StateWaiting: 1})
	}},
	{"NotFound", func(h *h) {
		h.enqueue(T0, "q", member("q", "g", 0))
		if _, err := h.s.Group(h.ctx, "nope"); !errors.Is(err, jobs.ErrNotFound) {
			h.t.Errorf("Group(unknown): err = %v, want ErrNotFound", err)
		}
	}},
	{"CancelOnFailure", func(h *h) {
		failing := member("q", "g", 8)
		failing.CancelGroupOnFailure = true
		js := h.enqueue(T0, "q", member("q", "g", 9), failing, member("q", "g", 7), member("q", "g", 0), member("q", "h", 0))
		done, fail, running, waiting, outsider := js[0], js[1], js[2], js[3], js[4]
		h.enqueue(T0, "q2", member("q2", "g", 0))
		otherQueue := h.list(jobs.ListFilter{Queue: "q2"})[0]

		d := h.fetch1(T0, "q", "w", time.Minute)
		h.completeOK(T0, "w", ok(d, jobs.Succeeded))
		f := h.fetch1(T0, "q", "w", time.Minute)
		r := h.fetch1(T0, "q", "w", time.Minute)
		if f.ID != fail.ID || r.ID != running.ID {
			h.t.Fatalf("fetched %d and %d, want %d and %d", f.ID, r.ID, fail.ID, running.ID)
		}
		o := ok(f, jobs.Failed)
		o.Error = "fatal"
		h.completeOK(at(time.Second), "w", o)

		h.wantState(fail.ID, jobs.StateFailed)
		for _, id := range []int64{waiting.ID, otherQueue.ID} {
			c := h.wantState(id, jobs.StateCanceled)
			h.wantTime("canceled group job's FinishedAt", c.FinishedAt, at(time.Second))
			if c.Reason == "" {
				h.t.Errorf("job %d canceled by its group's failure has no Reason", id)
			}
		}
		if got := h.wantState(running.ID, jobs.StateRunning); !got.CancelRequested {
			h.t.Errorf("running group job after the group's failure = %s, want CancelRequested", show(got))
		}
		if _, cancel := h.heartbeat(at(2*time.Second), "w", time.Minute, att(r)); !sameIDs(cancel, []int64{r.ID}) {
			h.t.Errorf("Heartbeat cancel = %v, want [%d]", cancel, r.ID)
		}
		h.wantState(done.ID, jobs.StateSucceeded)
		h.wantState(outsider.ID, jobs.StateWaiting)
		h.wantGroup("g", map[jobs.State]int{jobs.StateSucceeded: 1, jobs.StateFailed: 1, jobs.StateRunning: 1, jobs.StateCanceled: 2})
	}},
	{"RetryDoesNotCancel", func(h *h) {
		failing := member("q", "g", 1)
		failing.CancelGroupOnFailure, failing.MaxAttempts = true, 3
		js := h.enqueue(T0, "q", failing, member("q", "g", 0))
		f := h.fetch1(T0, "q", "w", time.Minute)
		o := ok(f, jobs.Retry)
		o.RunAt = at(time.Hour)
		h.completeOK(at(time.Second), "w", o)
		h.wantState(js[0].ID, jobs.StateWaiting)
		h.wantState(js[1].ID, jobs.StateWaiting)
	}},
	{"FinalRetryCancels", func(h *h) {
		failing := member("q", "g", 1)
		failing.CancelGroupOnFailure, failing.MaxAttempts = true, 1
		js := h.enqueue(T0, "q", failing, member("q", "g", 0))
		f := h.fetch1(T0, "q", "w", time.Minute)
		o := ok(f, jobs.Retry)
		o.RunAt = at(time.Hour)
		h.completeOK(at(time.Second), "w", o)
		h.wantState(js[0].ID, jobs.StateFailed)
		h.wantState(js[1].ID, jobs.StateCanceled)
	}},
	{"WithoutFlag", func(h *h) {
		js := h.enqueue(T0, "q", member("q", "g", 1), member("q", "g", 0))
		f := h.fetch1(T0, "q", "w", time.Minute)
		h.completeOK(at(time.Second), "w", ok(f, jobs.Failed))
		h.wantState(js[0].ID, jobs.StateFailed)
		h.wantState(js[1].ID, jobs.StateWaiting)
	}},
}

var cancelTests = []subtest{
	{"Waiting", func(h *h) {
		j := h.enqueue1(T0, job("q"))
		got := h.cancel(at(time.Second), j.ID, "user asked")
		if got.State != jobs.StateCanceled || got.Reason != "user asked" {
			h.t.Errorf("Cancel of a waiting job returned %s, want canceled with Reason %q", show(got), "user asked")
		}
		h.wantTime("FinishedAt", got.FinishedAt, at(time.Second))
		h.wantSameJob("Get after Cancel", h.get(j.ID), got)
		if js := h.fetch(at(time.Second), "q", "w", 10, time.Minute); len(js) != 0 {
			h.t.Errorf("Fetch claimed canceled job(s) %v", ids(js))
		}
	}},
	{"Running", func(h *h) {
		h.enqueue1(T0, job("q"))
		j := h.fetch1(T0, "q", "w", time.Minute)
		got := h.cancel(at(time.Second), j.ID, "user asked")
		if got.State != jobs.StateRunning || !got.CancelRequested {
			h.t.Errorf("Cancel of a running job returned %s, want running with CancelRequested", show(got))
		}
		if _, cancel := h.heartbeat(at(2*time.Second), "w", time.Minute, att(j)); !sameIDs(cancel, []int64{j.ID}) {
			h.t.Errorf("Heartbeat cancel = %v, want [%d]", cancel, j.ID)
		}
		// No Reason in the outcome (what a Worker sends): the job keeps
		// the one Cancel gave.
		h.completeOK(at(3*time.Second), "w", ok(j, jobs.Canceled))
		if got := h.wantState(j.ID, jobs.StateCanceled); got.Reason != "user asked" {
			h.t.Errorf("canceled job's reason = %q, want Cancel's %q", got.Reason, "user asked")
		}
	}},
	{"RequestedNeverReturnsToWaiting", func(h *h) {
		// A job whose cancellation was requested while it ran ends
		// canceled whether its worker reports Retry, Released or Failed
		// (its last attempt failed, or a permanent error, before the
		// worker learned of the request) or dies (lease recovery): the
		// cancel is never lost. A failure after the request keeps
		// Cancel's reason, records its error, and is no failure of the
		// job's group.
		cg := job("q")
		cg.Group, cg.CancelGroupOnFailure = "g", true
		h.enqueue(T0, "q", job("q"), job("q"), job("q"), cg)
		js := h.fetch(T0, "q", "w", 4, time.Second)
		if len(js) != 4 {
			h.t.Fatalf("fetched %d jobs, want 4", len(js))
		}
		sibling := job("q")
		sibling.Group = "g"
		sib := h.enqueue1(T0, sibling) // waiting: a group failure would cancel it
		for _, j := range js {
			h.cancel(at(100*time.Millisecond), j.ID, "user asked")
		}
		retry := ok(js[0], jobs.Retry)
		retry.RunAt, retry.Error = at(time.Second), "boom"
		failed := ok(js[3], jobs.Failed)
		failed.Error, failed.Reason = "last attempt failed", "permanent error"
		h.completeOK(at(200*time.Millisecond), "w", retry, ok(js[1], jobs.Released), failed)
		h.recover(at(2 * time.Second)) // js[2]'s lease expired
		for _, j := range js {
			h.wantState(j.ID, jobs.StateCanceled)
		}
		if got := h.get(js[3].ID); got.Reason != "user asked" || got.LastError != "last attempt failed" {
			h.t.Errorf("failed after a cancel request = %s, want reason %q and last error %q", show(got), "user asked", "last attempt failed")
		}
		h.wantState(sib.ID, jobs.StateWaiting)
	}},
	{"RequestedThenSucceeded", func(h *h) {
		// A handler that finishes its work although its cancellation was
		// requested succeeded: the outcome stands, and the request and
		// its reason stay on the record.
		h.enqueue1(T0, job("q"))
		j := h.fetch1(T0, "q", "w", time.Minute)
		h.cancel(at(time.Second), j.ID, "user asked")
		h.completeOK(at(2*time.Second), "w", ok(j, jobs.Succeeded))
		got := h.wantState(j.ID, jobs.StateSucceeded)
		if !got.CancelRequested || got.Reason != "user asked" || got.Attempt != 1 || got.LeaseOwner != "" {
			h.t.Errorf("succeeded job after a cancel request = %s, want CancelRequested, reason %q, attempt 1, no lease", show(got), "user asked")
		}
		h.wantTime("FinishedAt", got.FinishedAt, at(2*time.Second))
	}},
	{"Terminal", func(h *h) {
		h.enqueue1(T0, job("q"))
		j := h.fetch1(T0, "q", "w", time.Minute)
		h.completeOK(at(time.Second), "w", ok(j, jobs.Succeeded))
		before := h.get(j.ID)
		got := h.cancel(at(time.Minute), j.ID, "too late")
		h.wantSameJob("Cancel's result for a finished job", got, before)
		h.wantSameJob("finished job after Cancel", h.get(j.ID), before)
	}},
	{"NotFound", func(h *h) {
		if _, err := h.s.Cancel(h.ctx, T0, 4242, "x"); !errors.Is(err, jobs.ErrNotFound) {
			h.t.Errorf("Cancel(unknown): err = %v, want ErrNotFound", err)
		}
	}},
}

var queueTests = []subtest{
	{"RoundTrip", func(h *h) {
		q := h.putQueue(jobs.QueueConfig{Name: "full", Concurrency: 3, Capacity: 50, Policy: jobs.FullShed,
			MaxWait: 2 * time.Second, RateLimit: 12.5, RateBurst: 4, Paused: true, IdempotencyWindow: 3 * time.Hour})
		got, err := h.s.GetQueue(h.ctx, "full")
		if err != nil || got != q {
			h.t.Errorf("GetQueue = %+v, %v, want %+v", got, err, q)
		}
		q2 := h.putQueue(jobs.QueueConfig{Name: "full", Concurrency: 1, Policy: jobs.FullWait, MaxWait: time.Minute})
		got, err = h.s.GetQueue(h.ctx, "full")
		if err != nil || got != q2 {
			h.t.Errorf("GetQueue after replacing = %+v, %v, want %+v", got, err, q2)
		}
		b := h.putQueue(jobs.QueueConfig{Name: "b"})
		a := h.putQueue(jobs.QueueConfig{Name: "a", RateLimit: 1})
		qs, err := h.s.Queues(h.ctx)
		if err != nil {
			h.t.Fatalf("Queues: %v", err)
		}
		want := []jobs.QueueConfig{a, b, q2}
		if len(qs) != len(want) {
			h.t.Fatalf("Queues() = %+v, want %+v", qs, want)
		}
		for i := range want {
			if qs[i] != want[i] {
				h.t.Errorf("Queues()[%d] = %+v, want %+v (by name)", i, qs[i], want[i])
			}
		}
	}},
	{"NotFound", func(h *h) {
		if _, err := h.s.GetQueue(h.ctx, "missing"); !errors.Is(err, jobs.ErrNotFound) {
			h.t.Errorf("GetQueue(unknown): err = %v, want ErrNotFound", err)
		}
	}},
	{"Stats", func(h *h) {
		js := h.enqueue(T0, "s", job("s"), job("s"), job("s"), job("s"))
		h.enqueue(T0, "other", job("other"))
		h.fetch1(T0, "other", "w", time.Minute)
		run := h.fetch(T0, "s", "w", 2, time.Minute)
		h.completeOK(at(10*time.Second), "w", ok(run[0], jobs.Succeeded))
		h.cancel(at(20*time.Second), js[3].ID, "")
		for _, c := range []struct {
			since time.Duration
			want  jobs.QueueStats
		}{
			{-time.Hour, jobs.QueueStats{Waiting: 1, Running: 1, Finished: 2}},
			{15 * time.Second, jobs.QueueStats{Waiting: 1, Running: 1, Finished: 1}},
			{20 * time.Second, jobs.QueueStats{Waiting: 1, Running: 1, Finished: 0}},
		} {
			got, err := h.s.QueueStats(h.ctx, "s", at(c.since))
			if err != nil || got != c.want {
				h.t.Errorf("QueueStats(since T0%+v) = %+v, %v, want %+v", c.since, got, err, c.want)
			}
		}
	}},
}
