package storetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/sluicehq/sluice/jobs"
)

var concurrentTests = []subtest{
	{"FetchClaimsOnce", func(h *h) {
		const jobsN, workers, limit = 300, 6, 7
		var batch []jobs.NewJob
		for i := range jobsN {
			batch = append(batch, prio("q", i%4))
		}
		all := h.enqueue(T0, "q", batch...)

		var (
			mu     sync.Mutex
			claims = map[int64]string{} // guarded by mu
			dups   []string             // guarded by mu
			wg     sync.WaitGroup
		)
		errs := make(chan error, workers) // one send per worker at most
		for w := range workers {
			owner := fmt.Sprintf("w%d", w)
			wg.Go(func() {
				for {
					js, err := h.s.Fetch(h.ctx, at(time.Second), "q", owner, limit, time.Minute)
					if err != nil {
						errs <- fmt.Errorf("%s: Fetch: %w", owner, err)
						return
					}
					if len(js) == 0 {
						return
					}
					mu.Lock()
					for _, j := range js {
						if prev, ok := claims[j.ID]; ok {
							dups = append(dups, fmt.Sprintf("job %d by %s and %s", j.ID, prev, owner))
						}
						claims[j.ID] = owner
						if j.LeaseOwner != owner || j.Attempt != 1 {
							dups = append(dups, fmt.Sprintf("job %d claimed by %s returned as %s", j.ID, owner, show(j)))
						}
					}
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			h.t.Error(err)
		}
		for _, d := range dups {
			h.t.Errorf("claimed twice: %s", d)
		}
		if len(claims) != jobsN {
			h.t.Errorf("%d workers claimed %d distinct jobs, want all %d", workers, len(claims), jobsN)
		}
		for _, j := range all {
			if _, ok := claims[j.ID]; !ok {
				h.t.Errorf("job %d was never claimed", j.ID)
				break
			}
		}
	}},
	{"EnqueueNeverExceedsCapacity", func(h *h) {
		const capacity, prefill, writers, each = 30, 20, 8, 4
		h.putQueue(jobs.QueueConfig{Name: "q", Capacity: capacity})
		var batch []jobs.NewJob
		for range prefill {
			batch = append(batch, job("q"))
		}
		h.enqueue(T0, "q", batch...)

		var (
			wg       sync.WaitGroup
			mu       sync.Mutex
			accepted int     // guarded by mu
			bad      []error // guarded by mu
		)
		n := job("q")
		if err := n.Normalize(T0); err != nil {
			h.t.Fatal(err)
		}
		for range writers {
			wg.Go(func() {
				for range each {
					_, err := h.s.Enqueue(h.ctx, T0, "q", []jobs.NewJob{n})
					mu.Lock()
					switch {
					case err == nil:
						accepted++
					case !errors.Is(err, jobs.ErrQueueFull):
						bad = append(bad, err)
					}
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		for _, err := range bad {
			h.t.Errorf("concurrent Enqueue: %v, want nil or ErrQueueFull", err)
		}
		if accepted != capacity-prefill {
			h.t.Errorf("%d concurrent Enqueue calls accepted %d jobs, want exactly %d (the free room)", writers*each, accepted, capacity-prefill)
		}
		if w := len(h.waitingIDs("q")); w != capacity {
			h.t.Errorf("queue holds %d waiting jobs, want its capacity %d", w, capacity)
		}
		st, err := h.s.QueueStats(h.ctx, "q", T0)
		if err != nil || st.Waiting != capacity {
			h.t.Errorf("QueueStats = %+v, %v, want Waiting %d", st, err, capacity)
		}
	}},
}

var contextTests = []subtest{
	{"Canceled", func(h *h) {
		id := h.enqueue1(T0, job("q")).ID
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		h.eachCall(ctx, id, func(name string, err error) {
			if err == nil {
				h.t.Errorf("%s with a canceled ctx succeeded", name)
			} else if !errors.Is(err, context.Canceled) && !errors.Is(err, jobs.ErrUnavailable) {
				h.t.Errorf("%s with a canceled ctx: %v, want an error wrapping context.Canceled or ErrUnavailable", name, err)
			}
		})
		if got := h.list(jobs.ListFilter{}); len(got) != 1 {
			h.t.Errorf("calls with a canceled ctx changed the store: %d jobs, want 1", len(got))
		}
		h.wantState(id, jobs.StateWaiting)
	}},
	{"DeadlineExceeded", func(h *h) {
		id := h.enqueue1(T0, job("q")).ID
		ctx, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
		defer cancel()
		h.eachCall(ctx, id, func(name string, err error) {
			if !errors.Is(err, jobs.ErrUnavailable) {
				h.t.Errorf("%s with an expired deadline: err = %v, want an error wrapping ErrUnavailable", name, err)
			}
		})
		h.wantState(id, jobs.StateWaiting)
	}},
}

// eachCall calls every Store method with ctx and reports its error to
// check. Each call must return within 5 s.
func (h *h) eachCall(ctx context.Context, id int64, check func(name string, err error)) {
	h.t.Helper()
	n := job("q")
	if err := n.Normalize(T0); err != nil {
		h.t.Fatal(err)
	}
	q := jobs.QueueConfig{Name: "new"}
	if err := q.Normalize(); err != nil {
		h.t.Fatal(err)
	}
	calls := []struct {
		name string
		f    func() error
	}{
		{"Enqueue", func() error { _, err := h.s.Enqueue(ctx, T0, "q", []jobs.NewJob{n}); return err }},
		{"Fetch", func() error { _, err := h.s.Fetch(ctx, T0, "q", "w", 10, time.Minute); return err }},
		{"Heartbeat", func() error {
			_, _, err := h.s.Heartbeat(ctx, T0, "w", []jobs.Attempt{{ID: id, Attempt: 1}}, time.Minute)
			return err
		}},
		{"Complete", func() error {
			_, err := h.s.Complete(ctx, T0, "w", []jobs.Outcome{{Attempt: jobs.Attempt{ID: id, Attempt: 1}, Kind: jobs.Succeeded}})
			return err
		}},
		{"Cancel", func() error { _, err := h.s.Cancel(ctx, T0, id, "x"); return err }},
		{"RecoverLeases", func() error { _, err := h.s.RecoverLeases(ctx, T0); return err }},
		{"ExpireDue", func() error { _, err := h.s.ExpireDue(ctx, T0); return err }},
		{"DeleteFinished", func() error { _, err := h.s.DeleteFinished(ctx, T0, T0, 10); return err }},
		{"Get", func() error { _, err := h.s.Get(ctx, id); return err }},
		{"List", func() error { _, err := h.s.List(ctx, jobs.ListFilter{}); return err }},
		{"Group", func() error { _, err := h.s.Group(ctx, "g"); return err }},
		{"PutQueue", func() error { return h.s.PutQueue(ctx, q) }},
		{"GetQueue", func() error { _, err := h.s.GetQueue(ctx, "q"); return err }},
		{"Queues", func() error { _, err := h.s.Queues(ctx); return err }},
		{"QueueStats", func() error { _, err := h.s.QueueStats(ctx, "q", T0); return err }},
	}
	for _, c := range calls {
		done := make(chan error, 1) // the call's goroutine sends once
		go func() { done <- c.f() }()
		select {
		case err := <-done:
			check(c.name, err)
		case <-time.After(5 * time.Second):
			h.t.Fatalf("%s with a done ctx has not returned after 5s", c.name)
		}
	}
}
