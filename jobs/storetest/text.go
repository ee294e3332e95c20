package storetest

import (
	"errors"
	"time"
	"unicode/utf8"

	"github.com/sluicehq/sluice/jobs"
)

// Free text the engine hands a store (a handler's error, a reason) may
// hold NUL bytes or invalid UTF-8; the store keeps it as jobs.CleanText
// makes it, and the outcome applies (a refused batch would block a worker
// for good).
var textTests = []subtest{
	{"OutcomeAndCancelText", func(h *h) {
		js := h.enqueue(T0, "q", job("q"), job("q"), job("q"))
		claimed := h.fetch(T0, "q", "w", 2, time.Minute)
		failed := ok(claimed[0], jobs.Failed)
		failed.Error, failed.Reason = "decode: \x00\xff", "bad\x00 input"
		retry := ok(claimed[1], jobs.Retry)
		retry.Error, retry.RunAt = "\xc3", at(time.Minute)
		h.completeOK(T0, "w", failed, retry)
		for _, c := range []struct {
			id          int64
			field, want string
			got         func(*jobs.Job) string
		}{
			{claimed[0].ID, "LastError", "decode: \uFFFD", func(j *jobs.Job) string { return j.LastError }},
			{claimed[0].ID, "Reason", "bad input", func(j *jobs.Job) string { return j.Reason }},
			{claimed[1].ID, "LastError", "\uFFFD", func(j *jobs.Job) string { return j.LastError }},
		} {
			if got := c.got(h.get(c.id)); got != c.want || !utf8.ValidString(got) {
				h.t.Errorf("job %d %s = %q, want %q", c.id, c.field, got, c.want)
			}
		}
		waiting := js[2]
		j, err := h.s.Cancel(h.ctx, T0, waiting.ID, "stop\x00\xfe")
		if err != nil {
			h.t.Fatalf("Cancel with a NUL in its reason: %v", err)
		}
		if j.State != jobs.StateCanceled || j.Reason != "stop\uFFFD" {
			h.t.Errorf("Cancel = %v %q, want canceled %q", j.State, j.Reason, "stop\uFFFD")
		}
	}},
	// Lookups by names no job or queue can have (NUL bytes, invalid
	// UTF-8) find nothing; they do not fail.
	{"LookupsByBadText", func(h *h) {
		h.enqueue(T0, "q", job("q"))
		for _, bad := range []string{"q\x00", "\xff"} {
			if js, err := h.s.List(h.ctx, jobs.ListFilter{Queue: bad}); err != nil || len(js) != 0 {
				h.t.Errorf("List(queue %q) = %d jobs, %v; want none", bad, len(js), err)
			}
			if js, err := h.s.List(h.ctx, jobs.ListFilter{Group: bad, State: jobs.State(bad)}); err != nil || len(js) != 0 {
				h.t.Errorf("List(group, state %q) = %d jobs, %v; want none", bad, len(js), err)
			}
			if _, err := h.s.Group(h.ctx, bad); !errors.Is(err, jobs.ErrNotFound) {
				h.t.Errorf("Group(%q) = %v, want ErrNotFound", bad, err)
			}
			if _, err := h.s.GetQueue(h.ctx, bad); !errors.Is(err, jobs.ErrNotFound) {
				h.t.Errorf("GetQueue(%q) = %v, want ErrNotFound", bad, err)
			}
			if st, err := h.s.QueueStats(h.ctx, bad, time.Time{}); err != nil || st != (jobs.QueueStats{}) {
				h.t.Errorf("QueueStats(%q) = %+v, %v; want zeros", bad, st, err)
			}
		}
	}},
}
