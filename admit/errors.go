package admit

import (
	"errors"
	"fmt"
	"net/http"
	"time"
)

// Sentinel errors. A refusal by Acquire is a *RefusedError that matches
// exactly one of ErrOverloaded, ErrDraining, ErrExpired or ErrCanceled
// under errors.Is; ParseClass and ParseDeadline return errors that match
// ErrBadPriority and ErrBadDeadline.
var (
	// ErrOverloaded: no slot was free for the request's class (at once, or
	// within the queue-wait bound, or the request was shed from the queue).
	// The middleware answers 429 with Retry-After.
	ErrOverloaded = errors.New("admit: overloaded")
	// ErrDraining: the Limiter was closed; it admits nothing new. The
	// middleware answers 503 with Retry-After.
	ErrDraining = errors.New("admit: draining, not accepting new requests")
	// ErrExpired: the request's deadline passed before it was admitted. The
	// middleware answers 504.
	ErrExpired = errors.New("admit: deadline passed before admission")
	// ErrCanceled: the request's context was canceled while it waited in
	// the queue. The middleware answers 503 (the client has usually gone).
	ErrCanceled = errors.New("admit: canceled while queued")
	// ErrBadPriority: the priority header was repeated or had a value
	// other than critical, default or sheddable. The middleware answers 400.
	ErrBadPriority = errors.New("admit: bad priority")
	// ErrBadDeadline: the deadline header was repeated, or was neither a
	// Go duration nor an RFC 3339 timestamp. The middleware answers 400.
	ErrBadDeadline = errors.New("admit: bad deadline")
)

// Reason says why a request was refused.
type Reason uint8

// The reasons, in the order of the Stats.Refused arrays.
const (
	// ReasonOverloaded: the in-flight count had reached the class's limit
	// and the request could not queue (no queueing, or the queue was full
	// of requests at least as important).
	ReasonOverloaded Reason = iota
	// ReasonQueueTimeout: the request waited Config.MaxQueueWait in the
	// queue without a slot freeing for its class.
	ReasonQueueTimeout
	// ReasonShed: the request was queued, then evicted to make room for a
	// more important one.
	ReasonShed
	// ReasonDraining: the Limiter was closed.
	ReasonDraining
	// ReasonExpired: the request's deadline (header or context) had passed
	// on arrival or passed while it was queued.
	ReasonExpired
	// ReasonCanceled: the request's context was canceled while it was
	// queued.
	ReasonCanceled
	// ReasonBadPriority: the priority header could not be parsed. Such
	// requests are counted as ClassDefault.
	ReasonBadPriority
	// ReasonBadDeadline: the deadline header could not be parsed.
	ReasonBadDeadline
	numReasons
)

// reasonInfo is the one table from refusal reasons to errors and HTTP
// responses.
var reasonInfo = [numReasons]struct {
	name   string // metric label
	err    error
	status int
	code   string // stable JSON error code
	retry  bool   // the response carries Retry-After
}{
	ReasonOverloaded:   {"overloaded", ErrOverloaded, http.StatusTooManyRequests, "overloaded", true},
	ReasonQueueTimeout: {"queue_timeout", ErrOverloaded, http.StatusTooManyRequests, "overloaded", true},
	ReasonShed:         {"shed", ErrOverloaded, http.StatusTooManyRequests, "overloaded", true},
	ReasonDraining:     {"draining", ErrDraining, http.StatusServiceUnavailable, "shutting_down", true},
	ReasonExpired:      {"expired", ErrExpired, http.StatusGatewayTimeout, "deadline_exceeded", false},
	ReasonCanceled:     {"canceled", ErrCanceled, http.StatusServiceUnavailable, "canceled", false},
	ReasonBadPriority:  {"bad_priority", ErrBadPriority, http.StatusBadRequest, "bad_priority", false},
	ReasonBadDeadline:  {"bad_deadline", ErrBadDeadline, http.StatusBadRequest, "bad_deadline", false},
}

// String returns a short snake_case name, suitable as a metric label.
func (r Reason) String() string {
	if r < numReasons {
		return reasonInfo[r].name
	}
	return fmt.Sprintf("Reason(%d)", uint8(r))
}

// Err returns the sentinel error for r.
func (r Reason) Err() error {
	if r < numReasons {
		return reasonInfo[r].err
	}
	return nil
}

// Status returns the HTTP status the middleware answers for r: 429 for
// the overload reasons, 503 for draining and canceled, 504 for expired,
// 400 for bad headers.
func (r Reason) Status() int {
	if r < numReasons {
		return reasonInfo[r].status
	}
	return http.StatusInternalServerError
}

// Code returns the stable error code of the middleware's JSON body for r:
// "overloaded", "shutting_down", "deadline_exceeded", "canceled",
// "bad_priority" or "bad_deadline".
func (r Reason) Code() string {
	if r < numReasons {
		return reasonInfo[r].code
	}
	return "internal"
}

// RefusedError is the error of Acquire when it does not admit. It carries
// the reason and, for overload and draining, an estimate of when a retry
// is likely to be admitted.
//
// errors.Is(err, ErrOverloaded) (or ErrDraining, ErrExpired, ErrCanceled)
// matches the reason; errors.Is also sees Cause, so a request whose context
// deadline passed in the queue matches context.DeadlineExceeded too.
type RefusedError struct {
	Reason Reason
	Class  Class
	// RetryAfter estimates when a request of the same class will likely
	// be admitted: at least one second, at most Config.MaxRetryAfter. Zero
	// when the reason's response carries no Retry-After.
	RetryAfter time.Duration
	// Cause is the context's error for ReasonExpired and ReasonCanceled
	// when the context ended in the queue, and nil otherwise.
	Cause error
}

func (e *RefusedError) Error() string {
	msg := e.Reason.Err().Error() + " (" + e.Class.String() + ")"
	if e.Cause != nil {
		msg += ": " + e.Cause.Error()
	}
	if e.RetryAfter > 0 {
		msg += fmt.Sprintf(", retry after %v", e.RetryAfter)
	}
	return msg
}

// Is reports whether target is the sentinel of e's reason.
func (e *RefusedError) Is(target error) bool { return target == e.Reason.Err() }

// Unwrap returns the cause.
func (e *RefusedError) Unwrap() error { return e.Cause }
