package workpool

import (
	"context"
	"sync"
	"time"
)

// Priority is a task's class. Workers always take the highest class first,
// FIFO within a class. The zero value is PriorityNormal.
type Priority int8

// The priority classes, lowest first.
const (
	PriorityLow      Priority = -1 // first to be shed
	PriorityNormal   Priority = 0  // the default
	PriorityHigh     Priority = 1
	PriorityCritical Priority = 2

	numClasses = 4
)

func (p Priority) valid() bool { return p >= PriorityLow && p <= PriorityCritical }
func (p Priority) class() int  { return int(p - PriorityLow) }

// String returns "low", "normal", "high" or "critical".
func (p Priority) String() string {
	switch p {
	case PriorityLow:
		return "low"
	case PriorityNormal:
		return "normal"
	case PriorityHigh:
		return "high"
	case PriorityCritical:
		return "critical"
	}
	return "invalid"
}

// Policy says what Submit does when the queue is full.
type Policy uint8

const (
	// PolicyDefault, in Options, means the pool's Config.Policy. In Config
	// it means Reject.
	PolicyDefault Policy = iota
	// Reject refuses the task at once with ErrQueueFull.
	Reject
	// Wait blocks the submitter until a slot frees, its context ends, or
	// MaxWait passes; then it refuses with ErrQueueFull. Waiting submitters
	// are admitted in FIFO order once the queue has drained to half its size
	// (or, with no queue, as soon as a worker is free), so a blocked
	// producer wakes once per half queue rather than once per task. A
	// submitter of the Reject policy that finds a free slot while they wait
	// admits them into it first (ShedLowest, ordered by priority, may take
	// it). Waiting allocates nothing (the pool recycles its wait records)
	// beyond a timer when a MaxWait applies.
	Wait
	// ShedLowest evicts the newest queued task of the lowest priority class
	// if that class is lower than the new task's; the evicted task resolves
	// with ErrShed. Otherwise the new task is refused with ErrQueueFull.
	ShedLowest
)

// String returns the policy's name.
func (p Policy) String() string {
	switch p {
	case PolicyDefault:
		return "default"
	case Reject:
		return "reject"
	case Wait:
		return "wait"
	case ShedLowest:
		return "shed_lowest"
	}
	return "invalid"
}

// Options are per-task settings for SubmitOpts. The zero value means normal
// priority and the pool's defaults for everything else.
type Options struct {
	// Priority class; zero is PriorityNormal.
	Priority Priority
	// Policy overrides Config.Policy for this task; zero keeps the pool's.
	Policy Policy
	// MaxWait overrides Config.MaxWait for the Wait policy; zero keeps the
	// pool's, negative means wait only on the context.
	MaxWait time.Duration
	// MaxQueueWait overrides Config.MaxQueueWait; zero keeps the pool's,
	// negative means no bound.
	MaxQueueWait time.Duration
	// Tag is carried with the task to hooks and to Close's caller (who may
	// use it to re-enqueue a durable job). The pool does not look at it.
	Tag any
}

type taskState uint8

const (
	statePending taskState = iota + 1 // waiting for admission (Wait policy)
	stateQueued                       // in the queue
	stateWorker                       // taken by a worker (starting or running)
	stateDone                         // resolved
)

// Task is a handle to one submitted task. Its methods are safe for
// concurrent use. A Task is the only allocation Submit makes when the
// submitter's context can be neither canceled nor time out.
type Task struct {
	fn   func(context.Context) error
	ctx  context.Context // the submitter's
	pool *Pool
	tag  any

	// guarded by pool.mu
	recycle    bool // submitted by Go: back to taskPool once finished
	cancelable bool // ctx has a Done channel
	state      taskState
	prio       Priority
	seq        uint64        // in its class's queue (see ring)
	enqueued   time.Time     // when accepted; set only when the pool needs it
	stopCtx    func() bool   // stops the context.AfterFunc that expires a queued task
	timer      *time.Timer   // the MaxQueueWait bound, nil without one
	maxQWait   time.Duration // the MaxQueueWait bound, 0 for none

	mu       sync.Mutex
	finished bool          // guarded by mu
	done     chan struct{} // guarded by mu; made lazily by Done, closed by resolve
	err      error         // guarded by mu
}

// Tag returns Options.Tag.
func (t *Task) Tag() any { return t.tag }

// Priority returns the task's class.
func (t *Task) Priority() Priority { return t.prio }

// Done returns a channel closed when the task has resolved: finished,
// failed, panicked, or dropped before it started.
func (t *Task) Done() <-chan struct{} {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.done == nil {
		t.done = make(chan struct{})
		if t.finished {
			close(t.done)
		}
	}
	return t.done
}

// Err returns the task's outcome once Done is closed, and nil before: the
// task's own error, a *PanicError, ErrGoexit, or a *RejectError if it never
// started.
func (t *Task) Err() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.err
}

// Wait waits until the task resolves and returns its outcome (see Err), or
// returns ctx's error if ctx ends first. Waiting does not cancel the task.
func (t *Task) Wait(ctx context.Context) error {
	t.mu.Lock()
	if t.finished {
		err := t.err
		t.mu.Unlock()
		return err
	}
	t.mu.Unlock()
	select {
	case <-t.Done():
		return t.Err()
	case <-ctx.Done():
		return ctx.Err()
	}
}

// resolve records the outcome. Called exactly once per task.
func (t *Task) resolve(err error) {
	t.mu.Lock()
	t.finished = true
	t.err = err
	if t.done != nil {
		close(t.done)
	}
	t.mu.Unlock()
}

// runCtx is the context a task runs with when its submitter's context has no
// Done channel: it keeps the submitter's values, and ends only at the pool's
// hard stop. It is the Task itself under another method set, so it costs no
// allocation.
type runCtx Task

func (c *runCtx) Deadline() (time.Time, bool) { return c.ctx.Deadline() }
func (c *runCtx) Done() <-chan struct{}       { return c.pool.hard.Done() }
func (c *runCtx) Err() error                  { return c.pool.hard.Err() }
func (c *runCtx) Value(key any) any           { return c.ctx.Value(key) }

// Result is a handle to a task that produces a value. See SubmitResult.
type Result[T any] struct {
	*Task
	val T // written by the task before it resolves
}

// Wait waits for the task and returns its value and error, or the zero
// value and ctx's error if ctx ends first. On the task's error the value is
// whatever fn returned with it (the zero value if fn never ran).
func (r *Result[T]) Wait(ctx context.Context) (T, error) {
	if !r.finishedNow() {
		select {
		case <-r.Done():
		case <-ctx.Done():
			var zero T
			return zero, ctx.Err()
		}
	}
	return r.val, r.Err()
}

func (t *Task) finishedNow() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.finished
}

// SubmitResult submits fn to p and returns a typed handle. It costs one
// allocation more than Submit (the closure). Errors are as for Submit.
func SubmitResult[T any](ctx context.Context, p *Pool, opts Options, fn func(context.Context) (T, error)) (*Result[T], error) {
	r := &Result[T]{}
	t, err := p.SubmitOpts(ctx, opts, func(ctx context.Context) error {
		v, err := fn(ctx)
		r.val = v
		return err
	})
	if err != nil {
		return nil, err
	}
	r.Task = t
	return r, nil
}
