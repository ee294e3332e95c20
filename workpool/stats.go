package workpool

import "time"

// Hooks observe a pool's tasks. Each hook is called on the goroutine that
// resolves the task (a worker, a submitter, or the goroutine of an expiry
// timer), never with the pool's lock held; a slow hook slows that
// goroutine. Hooks must be safe for concurrent use.
type Hooks struct {
	// OnStart is called on the worker just before the task runs.
	OnStart func(Event)
	// OnFinish is called after the task returned or panicked; Err is its
	// outcome. QueueWait and Run are set.
	OnFinish func(Event)
	// OnReject is called for every task refused at submission or dropped
	// before it started; Reason and Err (a *RejectError) are set.
	OnReject func(Event)
	// OnPanic is called after OnFinish for a task that panicked; Err is the
	// *PanicError with the stack.
	OnPanic func(Event)
}

// Event describes one task to a hook.
type Event struct {
	Tag       any
	Priority  Priority
	QueueWait time.Duration // from acceptance to start (or to the drop)
	Run       time.Duration // OnFinish only
	Err       error
	Reason    Reason // OnReject only
}

// Stats is a snapshot of a pool's state and counters. Counters only grow.
// For accepted tasks, Submitted = Completed + Failed + Panicked + Shed +
// Expired + Returned + Running + sum(Queued).
type Stats struct {
	Workers   int // the bound
	Live      int // worker goroutines alive
	Idle      int // parked workers
	QueueSize int // the bound
	Running   int // tasks taken by workers
	// Queued counts waiting tasks per class, indexed by Priority.Class.
	Queued  [numClasses]int
	Waiting int // submitters blocked by the Wait policy

	Submitted uint64 // tasks accepted
	// Waited counts submissions that blocked under the Wait policy (each
	// time a submitter parked on a full queue), whatever came of them.
	Waited    uint64
	Completed uint64 // returned nil
	Failed    uint64 // returned an error (or called runtime.Goexit)
	Panicked  uint64
	Shed      uint64 // accepted, then evicted by ShedLowest
	Expired   uint64 // accepted, then dropped before starting (context, queue-wait bound, CoDel)
	Returned  uint64 // accepted, never started, handed back by Close
	// Rejected counts tasks refused at submission, per Reason
	// (queue_full, closed, expired).
	Rejected [numReasons]uint64
}

// Class returns the index of p in Stats.Queued: 0 for PriorityLow up to 3
// for PriorityCritical.
func (p Priority) Class() int { return p.class() }

// TotalQueued returns the number of queued tasks over all classes.
func (s Stats) TotalQueued() int {
	n := 0
	for _, q := range s.Queued {
		n += q
	}
	return n
}

// Stats returns a snapshot. It takes the pool's lock briefly.
func (p *Pool) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.stats
	s.Workers = p.workers
	s.Live = p.live
	s.Idle = len(p.idle)
	s.QueueSize = p.queueSize
	s.Running = p.running
	for c := range p.queues {
		s.Queued[c] = p.queues[c].len()
	}
	s.Waiting = p.pending.n
	return s
}

// Bounds on the Retry-After estimate.
const (
	minRetryAfter = time.Millisecond
	maxRetryAfter = time.Minute
	// A window over which the drain rate is measured closes once it is at
	// least rateWindow long and has seen rateCount completions (so one
	// completion more or less moves the figure by a few percent at most),
	// or once it is rateMaxWindow long.
	rateWindow    = 100 * time.Millisecond
	rateCount     = 16
	rateMaxWindow = 2 * time.Second
)

// rateEstimate tracks how fast the pool finishes tasks: an exponentially
// weighted average of the rate over windows (see rateWindow), updated
// lazily when an estimate is asked for.
type rateEstimate struct {
	at     time.Time // start of the current window
	count  uint64    // finished tasks at the start of the window
	perSec float64   // smoothed rate; 0 until the first window closes
}

// retryAfterLocked estimates when the present backlog will have drained:
// (queued + 1) / recent drain rate, clamped to [1ms, 1m]. With no
// completions measured yet it answers one second.
func (p *Pool) retryAfterLocked() time.Duration {
	now := time.Now()
	done := p.stats.Completed + p.stats.Failed + p.stats.Panicked
	e := &p.rate
	if el := now.Sub(e.at); el >= rateWindow && (done-e.count >= rateCount || el >= rateMaxWindow) {
		inst := float64(done-e.count) / el.Seconds()
		if e.perSec == 0 || el >= rateMaxWindow {
			e.perSec = inst
		} else {
			e.perSec = (e.perSec + inst) / 2
		}
		e.at, e.count = now, done
	}
	rate := e.perSec
	if rate == 0 {
		// No closed window with completions: use the open window's count.
		if el := now.Sub(e.at); el > 0 && done > e.count {
			rate = float64(done-e.count) / el.Seconds()
		} else {
			return time.Second
		}
	}
	d := time.Duration(float64(p.queued+1) / rate * float64(time.Second))
	return min(max(d, minRetryAfter), maxRetryAfter)
}
