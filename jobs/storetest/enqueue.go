package storetest

import (
	"encoding/json"
	"errors"
	"time"

	"github.com/sluicehq/sluice/jobs"
)

var enqueueTests = []subtest{
	{"RoundTrip", func(h *h) {
		n := jobs.NewJob{
			Kind: "email", Queue: "mail", Payload: json.RawMessage(`{"to":"a@example.com","n":[1,2]}`),
			Priority: 3, IdempotencyKey: "key-1", RunAt: at(time.Minute), Deadline: at(time.Hour),
			AttemptTimeout: 30 * time.Second, MaxAttempts: 7, BackoffMin: 2 * time.Second,
			BackoffMax: time.Minute, Group: "g", CancelGroupOnFailure: true,
		}
		res, err := h.tryEnqueue(T0, "mail", n)
		if err != nil {
			h.t.Fatalf("Enqueue: %v", err)
		}
		r := res[0]
		if r.Err != nil || r.Duplicate || r.Job == nil {
			h.t.Fatalf("result = {Job: %v, Duplicate: %v, Err: %v}, want a new job", show(r.Job), r.Duplicate, r.Err)
		}
		if r.Job.ID <= 0 {
			h.t.Errorf("ID = %d, want > 0", r.Job.ID)
		}
		want := &jobs.Job{ID: r.Job.ID, NewJob: n, State: jobs.StateWaiting, CreatedAt: T0, UpdatedAt: T0}
		h.wantSameJob("Enqueue's job", r.Job, want)
		h.wantSameJob("Get's job", h.get(r.Job.ID), want)
	}},
	{"Defaults", func(h *h) {
		j := h.enqueue1(T0, jobs.NewJob{Kind: "k"})
		want := &jobs.Job{ID: j.ID, State: jobs.StateWaiting, CreatedAt: T0, UpdatedAt: T0, NewJob: jobs.NewJob{
			Kind: "k", Queue: jobs.DefaultQueue, Payload: json.RawMessage("null"), RunAt: T0,
			MaxAttempts: jobs.DefaultAttempts, BackoffMin: jobs.DefaultBackoffMin, BackoffMax: jobs.DefaultBackoffMax,
		}}
		h.wantSameJob("job with defaults", h.get(j.ID), want)
	}},
	{"QueueCreatedWithDefaults", func(h *h) {
		if _, err := h.s.GetQueue(h.ctx, "fresh"); !errors.Is(err, jobs.ErrNotFound) {
			h.t.Fatalf("GetQueue of a queue never used: err = %v, want ErrNotFound", err)
		}
		h.enqueue1(T0, job("fresh"))
		q, err := h.s.GetQueue(h.ctx, "fresh")
		if err != nil {
			h.t.Fatalf("GetQueue after Enqueue created it: %v", err)
		}
		want := jobs.QueueConfig{Name: "fresh"}
		if err := want.Normalize(); err != nil {
			h.t.Fatal(err)
		}
		if q != want {
			h.t.Errorf("auto-created queue = %+v, want defaults %+v", q, want)
		}
		qs, err := h.s.Queues(h.ctx)
		if err != nil {
			h.t.Fatalf("Queues: %v", err)
		}
		if len(qs) != 1 || qs[0] != want {
			h.t.Errorf("Queues() = %+v, want [%+v]", qs, want)
		}
		// A second Enqueue keeps the configuration.
		h.putQueue(jobs.QueueConfig{Name: "fresh", Capacity: 7})
		h.enqueue1(T0, job("fresh"))
		if q, _ := h.s.GetQueue(h.ctx, "fresh"); q.Capacity != 7 {
			h.t.Errorf("Enqueue reset the queue's configuration: Capacity = %d, want 7", q.Capacity)
		}
	}},
	{"Batch", func(h *h) {
		a, b, c := job("q"), job("q"), job("q")
		a.Kind, b.Kind, c.Kind = "a", "b", "c"
		js := h.enqueue(T0, "q", a, b, c)
		for i, want := range []string{"a", "b", "c"} {
			if js[i].Kind != want {
				h.t.Errorf("result %d has Kind %q, want %q: results must follow the input order", i, js[i].Kind, want)
			}
			if i > 0 && js[i].ID <= js[i-1].ID {
				h.t.Errorf("IDs of one batch = %v, want ascending in input order", ids(js))
			}
			h.wantState(js[i].ID, jobs.StateWaiting)
		}
	}},
	{"GetNotFound", func(h *h) {
		if _, err := h.s.Get(h.ctx, 12345); !errors.Is(err, jobs.ErrNotFound) {
			h.t.Errorf("Get(unknown): err = %v, want ErrNotFound", err)
		}
	}},
}

