package storetest

import (
	"time"

	"github.com/sluicehq/sluice/jobs"
)

// The Lookahead group runs only for stores that implement jobs.Lookahead
// (the optional interface); for others it is skipped, visibly.
var lookaheadTests = []subtest{
	{"NextDue", func(h *h) {
		la := h.lookahead()
		mk := func(prio int, runAt, deadline time.Duration) jobs.NewJob {
			n := job("q")
			n.Priority, n.RunAt = prio, at(runAt)
			if deadline != 0 {
				n.Deadline = at(deadline)
			}
			return n
		}
		h.wantNoneDue(la, T0, "q") // no queue yet
		h.enqueue(T0, "q",
			mk(3, 0, 0),              // due now: not scheduled
			mk(0, time.Hour, 0),      // the latest
			mk(5, 30*time.Minute, 0), // the next, at a higher priority
			mk(9, 0, 5*time.Minute),  // fetched and retried below
		)
		// A retry whose backoff ends after its deadline: it will never
		// run. (Enqueue refuses such a job; a retry can make one.)
		h.retryAt(h.fetch1(T0, "q", "w", time.Minute), 10*time.Minute)
		o := job("other")
		o.RunAt = at(time.Minute) // another queue's
		h.enqueue1(T0, o)
		h.wantDue(la, T0, "q", at(30*time.Minute))
		h.wantDue(la, at(30*time.Minute), "q", at(time.Hour)) // strictly after now
		h.wantNoneDue(la, at(time.Hour), "q")
		h.wantDue(la, T0, "other", at(time.Minute))
		h.wantNoneDue(la, T0, "unknown")
	}},
	{"Deadlines", func(h *h) {
		// In one priority, so that the filter must apply before the
		// first job is taken: a deadline equal to RunAt never lets the job
		// run (Fetch claims only before the deadline); a later one does.
		la := h.lookahead()
		mk := func(runAt, deadline time.Duration) jobs.NewJob {
			n := job("d")
			n.Priority, n.RunAt, n.Deadline = 2, at(runAt), at(deadline)
			return n
		}
		h.enqueue(T0, "d", mk(0, 10*time.Minute), mk(20*time.Minute, 25*time.Minute))
		h.retryAt(h.fetch1(T0, "d", "w", time.Minute), 10*time.Minute) // RunAt now equals its deadline
		h.wantDue(la, T0, "d", at(20*time.Minute))
	}},
	{"OnlyWaitingJobs", func(h *h) {
		la := h.lookahead()
		a, b := job("q"), job("q")
		a.RunAt, b.RunAt = at(10*time.Minute), at(20*time.Minute)
		js := h.enqueue(T0, "q", a, b)
		h.cancel(at(time.Second), js[0].ID, "no")
		h.wantDue(la, T0, "q", at(20*time.Minute))
		got := h.fetch1(at(20*time.Minute), "q", "w", time.Minute)
		h.wantNoneDue(la, T0, "q") // running now
		// A retry's backoff is scheduled like a RunAt.
		r := ok(got, jobs.Retry)
		r.RunAt = at(25 * time.Minute)
		h.completeOK(at(21*time.Minute), "w", r)
		h.wantDue(la, at(21*time.Minute), "q", at(25*time.Minute))
	}},
	{"PausedQueue", func(h *h) {
		la := h.lookahead()
		n := job("p")
		n.RunAt = at(time.Minute)
		h.enqueue1(T0, n)
		q := h.putQueue(jobs.QueueConfig{Name: "p", Paused: true})
		h.wantNoneDue(la, T0, "p")
		q.Paused = false
		h.putQueue(q)
		h.wantDue(la, T0, "p", at(time.Minute))
	}},
}

// lookahead returns the store as a jobs.Lookahead, or skips the test.
func (h *h) lookahead() jobs.Lookahead {
	h.t.Helper()
	la, ok := h.s.(jobs.Lookahead)
	if !ok {
		h.t.Skipf("%T does not implement jobs.Lookahead (optional)", h.s)
	}
	return la
}

func (h *h) wantDue(la jobs.Lookahead, now time.Time, queue string, want time.Time) {
	h.t.Helper()
	got, found, err := la.NextDue(h.ctx, now, queue)
	if err != nil {
		h.t.Fatalf("NextDue(%q) at %v: %v", queue, now, err)
	}
	if !found || !got.Equal(want) {
		h.t.Errorf("NextDue(%q) at %v = %v, %v; want %v, true", queue, now, got, found, want)
	}
}

func (h *h) wantNoneDue(la jobs.Lookahead, now time.Time, queue string) {
	h.t.Helper()
	got, found, err := la.NextDue(h.ctx, now, queue)
	if err != nil {
		h.t.Fatalf("NextDue(%q) at %v: %v", queue, now, err)
	}
	if found {
		h.t.Errorf("NextDue(%q) at %v = %v, true; want none", queue, now, got)
	}
}
