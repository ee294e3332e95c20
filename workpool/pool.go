package workpool

import (
	"context"
	"fmt"
	"runtime"
	"runtime/debug"
	"sync"
	"time"
)

// Config holds a pool's optional settings. The zero value is a pool with
// GOMAXPROCS workers, no backlog and the Reject policy.
type Config struct {
	// Workers bounds how many tasks run at once. Zero means
	// runtime.GOMAXPROCS(0). Workers start on demand and stay until Close or
	// SetWorkers lowers the bound.
	Workers int
	// QueueSize bounds how many accepted tasks wait for a worker. Zero means
	// no backlog: a task starts now or the policy applies. Negative is
	// treated as zero.
	QueueSize int
	// Policy applies when no worker is free and the queue is full. Zero
	// means Reject.
	Policy Policy
	// MaxWait bounds how long the Wait policy blocks a submitter. Zero
	// means only the submitter's context bounds it.
	MaxWait time.Duration
	// MaxQueueWait bounds how long a task may wait in the queue; past it
	// the task is dropped with ErrExpired (cause ErrQueueTimeout) at once.
	// Zero means no bound. A bound costs one timer per queued task.
	MaxQueueWait time.Duration
	// CoDelTarget and CoDelInterval enable CoDel mode when both are
	// positive: once the queue has stood (no task dequeued within
	// CoDelTarget of its arrival) for longer than CoDelInterval, a worker
	// drops each dequeued task that waited longer than CoDelTarget, with
	// ErrExpired (cause ErrStandingQueue), until a task comes through within
	// the target. Typical values: 5ms and 100ms.
	CoDelTarget, CoDelInterval time.Duration
	// Hooks observe tasks. Nil hooks cost nothing.
	Hooks Hooks
}

// Pool runs func(ctx) error tasks on at most Workers goroutines with a
// bounded, prioritized queue. All methods are safe for concurrent use.
//
// Every goroutine a Pool starts is a worker, and Close returns only after
// all of them have returned.
type Pool struct {
	hooks      Hooks
	policy     Policy
	maxWait    time.Duration
	maxQWait   time.Duration
	codelTgt   time.Duration
	codelIntvl time.Duration
	timed      bool // hooks or CoDel need task timestamps

	hard       context.Context // canceled at hard stop; ends every running task's context
	hardCancel context.CancelCauseFunc

	mu        sync.Mutex
	workers   int              // guarded by mu; the bound
	queueSize int              // guarded by mu
	live      int              // guarded by mu; worker goroutines alive
	idle      []*worker        // guarded by mu; parked workers, LIFO
	queues    [numClasses]ring // guarded by mu; one FIFO per class
	queued    int              // guarded by mu; sum of queues' lengths
	pending   list             // guarded by mu; Wait submitters, FIFO
	running   int              // guarded by mu; tasks taken by workers
	closing   bool             // guarded by mu
	hardDone  bool             // guarded by mu
	stopped   chan struct{}    // closed (under mu) when closing and live == 0
	returned  []*Task          // guarded by mu; never-started tasks collected at hard stop
	codelOK   time.Time        // guarded by mu; last time the queue was not standing
	stats     Stats            // guarded by mu; counters only
	rate      rateEstimate     // guarded by mu

	// waiters recycles the *waiter of Wait submitters. It is per pool, not
	// global, so that a waiter's channel never leaves the synctest bubble
	// of the pool that made it.
	waiters sync.Pool
}

// worker is a parked worker's mailbox. wake has a buffer of one and exactly
// one sender: whoever pops the worker from idle under mu. The zero entry
// means exit. Nobody closes it.
type worker struct {
	wake chan entry
}

