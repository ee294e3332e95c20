package jobs

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"
)

// ClientConfig holds a Client's optional settings.
type ClientConfig struct {
	// CallTimeout bounds each store call. Zero means 5s. A call that runs
	// out of time fails with an error wrapping ErrUnavailable.
	CallTimeout time.Duration
	// RateWindow is the window over which a queue's completion rate is
	// measured for Retry-After estimates. Zero means 10s.
	RateWindow time.Duration
	// Now returns the current time. Nil means time.Now.
	Now func() time.Time
	// Validate, if set, checks each job after Normalize, before it is
	// stored: a server uses it to refuse a payload its handler could never
	// run (return a *ValidationError naming the field). Nil accepts all.
	Validate func(*NewJob) error
	// Stopping, if set, is closed when the owner begins to shut down: an
	// enqueue waiting on a full queue (FullWait) then stops waiting and
	// fails with ErrClosed at once, so that it does not hold the shutdown
	// for up to its MaxWait.
	Stopping <-chan struct{}
}

// Client enqueues, inspects and cancels jobs, and configures queues. It is
// safe for concurrent use and holds no goroutines.
type Client struct {
	store Store
	cfg   ClientConfig
}

// NewClient returns a client of store.
func NewClient(store Store, cfg ClientConfig) *Client {
	if cfg.CallTimeout <= 0 {
		cfg.CallTimeout = 5 * time.Second
	}
	if cfg.RateWindow <= 0 {
		cfg.RateWindow = 10 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Client{store: store, cfg: cfg}
}

// call runs fn with the client's per-call deadline and maps a store that
// ran out of time to ErrUnavailable.
func call[T any](ctx context.Context, timeout time.Duration, fn func(context.Context) (T, error)) (T, error) {
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	v, err := fn(cctx)
	if err != nil && ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, ErrUnavailable) {
		err = fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return v, err
}

// Enqueue adds one job. See EnqueueMany.
func (c *Client) Enqueue(ctx context.Context, job NewJob) (EnqueueResult, error) {
	q := job.Queue
	if q == "" {
		q = DefaultQueue
	}
	res, err := c.EnqueueMany(ctx, q, []NewJob{job})
	if err != nil {
		return EnqueueResult{}, err
	}
	return res[0], res[0].Err
}

// EnqueueMany adds jobs to one queue in one transaction: either the call
// fails and nothing was inserted (a full queue, a bad job, an unavailable
// store), or every job has a result: inserted, a duplicate of an existing
// job with the same idempotency key, or ErrIdempotencyConflict in its Err.
// A job's Queue must be empty or equal to queue.
//
// A full queue answers with a *QueueFullError whose RetryAfter estimates,
// from the queue's completion rate over the last RateWindow, when the
// present backlog will have drained enough to take the batch. A queue whose
// policy is FullWait is retried with jittered backoff until its MaxWait
// (at most MaxQueueWait) or ctx ends; if ClientConfig.Stopping closes
// meanwhile, the call fails with ErrClosed.
func (c *Client) EnqueueMany(ctx context.Context, queue string, batch []NewJob) ([]EnqueueResult, error) {
	if len(batch) == 0 {
		return nil, nil
	}
	queue, jobs, err := NormalizeBatch(c.cfg.Now(), queue, batch)
	if err != nil {
		return nil, err
	}
	if c.cfg.Validate != nil {
		for i := range jobs {
			if err := c.cfg.Validate(&jobs[i]); err != nil {
				return nil, err
			}
		}
	}
	var waitUntil time.Time
	backoff := 5 * time.Millisecond
	for {
		res, err := call(ctx, c.cfg.CallTimeout, func(ctx context.Context) ([]EnqueueResult, error) {
			return c.store.Enqueue(ctx, c.cfg.Now(), queue, jobs)
		})
		var full *QueueFullError
		if !errors.As(err, &full) {
			return res, err
		}
		qc, qerr := call(ctx, c.cfg.CallTimeout, func(ctx context.Context) (QueueConfig, error) {
			return c.store.GetQueue(ctx, queue)
		})
		if qerr == nil && qc.Policy == FullWait {
			if waitUntil.IsZero() {
				waitUntil = c.cfg.Now().Add(min(qc.MaxWait, MaxQueueWait))
			}
			if d := min(backoff, time.Until(waitUntil)); d > 0 {
				t := time.NewTimer(d/2 + rand.N(d/2+1))
				select {
				case <-t.C:
					backoff = min(2*backoff, 200*time.Millisecond)
					continue
				case <-c.cfg.Stopping:
					t.Stop()
					return nil, fmt.Errorf("%w: shutting down while waiting for room in queue %q", ErrClosed, queue)
				case <-ctx.Done():
					t.Stop()
				}
			}
		}
		full.RetryAfter = c.retryAfter(ctx, queue, len(jobs))
		return nil, full
	}
}

// retryAfter estimates when a queue will have room for n more jobs: the
// waiting backlog over the completion rate of the last RateWindow, clamped
// to [1s, 1h]. With no completions in the window it answers the window.
func (c *Client) retryAfter(ctx context.Context, queue string, n int) time.Duration {
	now := c.cfg.Now()
	st, err := call(ctx, c.cfg.CallTimeout, func(ctx context.Context) (QueueStats, error) {
		return c.store.QueueStats(ctx, queue, now.Add(-c.cfg.RateWindow))
	})
	if err != nil || st.Finished == 0 {
		return c.cfg.RateWindow
	}
	rate := float64(st.Finished) / c.cfg.RateWindow.Seconds()
	d := time.Duration(float64(min(st.Waiting, n)+1) / rate * float64(time.Second))
	return min(max(d, time.Second), time.Hour)
}

// Get returns a job, or an error wrapping ErrNotFound.
func (c *Client) Get(ctx context.Context, id int64) (*Job, error) {
	return call(ctx, c.cfg.CallTimeout, func(ctx context.Context) (*Job, error) { return c.store.Get(ctx, id) })
}

// List returns jobs matching f.
func (c *Client) List(ctx context.Context, f ListFilter) ([]*Job, error) {
	return call(ctx, c.cfg.CallTimeout, func(ctx context.Context) ([]*Job, error) { return c.store.List(ctx, f) })
}

// Cancel cancels a job: a waiting one at once, a running one through its
// worker, which cancels the handler's context when it learns of the
// request (a notification, a heartbeat, or on SQLite, for a request made
// by another process, a maintenance pass),
// or, if the handler has not started, ends the job without starting it.
func (c *Client) Cancel(ctx context.Context, id int64) (*Job, error) {
	return call(ctx, c.cfg.CallTimeout, func(ctx context.Context) (*Job, error) {
		return c.store.Cancel(ctx, c.cfg.Now(), id, "canceled by request")
	})
}

// GroupStatus is the outcome of a group of jobs.
type GroupStatus struct {
	Name   string
	Counts map[State]int
	Total  int
	// Done: every job of the group is terminal.
	Done bool
	// Succeeded: done, and every job succeeded.
	Succeeded bool
}

// Group returns a group's status, or an error wrapping ErrNotFound.
func (c *Client) Group(ctx context.Context, name string) (GroupStatus, error) {
	counts, err := call(ctx, c.cfg.CallTimeout, func(ctx context.Context) (map[State]int, error) {
		return c.store.Group(ctx, name)
	})
	if err != nil {
		return GroupStatus{}, err
	}
	g := GroupStatus{Name: name, Counts: counts}
	for _, n := range counts {
		g.Total += n
	}
	g.Done = counts[StateWaiting]+counts[StateRunning] == 0
	g.Succeeded = g.Done && counts[StateSucceeded] == g.Total
	return g, nil
}

// PutQueue creates or replaces a queue's configuration.
func (c *Client) PutQueue(ctx context.Context, q QueueConfig) (QueueConfig, error) {
	if err := q.Normalize(); err != nil {
		return q, err
	}
	_, err := call(ctx, c.cfg.CallTimeout, func(ctx context.Context) (struct{}, error) {
		return struct{}{}, c.store.PutQueue(ctx, q)
	})
	return q, err
}

// Queue returns a queue's configuration.
func (c *Client) Queue(ctx context.Context, name string) (QueueConfig, error) {
	return call(ctx, c.cfg.CallTimeout, func(ctx context.Context) (QueueConfig, error) { return c.store.GetQueue(ctx, name) })
}

// Queues returns every queue's configuration.
func (c *Client) Queues(ctx context.Context) ([]QueueConfig, error) {
	return call(ctx, c.cfg.CallTimeout, func(ctx context.Context) ([]QueueConfig, error) { return c.store.Queues(ctx) })
}

// SetPaused pauses or resumes a queue: a paused queue accepts jobs and
// starts none.
func (c *Client) SetPaused(ctx context.Context, name string, paused bool) (QueueConfig, error) {
	q, err := c.Queue(ctx, name)
	if err != nil {
		return q, err
	}
	q.Paused = paused
	q.ClampStored()
	return c.PutQueue(ctx, q)
}
