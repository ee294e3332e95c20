package jobs

import (
	"errors"
	"fmt"
	"time"
)

// Errors callers match with errors.Is.
var (
	ErrNotFound = errors.New("jobs: not found")
	// ErrIdempotencyConflict: the key is bound to a job with another kind
	// or payload.
	ErrIdempotencyConflict = errors.New("jobs: idempotency key bound to a different job")
	// ErrQueueFull matches every *QueueFullError.
	ErrQueueFull = errors.New("jobs: queue full")
	// ErrUnavailable: the store could not do its work in time (database
	// down, locked or slow). Callers should retry later; the HTTP API
	// answers 503.
	ErrUnavailable = errors.New("jobs: store unavailable")
	// ErrClosed: the client or worker is stopped.
	ErrClosed = errors.New("jobs: closed")
	// ErrNoHandler: no handler is registered for the job's kind.
	ErrNoHandler = errors.New("jobs: no handler for kind")
)

// QueueFullError is Enqueue's refusal of a full queue. It carries a
// Retry-After estimate from the queue's recent completion rate.
type QueueFullError struct {
	Queue      string
	Capacity   int
	Shed       bool // the policy was FullShed and no waiting job ranked lower
	RetryAfter time.Duration
}

func (e *QueueFullError) Error() string {
	msg := fmt.Sprintf("jobs: queue %q full (capacity %d)", e.Queue, e.Capacity)
	if e.Shed {
		msg += ": no lower-priority job to shed"
	}
	if e.RetryAfter > 0 {
		msg += fmt.Sprintf(", retry after %v", e.RetryAfter)
	}
	return msg
}

// Is matches ErrQueueFull.
func (e *QueueFullError) Is(target error) bool { return target == ErrQueueFull }