// New returns a pool. It starts no goroutine until work arrives.
func New(cfg Config) *Pool {
	if cfg.Workers <= 0 {
		cfg.Workers = runtime.GOMAXPROCS(0)
	}
	if cfg.QueueSize < 0 {
		cfg.QueueSize = 0
	}
	if cfg.Policy == PolicyDefault {
		cfg.Policy = Reject
	}
	p := &Pool{
		hooks:     cfg.Hooks,
		policy:    cfg.Policy,
		maxWait:   cfg.MaxWait,
		maxQWait:  cfg.MaxQueueWait,
		workers:   cfg.Workers,
		queueSize: cfg.QueueSize,
		stopped:   make(chan struct{}),
		rate:      rateEstimate{at: time.Now()},
		waiters:   sync.Pool{New: newWaiter},
	}
	if cfg.CoDelTarget > 0 && cfg.CoDelInterval > 0 {
		p.codelTgt, p.codelIntvl = cfg.CoDelTarget, cfg.CoDelInterval
	}
	p.timed = p.codelTgt > 0 || p.hooks.OnStart != nil || p.hooks.OnFinish != nil || p.hooks.OnReject != nil
	p.hard, p.hardCancel = context.WithCancelCause(context.Background())
	return p
}

// Submit runs fn on the pool with normal priority and the pool's policy.
// See SubmitOpts.
func (p *Pool) Submit(ctx context.Context, fn func(context.Context) error) (*Task, error) {
	return p.SubmitOpts(ctx, Options{}, fn)
}

// SubmitOpts hands fn to a free worker, or queues it, or applies the policy
// when the queue is full. It returns a handle to wait on, or a *RejectError
// (ErrQueueFull, ErrClosed, or ErrExpired if ctx has already ended) and a
// nil Task. Only the Wait policy blocks.
//
// fn's context carries ctx's values; it is canceled when ctx is, and at
// Close's hard stop. When ctx has no Done channel (context.Background, or
// WithoutCancel) the handle is the only allocation; otherwise deriving the
// task's context costs a few more.
func (p *Pool) SubmitOpts(ctx context.Context, o Options, fn func(context.Context) error) (*Task, error) {
	return p.submit(ctx, o, fn, false)
}

// Go runs fn on the pool like Submit, for callers that need no handle: the
// outcome goes only to Hooks and Stats. When ctx is context.Background()
// or context.TODO() and no MaxQueueWait applies, Go allocates nothing
// beyond the queue's amortized growth: in a pool without OnStart, OnFinish
// or OnReject hooks and without CoDel (and, for GoOpts, with no Tag) the
// task travels as its func and class alone, with no Task record, and
// otherwise the pool recycles the task's memory. Refusals are as for
// Submit.
func (p *Pool) Go(ctx context.Context, fn func(context.Context) error) error {
	_, err := p.submit(ctx, Options{}, fn, true)
	return err
}

// GoOpts is Go with per-task options.
func (p *Pool) GoOpts(ctx context.Context, o Options, fn func(context.Context) error) error {
	_, err := p.submit(ctx, o, fn, true)
	return err
}

// taskPool recycles the tasks of Go whose memory nobody else can hold: no
// handle was returned, no expiry closure refers to them, and fn ran with
// the pool's context rather than the task itself. Light tasks (see entry)
// need none, even when the Wait policy parks them, so it serves the tasks
// of Go in timed pools or with a Tag.
var taskPool = sync.Pool{New: func() any { return new(Task) }}

