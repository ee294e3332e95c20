package workpool

import (
	"errors"
	"fmt"
	"time"
)

// Sentinel errors. A refused or dropped task resolves with a *RejectError
// that matches exactly one of ErrQueueFull, ErrShed, ErrClosed or ErrExpired
// under errors.Is.
var (
	// ErrQueueFull: the queue was full and the policy refused the task
	// (at once for Reject and ShedLowest, after waiting for Wait).
	ErrQueueFull = errors.New("workpool: queue full")
	// ErrShed: the task was queued, then evicted by a higher-priority task
	// under the ShedLowest policy. It never ran.
	ErrShed = errors.New("workpool: task shed for higher priority work")
	// ErrClosed: the pool was closing. Either the task was refused at
	// submission, or it was queued and never started before Close's deadline
	// and was handed back by Close.
	ErrClosed = errors.New("workpool: pool closed")
	// ErrExpired: the task's context ended, its queue-wait bound passed, or
	// CoDel dropped it, before it started. It never ran. The RejectError's
	// Cause says which.
	ErrExpired = errors.New("workpool: task expired before it started")

	// ErrQueueTimeout is the Cause of an ErrExpired rejection when the task
	// waited in the queue longer than its MaxQueueWait.
	ErrQueueTimeout = errors.New("workpool: queue wait bound exceeded")
	// ErrStandingQueue is the Cause of an ErrExpired rejection when CoDel
	// mode dropped the task: the queue had stood above the target for longer
	// than the interval and this task had waited longer than the target.
	ErrStandingQueue = errors.New("workpool: standing queue, dropped by CoDel")
	// ErrGoexit is the outcome of a task that called runtime.Goexit (for
	// example t.FailNow in a test). The worker is replaced.
	ErrGoexit = errors.New("workpool: task called runtime.Goexit")
	// ErrInvalidPriority is returned by Submit for a priority outside
	// [PriorityLow, PriorityCritical].
	ErrInvalidPriority = errors.New("workpool: invalid priority")
)

// Reason says why a task was refused or dropped.
type Reason uint8

// The reasons, in the order of Stats.Rejected.
const (
	ReasonQueueFull Reason = iota
	ReasonShed
	ReasonClosed
	ReasonExpired
	numReasons
)

var reasonNames = [numReasons]string{"queue_full", "shed", "closed", "expired"}
var reasonErrs = [numReasons]error{ErrQueueFull, ErrShed, ErrClosed, ErrExpired}

// String returns a short snake_case name, suitable as a metric label.
func (r Reason) String() string {
	if r < numReasons {
		return reasonNames[r]
	}
	return fmt.Sprintf("Reason(%d)", uint8(r))
}

// Err returns the sentinel error for r.
func (r Reason) Err() error {
	if r < numReasons {
		return reasonErrs[r]
	}
	return nil
}

// RejectError is the error of a task that was refused at submission or
// dropped before it started. It carries the reason and an estimate of when a
// retry is likely to be accepted, derived from the pool's recent drain rate,
// so that an HTTP layer can answer 429 or 503 with a Retry-After header.
//
// errors.Is(err, ErrQueueFull) (or ErrShed, ErrClosed, ErrExpired) matches
// the reason; errors.Is also sees Cause, so a task whose context deadline
// passed in the queue matches context.DeadlineExceeded too.
type RejectError struct {
	Reason Reason
	// RetryAfter estimates how long until the pool will likely accept a
	// task of the same priority. Zero when a retry makes no sense (closed).
	RetryAfter time.Duration
	// Cause is the underlying cause when there is one: the context's error
	// for expired tasks, ErrQueueTimeout, ErrStandingQueue, or the
	// submitter's context error when a Wait ended without a slot.
	Cause error
}

func (e *RejectError) Error() string {
	msg := e.Reason.Err().Error()
	if e.Cause != nil {
		msg += ": " + e.Cause.Error()
	}
	if e.RetryAfter > 0 {
		msg += fmt.Sprintf(" (retry after %v)", e.RetryAfter)
	}
	return msg
}

// Is reports whether target is the sentinel of e's reason.
func (e *RejectError) Is(target error) bool { return target == e.Reason.Err() }

// Unwrap returns the cause.
func (e *RejectError) Unwrap() error { return e.Cause }

// PanicError is the outcome of a task that panicked. The pool recovered the
// panic, kept the stack, and went on with the same number of workers.
type PanicError struct {
	Value any    // the value passed to panic
	Stack []byte // the panicking goroutine's stack, from runtime/debug.Stack
}

func (e *PanicError) Error() string { return fmt.Sprintf("workpool: task panicked: %v", e.Value) }

// Unwrap returns the panic value when it is an error.
func (e *PanicError) Unwrap() error {
	err, _ := e.Value.(error)
	return err
}