var listTests = []subtest{
	{"Filters", func(h *h) {
		q1 := h.enqueue(T0, "q1", job("q1"), member("q1", "g", 0), job("q1"), member("q1", "g", 0))
		q2 := h.enqueue(T0, "q2", job("q2"), member("q2", "g", 0))
		running := h.fetch1(T0, "q1", "w", time.Minute) // q1[0]
		if running.ID != q1[0].ID {
			h.t.Fatalf("Fetch claimed %d, want the oldest job %d", running.ID, q1[0].ID)
		}

		for _, c := range []struct {
			f    jobs.ListFilter
			want []int64
		}{
			{jobs.ListFilter{}, append(ids(q1), ids(q2)...)},
			{jobs.ListFilter{Queue: "q1"}, ids(q1)},
			{jobs.ListFilter{Queue: "q2"}, ids(q2)},
			{jobs.ListFilter{Queue: "none"}, nil},
			{jobs.ListFilter{State: jobs.StateRunning}, []int64{q1[0].ID}},
			{jobs.ListFilter{State: jobs.StateWaiting, Queue: "q1"}, []int64{q1[1].ID, q1[2].ID, q1[3].ID}},
			{jobs.ListFilter{Group: "g"}, []int64{q1[1].ID, q1[3].ID, q2[1].ID}},
			{jobs.ListFilter{Group: "g", Queue: "q2"}, []int64{q2[1].ID}},
			{jobs.ListFilter{State: jobs.StateSucceeded}, nil},
		} {
			got := ids(h.list(c.f))
			if len(got) != len(c.want) || (len(got) > 0 && !slicesEqual(got, c.want)) {
				h.t.Errorf("List(%+v) = %v, want %v (by ascending ID)", c.f, got, c.want)
			}
		}
	}},
	{"Paging", func(h *h) {
		var batch []jobs.NewJob
		for range 120 {
			batch = append(batch, job("p"))
		}
		all := ids(h.enqueue(T0, "p", batch...))

		if got := h.list(jobs.ListFilter{}); len(got) != 100 {
			h.t.Errorf("List with Limit 0 returned %d jobs, want the default 100", len(got))
		}
		var paged []int64
		after := int64(0)
		for pages := 0; ; pages++ {
			if pages > 20 {
				h.t.Fatalf("paging by AfterID does not end: %d pages", pages)
			}
			page := h.list(jobs.ListFilter{AfterID: after, Limit: 50})
			if len(page) > 50 {
				h.t.Fatalf("List(Limit 50) returned %d jobs", len(page))
			}
			if len(page) == 0 {
				break
			}
			for _, j := range page {
				if j.ID <= after {
					h.t.Fatalf("List(AfterID %d) returned job %d", after, j.ID)
				}
			}
			paged = append(paged, ids(page)...)
			after = page[len(page)-1].ID
		}
		if !slicesEqual(paged, all) {
			h.t.Errorf("paging by 50 returned %d IDs %v..., want the %d enqueued in order", len(paged), head(paged), len(all))
		}
		if got := h.list(jobs.ListFilter{AfterID: all[117], Limit: 10}); !slicesEqual(ids(got), all[118:]) {
			h.t.Errorf("List(AfterID: third-last) = %v, want %v", ids(got), all[118:])
		}
	}},
}

func slicesEqual(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func head(a []int64) []int64 {
	if len(a) > 5 {
		return a[:5]
	}
	return a
}