func (p *Pool) submit(ctx context.Context, o Options, fn func(context.Context) error, noHandle bool) (*Task, error) {
	if fn == nil {
		panic("workpool: nil task func")
	}
	if !o.Priority.valid() {
		return nil, fmt.Errorf("%w: %d", ErrInvalidPriority, o.Priority)
	}
	maxQWait := p.maxQWait
	if o.MaxQueueWait != 0 {
		maxQWait = max(o.MaxQueueWait, 0)
	}
	// A light entry (see entry) needs no Task. A heavy one takes its Task
	// from taskPool; it goes back there when it was refused (nobody ever
	// saw it) or, for Go, once it ran (see finish).
	e := entry{prio: o.Priority}
	if noHandle && maxQWait == 0 && o.Tag == nil && !p.timed && isBackground(ctx) {
		e.fn = fn
	} else {
		t := taskPool.Get().(*Task)
		t.recycle = noHandle && maxQWait == 0 && isBackground(ctx)
		t.fn, t.ctx, t.pool, t.tag, t.prio, t.maxQWait = fn, ctx, p, o.Tag, o.Priority, maxQWait
		t.cancelable = !t.recycle && ctx.Done() != nil
		e.t = t
		if ctx.Err() != nil {
			p.mu.Lock()
			err := p.refuseLocked(ReasonExpired, context.Cause(ctx))
			p.mu.Unlock()
			p.refused(t, err)
			return nil, err
		}
	}

	p.mu.Lock()
	if p.closing {
		return nil, p.refuseUnlock(e, ReasonClosed)
	}
	if n := len(p.idle); n > 0 {
		w := p.idle[n-1]
		p.idle[n-1] = nil
		p.idle = p.idle[:n-1]
		p.takeLocked(e)
		p.mu.Unlock()
		w.wake <- e
		return e.t, nil
	}
	if p.live < p.workers {
		p.live++
		p.takeLocked(e)
		p.mu.Unlock()
		go p.work(e)
		return e.t, nil
	}
	policy := o.Policy
	if policy == PolicyDefault {
		policy = p.policy
	}
	// A Wait or Reject submitter does not overtake the submitters already
	// waiting. A Wait one waits behind them (they are admitted in batches,
	// see admitPendingLocked); a Reject one admits them into the free slots
	// first, then takes what they leave or is refused. (A ShedLowest one
	// may take a free slot: priority, not arrival, orders it, and admitting
	// a waiter only to shed its task would lose it.)
	var wake []*waiter
	if p.pending.n > 0 && policy == Reject && p.queued < p.queueSize {
		p.admitAllLocked(&wake)
	}
	if p.queued < p.queueSize && (policy != Wait || p.pending.n == 0) {
		p.enqueueLocked(e)
		p.mu.Unlock()
		wakeAll(wake)
		return e.t, nil
	}
	if len(wake) > 0 { // refused after admitting the waiters: wake them before any hook
		err := p.refuseLocked(ReasonQueueFull, nil)
		p.mu.Unlock()
		wakeAll(wake)
		if e.t != nil {
			p.refused(e.t, err)
		}
		return nil, err
	}
	switch policy {
	case Wait:
		return p.waitLocked(ctx, e, o.MaxWait)
	case ShedLowest:
		if victim, shed, ok := p.shedLocked(e.prio); ok {
			p.enqueueLocked(e)
			p.mu.Unlock()
			if victim != nil {
				p.drop(victim, shed)
			}
			return e.t, nil
		}
	}
	return nil, p.refuseUnlock(e, ReasonQueueFull)
}

// refuseUnlock refuses e at submission with reason r, releases mu, and
// reports and recycles e's Task if it has one (a light entry's pool has no
// OnReject hook).
func (p *Pool) refuseUnlock(e entry, r Reason) *RejectError {
	err := p.refuseLocked(r, nil)
	p.mu.Unlock()
	if e.t != nil {
		p.refused(e.t, err)
	}
	return err
}

// takeLocked records that a worker takes e without queueing it.
func (p *Pool) takeLocked(e entry) {
	if t := e.t; t != nil {
		t.state = stateWorker
		if p.timed {
			t.enqueued = time.Now()
		}
	}
	p.stats.Submitted++
	p.running++
}

// enqueueLocked accepts e into its class's queue and arms its Task's
// expiry.
func (p *Pool) enqueueLocked(e entry) {
	p.queues[e.prio.class()].push(e)
	p.queued++
	p.stats.Submitted++
	t := e.t
	if t == nil {
		return
	}
	t.state = stateQueued
	if p.timed || t.maxQWait > 0 {
		t.enqueued = time.Now()
	}
	if t.cancelable {
		t.stopCtx = context.AfterFunc(t.ctx, func() { p.expire(t, context.Cause(t.ctx)) })
	}
	if t.maxQWait > 0 {
		t.timer = time.AfterFunc(t.maxQWait, func() { p.expire(t, ErrQueueTimeout) })
	}
}

// unqueueLocked takes t out of its queue and disarms its expiry.
func (p *Pool) unqueueLocked(t *Task) {
	p.queues[t.prio.class()].remove(t.seq)
	p.queued--
	disarmLocked(t)
}

// disarmLocked stops the expiry of a task that has left the queue.
func disarmLocked(t *Task) {
	if t.stopCtx != nil {
		t.stopCtx()
		t.stopCtx = nil
	}
	if t.timer != nil {
		t.timer.Stop()
		t.timer = nil
	}
}

