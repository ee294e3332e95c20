package storetest

import (
	"errors"
	"slices"
	"time"

	"github.com/sluicehq/sluice/jobs"
)

// deleteFinished calls DeleteFinished at a time when the default
// idempotency window has passed since before, and fails the test on an
// error.
func (h *h) deleteFinished(before time.Time, limit int) int {
	h.t.Helper()
	n, err := h.s.DeleteFinished(h.ctx, before.Add(jobs.DefaultIdempotencyWindow), before, limit)
	if err != nil {
		h.t.Fatalf("DeleteFinished(before %v, limit %d): %v", before, limit, err)
	}
	return n
}

// gone fails unless every job of ids is gone.
func (h *h) gone(ids ...int64) {
	h.t.Helper()
	for _, id := range ids {
		if j, err := h.s.Get(h.ctx, id); !errors.Is(err, jobs.ErrNotFound) {
			h.t.Errorf("Get(%d) after DeleteFinished = %+v, %v; want ErrNotFound", id, j, err)
		}
	}
}

var retentionTests = []subtest{
	{"TerminalBeforeCutoffOnly", func(h *h) {
		// Five jobs in "a", two in "b"; each ends (or not) at a known time.
		a := h.enqueue(T0, "a", job("a"), job("a"), job("a"), job("a"), job("a"))
		b := h.enqueue(T0, "b", job("b"), job("b"))

		s := h.fetch1(at(time.Minute), "a", "w", time.Hour) // a[0]
		h.completeOK(at(time.Minute), "w", ok(s, jobs.Succeeded))
		f := h.fetch1(at(2*time.Minute), "a", "w", time.Hour) // a[1]
		fail := ok(f, jobs.Failed)
		fail.Error, fail.Reason = "boom", "bad input"
		h.completeOK(at(2*time.Minute), "w", fail)
		if _, err := h.s.Cancel(h.ctx, at(3*time.Minute), a[2].ID, "no longer needed"); err != nil {
			h.t.Fatal(err)
		}
		running := h.fetch1(at(4*time.Minute), "a", "w", time.Hour) // a[3]; a[4] stays waiting
		old := h.fetch1(at(time.Minute), "b", "w", time.Hour)       // b[0]
		h.completeOK(at(time.Minute), "w", ok(old, jobs.Succeeded))
		edge := h.fetch1(at(5*time.Minute), "b", "w", time.Hour) // b[1], finished exactly at the cutoff
		h.completeOK(at(5*time.Minute), "w", ok(edge, jobs.Succeeded))

		if n := h.deleteFinished(at(5*time.Minute), 100); n != 4 {
			h.t.Errorf("DeleteFinished before T0+5m = %d, want 4 (succeeded, failed, canceled in a; succeeded in b)", n)
		}
		h.gone(a[0].ID, a[1].ID, a[2].ID, b[0].ID)
		if j := h.get(running.ID); j.State != jobs.StateRunning {
			h.t.Errorf("running job after DeleteFinished: %v", j.State)
		}
		if j := h.get(a[4].ID); j.State != jobs.StateWaiting {
			h.t.Errorf("waiting job after DeleteFinished: %v", j.State)
		}
		if j := h.get(b[1].ID); j.State != jobs.StateSucceeded {
			h.t.Errorf("job finished at the cutoff after DeleteFinished: %v, want kept", j.State)
		}
		st, err := h.s.QueueStats(h.ctx, "a", time.Time{})
		if err != nil {
			h.t.Fatal(err)
		}
		if st.Waiting != 1 || st.Running != 1 || st.Finished != 0 {
			h.t.Errorf("QueueStats(a) after DeleteFinished = %+v, want 1 waiting, 1 running, 0 finished", st)
		}
		if n := h.deleteFinished(at(5*time.Minute), 100); n != 0 {
			h.t.Errorf("second DeleteFinished = %d, want 0", n)
		}
	}},
	{"Limit", func(h *h) {
		var ns []jobs.NewJob
		for range 5 {
			ns = append(ns, job("q"))
		}
		h.enqueue(T0, "q", ns...)
		for _, j := range h.fetch(T0, "q", "w", 5, time.Hour) {
			h.completeOK(T0, "w", ok(j, jobs.Succeeded))
		}
		newest := h.enqueue1(T0, job("later")) // the highest ID is not finished
		var got []int
		for range 4 {
			got = append(got, h.deleteFinished(at(time.Second), 2))
		}
		if want := []int{2, 2, 1, 0}; !slices.Equal(got, want) {
			h.t.Errorf("DeleteFinished(limit 2) four times = %v, want %v", got, want)
		}
		if js := h.list(jobs.ListFilter{}); len(js) != 1 || js[0].ID != newest.ID {
			h.t.Errorf("jobs left: %v, want only the waiting job %d", ids(js), newest.ID)
		}
	}},
	{"IDsNeverReused", func(h *h) {
		js := h.enqueue(T0, "q", job("q"), job("q"), job("q"))
		for _, j := range h.fetch(T0, "q", "w", 3, time.Hour) {
			h.completeOK(T0, "w", ok(j, jobs.Succeeded))
		}
		h.deleteFinished(at(time.Minute), 10)
		h.deleteFinished(at(time.Minute), 10)
		next := h.enqueue1(at(2*time.Minute), job("q"))
		if next.ID <= js[2].ID {
			h.t.Errorf("new job after DeleteFinished got ID %d, not above %d", next.ID, js[2].ID)
		}
	}},
	{"FreesIdempotencyKeyAfterItsWindow", func(h *h) {
		h.putQueue(jobs.QueueConfig{Name: "q", IdempotencyWindow: time.Hour})
		n := job("q")
		n.IdempotencyKey = "k"
		first := h.enqueue(T0, "q", n)[0]
		j := h.fetch1(T0, "q", "w", time.Hour)
		h.completeOK(T0, "w", ok(j, jobs.Succeeded))
		h.enqueue1(T0, job("later"))
		// Past its retention, but its queue keeps finished jobs for the
		// window (1h) after they finished: kept, and its key bound.
		if n, err := h.s.DeleteFinished(h.ctx, at(30*time.Minute), at(time.Minute), 10); err != nil || n != 0 {
			h.t.Fatalf("DeleteFinished within the window = %d, %v; want 0", n, err)
		}
		if res, err := h.tryEnqueue(at(31*time.Minute), "q", n); err != nil || !res[0].Duplicate || res[0].Job.ID != first.ID {
			h.t.Errorf("key still bound: enqueue again = %+v, %v; want a duplicate of job %d", res, err, first.ID)
		}
		if n, err := h.s.DeleteFinished(h.ctx, at(time.Hour), at(time.Minute), 10); err != nil || n != 0 {
			h.t.Fatalf("DeleteFinished exactly one window after it finished = %d, %v; want 0", n, err)
		}
		if n, err := h.s.DeleteFinished(h.ctx, at(61*time.Minute), at(time.Minute), 10); err != nil || n != 1 {
			h.t.Fatalf("DeleteFinished after the window = %d, %v; want 1", n, err)
		}
		// The key is free: a new job.
		again := h.enqueue(at(62*time.Minute), "q", n)[0]
		if again.ID == first.ID {
			h.t.Errorf("key bound to a deleted job: got job %d again", first.ID)
		}
	}},
}