// shedLocked evicts the newest task of the lowest non-empty class below
// prio, if there is one, and counts it shed. The caller resolves a heavy
// victim with the error returned, once mu is released; a light one has
// nobody to tell (its pool has no OnReject hook).
func (p *Pool) shedLocked(prio Priority) (victim *Task, shed *RejectError, ok bool) {
	for c := 0; c < prio.class(); c++ {
		if p.queues[c].len() == 0 {
			continue
		}
		e := p.queues[c].popBack()
		p.queued--
		p.stats.Shed++
		if t := e.t; t != nil {
			disarmLocked(t)
			t.state = stateDone
			return t, &RejectError{Reason: ReasonShed, RetryAfter: p.retryAfterLocked()}, true
		}
		return nil, nil, true
	}
	return nil, nil, false
}

// refuseLocked counts a refusal at submission and builds its error.
func (p *Pool) refuseLocked(r Reason, cause error) *RejectError {
	p.stats.Rejected[r]++
	err := &RejectError{Reason: r, Cause: cause}
	if r != ReasonClosed {
		err.RetryAfter = p.retryAfterLocked()
	}
	return err
}

// waiter is a submitter blocked by the Wait policy, in the pool's pending
// list. It carries the submitter's entry: a light entry (see entry) parks
// as its func and class alone, with no Task. Waiters are recycled through
// the pool's waiters, so a blocked submitter allocates nothing.
type waiter struct {
	next, prev *waiter // in the pending list; guarded by mu
	e          entry   // the parked task; guarded by mu

	// done has a buffer of one and one sender: whoever settles the wait.
	// The settler writes settled and refusal under mu and sends under mu,
	// or, when a worker admits a batch, just after it releases mu (see
	// admitLocked). The submitter receives from it (or drains it, when its
	// context or MaxWait ended first) before the waiter is reused. Nobody
	// closes it.
	done    chan struct{}
	settled bool         // written under mu by the settler; read by the submitter after done
	refusal *RejectError // as settled; nil when admitted
}

func newWaiter() any { return &waiter{done: make(chan struct{}, 1)} }

// settleLocked ends w's wait: admitted when refusal is nil.
func settleLocked(w *waiter, refusal *RejectError) {
	w.settled, w.refusal = true, refusal
	w.done <- struct{}{}
}

// admitLocked ends w's wait as admitted. With wake nil the submitter is
// woken at once; otherwise w is appended to *wake, and the caller wakes it
// with wakeAll once it has released mu. Waking a thousand parked
// submitters takes a while, and other workers need mu meanwhile.
func admitLocked(w *waiter, wake *[]*waiter) {
	if wake == nil {
		settleLocked(w, nil)
		return
	}
	w.settled = true
	*wake = append(*wake, w)
}

// wakeAll wakes the submitters admitted by admitLocked, and empties wake.
// The caller must not hold mu.
func wakeAll(wake []*waiter) []*waiter {
	for i, w := range wake {
		w.done <- struct{}{}
		wake[i] = nil
	}
	return wake[:0]
}

// waitLocked parks the submitter of e until a slot frees (Wait policy). It
// is called with mu held and returns with it released.
//
// A submitter woken by its settlement does not take mu again: the settler
// wrote the outcome before it sent on done.
func (p *Pool) waitLocked(ctx context.Context, e entry, maxWait time.Duration) (*Task, error) {
	if maxWait == 0 {
		maxWait = p.maxWait
	}
	w := p.waiters.Get().(*waiter)
	p.stats.Waited++
	t := e.t
	recycle := t != nil && t.recycle // once admitted, t may run and be reused before we wake
	if t != nil {
		t.state = statePending
	}
	w.e = e
	p.pending.pushBack(w)
	p.mu.Unlock()

	var cause error
	woken := false
	if done := ctx.Done(); done == nil && maxWait <= 0 {
		// Only a settlement can end this wait, and a plain receive parks
		// and wakes for less than a select.
		<-w.done
		woken = true
	} else {
		var timeout <-chan time.Time
		if maxWait > 0 {
			tm := time.NewTimer(maxWait)
			defer tm.Stop()
			timeout = tm.C
		}
		select {
		case <-w.done:
			woken = true
		case <-done:
			cause = context.Cause(ctx)
		case <-timeout:
		}
	}

	if !woken {
		p.mu.Lock()
		if !w.settled { // still pending: e is ours
			p.pending.remove(w)
			if t != nil {
				t.state = stateDone
			}
			err := p.refuseLocked(ReasonQueueFull, cause)
			p.mu.Unlock()
			p.putWaiter(w)
			if t != nil {
				p.refused(t, err)
			}
			return nil, err
		}
		p.mu.Unlock()
		<-w.done // settled meanwhile: its send is buffered, or about to come from the worker that admitted it
	}
	refusal := w.refusal
	p.putWaiter(w)
	if refusal != nil {
		if t != nil {
			p.refused(t, refusal)
		}
		return nil, refusal
	}
	if recycle {
		return nil, nil
	}
	return t, nil
}

// putWaiter recycles a waiter whose submitter has received its settlement
// (or left the pending list).
func (p *Pool) putWaiter(w *waiter) {
	w.e, w.settled, w.refusal = entry{}, false, nil
	p.waiters.Put(w)
}

// admitPendingLocked moves waiting submitters into free queue slots, in
// FIFO order, once the queue has drained to half its size: a producer
// blocked on a full queue then wakes once per half queue instead of once per
// task, which keeps it from trading places with a worker on every task.
// (An eighth woke a thousand blocked producers less often, but left a
// single slow one half the headroom; see docs/benchmarks.md.)
//
// The admitted submitters are woken as admitLocked says.
func (p *Pool) admitPendingLocked(wake *[]*waiter) {
	if p.pending.n == 0 || p.queued > p.queueSize/2 {
		return
	}
	p.admitAllLocked(wake)
}

// admitAllLocked moves waiting submitters into free queue slots, in FIFO
// order, whatever the queue's level.
func (p *Pool) admitAllLocked(wake *[]*waiter) {
	for p.pending.n > 0 && p.queued < p.queueSize {
		w := p.pending.popFront()
		p.enqueueLocked(w.e)
		admitLocked(w, wake)
	}
}

// expire drops a queued task whose context ended or whose queue-wait bound
// passed. It runs on the goroutine of a context.AfterFunc or time.AfterFunc
// and does nothing if the task has left the queue meanwhile.
func (p *Pool) expire(t *Task, cause error) {
	p.mu.Lock()
	if t.state != stateQueued {
		p.mu.Unlock()
		return
	}
	p.unqueueLocked(t)
	t.state = stateDone
	p.stats.Expired++
	p.admitPendingLocked(nil)
	err := &RejectError{Reason: ReasonExpired, Cause: cause, RetryAfter: p.retryAfterLocked()}
	p.mu.Unlock()
	p.drop(t, err)
}

// refused reports a task refused at submission to the hook and recycles
// it: the caller never saw it.
func (p *Pool) refused(t *Task, err *RejectError) {
	p.onReject(t, err)
	*t = Task{}
	taskPool.Put(t)
}

// drop resolves a task that was accepted but will never run.
func (p *Pool) drop(t *Task, err *RejectError) {
	t.resolve(err)
	p.onReject(t, err)
}

func (p *Pool) onReject(t *Task, err *RejectError) {
	if p.hooks.OnReject == nil {
		return
	}
	ev := Event{Tag: t.tag, Priority: t.prio, Reason: err.Reason, Err: err}
	if !t.enqueued.IsZero() {
		ev.QueueWait = time.Since(t.enqueued)
	}
	p.hooks.OnReject(ev)
}

// outcome classifies how a task that reached a worker ended.
type outcome uint8

const (
	outOK outcome = iota
	outFailed
	outPanicked
	outExpired  // never started: its context had ended
	outReturned // never started: hard stop came first
)

// work is a worker goroutine. It runs e, then whatever the queue holds,
// and parks when there is nothing to do.
func (p *Pool) work(e entry) {
	var w *worker
	var wake []*waiter // submitters this worker admitted, woken without mu
	clean := false
	defer func() {
		if !clean { // e called runtime.Goexit: account for it, then replace this worker
			p.finishGoexit(e)
		}
	}()
	for !e.none() {
		start, out, err := p.execute(e)
		var ret *Task
		if out == outReturned {
			ret = p.returnedTask(e)
			if e.t == nil {
				ret.resolve(err)
			}
		}
		p.mu.Lock()
		p.countLocked(out)
		if ret != nil {
			p.returned = append(p.returned, ret)
		}
		next := p.nextLocked(&wake)
		p.mu.Unlock()
		yield := len(wake) > 0
		wake = wakeAll(wake)
		p.finish(e, start, err, out)
		if yield {
			// Submitters blocked on a full queue were admitted. On a busy
			// pool with as many workers as Ps they would wait for this
			// worker to block, which happens only once the queue is empty;
			// let them refill it now instead.
			runtime.Gosched()
		}
		if next.none() {
			// Park or exit only after e's hooks ran, so that Close never
			// returns while a hook is still running.
			p.mu.Lock()
			if next = p.nextLocked(nil); next.none() {
				if !p.closing && p.live <= p.workers {
					if w == nil {
						w = &worker{wake: make(chan entry, 1)}
					}
					p.idle = append(p.idle, w)
					p.mu.Unlock()
					e = <-w.wake
					continue
				}
				p.exitLocked()
			}
			p.mu.Unlock()
		}
		e = next
	}
	clean = true
}

// returnedTask is the Task that Close hands back for e, which never
// started: e's own, or for a light entry a new one.
func (p *Pool) returnedTask(e entry) *Task {
	if e.t != nil {
		return e.t
	}
	return &Task{fn: e.fn, ctx: context.Background(), pool: p, prio: e.prio, state: stateDone}
}

// exitLocked accounts for a worker goroutine that is about to return.
func (p *Pool) exitLocked() {
	p.live--
	if p.closing && p.live == 0 {
		close(p.stopped)
	}
}

func (p *Pool) countLocked(out outcome) {
	p.running--
	switch out {
	case outOK:
		p.stats.Completed++
	case outFailed:
		p.stats.Failed++
	case outPanicked:
		p.stats.Panicked++
	case outExpired:
		p.stats.Expired++
	case outReturned:
		p.stats.Returned++
	}
}

// nextLocked takes the next task for a worker: the oldest task of the
// highest class, or a waiting submitter's task when the queue is empty. It
// drops tasks that must not start (context ended, queue-wait bound passed,
// CoDel), releasing mu to resolve them. It returns the zero entry when the
// worker should park or exit. Submitters it admits are woken as
// admitLocked says.
func (p *Pool) nextLocked(wake *[]*waiter) entry {
	for {
		if p.live > p.workers {
			return entry{}
		}
		if p.queued == 0 {
			w := p.pending.popFront()
			if w == nil {
				return entry{}
			}
			e := w.e
			settleLocked(w, nil) // at once: this is no batch
			p.takeLocked(e)
			return e
		}
		c := numClasses - 1
		for p.queues[c].len() == 0 {
			c--
		}
		e := p.queues[c].popFront()
		p.queued--
		p.admitPendingLocked(wake)
		t := e.t
		if t == nil {
			p.running++
			return e
		}
		disarmLocked(t)
		if cause := p.dropCauseLocked(t); cause != nil {
			t.state = stateDone
			p.stats.Expired++
			err := &RejectError{Reason: ReasonExpired, Cause: cause, RetryAfter: p.retryAfterLocked()}
			p.mu.Unlock()
			if wake != nil { // before drop's hook, which may take long or never return
				*wake = wakeAll(*wake)
			}
			p.drop(t, err)
			p.mu.Lock()
			continue
		}
		t.state = stateWorker
		p.running++
		return e
	}
}

// dropCauseLocked says why a task just taken from the queue must not start,
// or nil.
//
// A task whose context has ended is left to execute, which checks outside
// the lock.
func (p *Pool) dropCauseLocked(t *Task) error {
	if t.maxQWait <= 0 && p.codelTgt <= 0 {
		return nil
	}
	now := time.Now()
	waited := now.Sub(t.enqueued)
	if t.maxQWait > 0 && waited >= t.maxQWait {
		return ErrQueueTimeout
	}
	if p.codelTgt > 0 {
		if waited < p.codelTgt || p.queued == 0 {
			p.codelOK = now
		} else if now.Sub(p.codelOK) > p.codelIntvl {
			return ErrStandingQueue
		}
	}
	return nil
}

// execute runs one task on the calling worker and classifies the outcome.
// A panic is recovered with its stack; runtime.Goexit is not stoppable and
// unwinds into work's deferred handler.
func (p *Pool) execute(e entry) (start time.Time, out outcome, err error) {
	if p.hard.Err() != nil {
		return start, outReturned, &RejectError{Reason: ReasonClosed}
	}
	fn, t := e.fn, e.t
	var ctx context.Context
	switch {
	case t == nil: // light: untimed, background context
		ctx = p.hard
	case t.ctx.Err() != nil:
		return start, outExpired, &RejectError{Reason: ReasonExpired, Cause: context.Cause(t.ctx)}
	case t.recycle || isBackground(t.ctx):
		ctx = p.hard // no values to keep; the task may be recycled
	case t.ctx.Done() == nil:
		ctx = (*runCtx)(t)
	default:
		c, cancel := context.WithCancelCause(t.ctx)
		stop := context.AfterFunc(p.hard, func() { cancel(context.Cause(p.hard)) })
		defer func() {
			stop()
			cancel(nil)
		}()
		ctx = c
	}
	if t != nil {
		fn = t.fn
	}
	if p.timed {
		start = time.Now()
		if p.hooks.OnStart != nil {
			p.hooks.OnStart(Event{Tag: t.tag, Priority: t.prio, QueueWait: start.Sub(t.enqueued)})
		}
	}
	normal := false
	defer func() {
		if normal {
			return
		}
		if r := recover(); r != nil {
			out, err = outPanicked, &PanicError{Value: r, Stack: debug.Stack()}
		}
	}()
	err = fn(ctx)
	normal = true
	if err != nil {
		return start, outFailed, err
	}
	return start, outOK, nil
}

// finish resolves a task that reached a worker and reports it to hooks.
// A task of Go that ran goes back to taskPool (light tasks have no Task).
func (p *Pool) finish(e entry, start time.Time, err error, out outcome) {
	t := e.t
	if t == nil { // light: only OnPanic can be set (see entry)
		if out == outReturned {
			return // returnedTask made it a Task that nobody waits for
		}
		if out == outPanicked && p.hooks.OnPanic != nil {
			p.hooks.OnPanic(Event{Priority: e.prio, Err: err})
		}
		return
	}
	switch out {
	case outExpired, outReturned:
		t.resolve(err)
		p.onReject(t, err.(*RejectError))
		return
	}
	if t.recycle {
		defer func() {
			*t = Task{}
			taskPool.Put(t)
		}()
	} else {
		t.resolve(err)
	}
	if p.hooks.OnFinish != nil {
		ev := Event{Tag: t.tag, Priority: t.prio, Err: err}
		if !start.IsZero() { // zero after runtime.Goexit
			ev.QueueWait, ev.Run = start.Sub(t.enqueued), time.Since(start)
		}
		p.hooks.OnFinish(ev)
	}
	if out == outPanicked && p.hooks.OnPanic != nil {
		p.hooks.OnPanic(Event{Tag: t.tag, Priority: t.prio, Err: err})
	}
}

// finishGoexit accounts for a task that called runtime.Goexit and starts a
// replacement worker if there is work for it. It runs in the dying worker's
// deferred handler.
func (p *Pool) finishGoexit(e entry) {
	p.mu.Lock()
	p.countLocked(outFailed)
	p.mu.Unlock()
	p.finish(e, time.Time{}, ErrGoexit, outFailed)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.live <= p.workers {
		if next := p.nextLocked(nil); !next.none() {
			go p.work(next) // the replacement takes over this worker's count
			return
		}
	}
	p.exitLocked()
}

// SetWorkers changes the bound on running tasks. Raising it starts workers
// for queued tasks at once; lowering it parks no new work on the surplus:
// idle workers exit now, busy ones when their task ends. n < 1 means 1.
func (p *Pool) SetWorkers(n int) {
	n = max(n, 1)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.workers = n
	for p.live > p.workers && len(p.idle) > 0 {
		p.wakeIdleLocked(entry{})
		p.exitLocked()
	}
	for p.live < p.workers {
		e := p.nextLocked(nil)
		if e.none() {
			break
		}
		p.live++
		go p.work(e)
	}
}

// SetQueueSize changes the queue bound. Lowering it below the number of
// queued tasks drops none: they run, and new tasks are refused until the
// queue is below the bound. Raising it admits waiting submitters into the
// new slots at once. n < 0 means 0.
func (p *Pool) SetQueueSize(n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.queueSize = max(n, 0)
	p.admitAllLocked(nil)
}

// isBackground reports whether ctx is context.Background() or
// context.TODO(): no values, no deadline, never done.
func isBackground(ctx context.Context) bool {
	return ctx == context.Background() || ctx == context.TODO()
}

// wakeIdleLocked pops the most recently parked worker and hands it e (the
// zero entry tells it to exit).
func (p *Pool) wakeIdleLocked(e entry) {
	n := len(p.idle)
	w := p.idle[n-1]
	p.idle[n-1] = nil
	p.idle = p.idle[:n-1]
	w.wake <- e
}

// Close stops the pool. It refuses new tasks at once and atomically: a task
// is either accepted before Close began (and then runs or is handed back)
// or refused with ErrClosed; submitters blocked by the Wait policy are
// refused too. Queued and running tasks go on until ctx ends. Then Close
// hard-stops: it cancels every running task's context, takes the tasks that
// never started out of the queue (they resolve with ErrClosed), waits for
// the running tasks to return, and returns the never-started tasks so that
// a durable caller can re-enqueue them. A task that ignores its context
// delays Close for as long as it runs.
//
// Close is idempotent and safe from several goroutines and on a pool never
// used. Every call returns after all workers have returned. The
// never-started tasks are returned by exactly one call: the one whose ctx
// forced the hard stop. A call returns ctx's cause, wrapped, when its ctx
// ended before the pool had drained, and nil otherwise.
func (p *Pool) Close(ctx context.Context) ([]*Task, error) {
	p.mu.Lock()
	if !p.closing {
		p.closing = true
		for w := p.pending.popFront(); w != nil; w = p.pending.popFront() {
			if w.e.t != nil {
				w.e.t.state = stateDone
			}
			settleLocked(w, p.refuseLocked(ReasonClosed, nil))
		}
		for len(p.idle) > 0 {
			p.wakeIdleLocked(entry{})
			p.live--
		}
		if p.live == 0 {
			close(p.stopped)
		}
	}
	p.mu.Unlock()

	select {
	case <-p.stopped: // checked first: a drained pool needs no hard stop, whatever ctx says
		return nil, nil
	default:
	}
	select {
	case <-p.stopped:
		return nil, nil
	case <-ctx.Done():
	}
	hardStopper := p.hardStop(context.Cause(ctx))
	<-p.stopped
	var returned []*Task
	if hardStopper {
		p.mu.Lock()
		returned, p.returned = p.returned, nil
		p.mu.Unlock()
	}
	return returned, fmt.Errorf("workpool: close: %w", context.Cause(ctx))
}

// hardStop drops the queue and cancels running tasks. It reports whether
// this call did it.
func (p *Pool) hardStop(cause error) bool {
	p.mu.Lock()
	if p.hardDone {
		p.mu.Unlock()
		return false
	}
	p.hardDone = true
	var dropped []*Task
	for c := numClasses - 1; c >= 0; c-- {
		for e := p.queues[c].popFront(); !e.none(); e = p.queues[c].popFront() {
			p.queued--
			t := p.returnedTask(e)
			disarmLocked(t)
			t.state = stateDone
			p.stats.Returned++
			dropped = append(dropped, t)
		}
	}
	p.returned = append(p.returned, dropped...)
	p.hardCancel(fmt.Errorf("%w: hard stop: %w", ErrClosed, cause))
	p.mu.Unlock()
	for _, t := range dropped {
		p.drop(t, &RejectError{Reason: ReasonClosed})
	}
	return true
}
