package jobs

import (
	"context"
	"time"
)

// Store keeps jobs and queue configurations durably. Every method is one
// transaction: it happens whole or not at all. Methods take the current
// time from the caller (now), so that the engine owns the clock and tests
// can fix it; a Store never calls time.Now for job logic.
//
// Stores must be safe for concurrent use by several Workers and Clients,
// in one process or (for stores that share a database) in several. Every
// method must honor ctx's deadline; a store that cannot reach its database
// in time returns an error wrapping ErrUnavailable.
//
// The conformance suite in package jobs/storetest checks every rule below;
// every implementation must pass it.
type Store interface {
	// Enqueue inserts jobs (already normalized by the caller) into one
	// queue, atomically: either every job gets a result or the call fails.
	//
	// Rules, in order, for each job:
	//   - A job whose IdempotencyKey is bound (in this queue, within the
	//     queue's IdempotencyWindow of the binding) to an existing job is
	//     not inserted: its result is that job with Duplicate set, or
	//     ErrIdempotencyConflict if the payload or kind differ.
	//   - The queue's capacity counts its waiting jobs. When inserting the
	//     job would exceed it: with FullShed, the lowest-priority waiting
	//     job (among equals, the one that would run last: latest RunAt,
	//     then highest ID) whose priority is below the new
	//     job's becomes StateShed (Reason names the new job) and the new job
	//     is inserted; otherwise the whole call fails with a *QueueFullError
	//     (Shed set when FullShed found no lower job) and inserts nothing.
	//     FullWait is the caller's business: the store treats it as reject.
	//   - The queue is created with defaults if it does not exist.
	Enqueue(ctx context.Context, now time.Time, queue string, jobs []NewJob) ([]EnqueueResult, error)

	// Fetch claims up to limit waiting jobs of queue whose RunAt has come,
	// highest priority first, then oldest RunAt, then lowest ID. Waiting
	// jobs whose Deadline has passed are not claimed (ExpireDue ends them).
	// Nothing is claimed from a paused queue. Each claimed job becomes
	// running with Attempt incremented, LeaseOwner = owner and
	// LeaseExpiresAt = now + lease. Jobs claimed by concurrent Fetch calls,
	// in this process or another, never overlap.
	Fetch(ctx context.Context, now time.Time, queue, owner string, limit int, lease time.Duration) ([]*Job, error)

	// Heartbeat extends the leases of jobs held by owner (matching ID,
	// Attempt and owner, still running) to now + lease. It returns the IDs
	// among held whose lease is no longer the caller's (lost: recovered,
	// canceled, or finished by someone else) and the IDs whose
	// cancellation was requested.
	Heartbeat(ctx context.Context, now time.Time, owner string, held []Attempt, lease time.Duration) (lost, cancel []int64, err error)

	// Complete records outcomes. Each outcome is fenced: it applies only if
	// the job is still running under the same Attempt and owner; applied[i]
	// reports whether outcomes[i] did. A job whose cancellation was
	// requested ends StateCanceled unless it succeeded or expired: Retry,
	// Released and Failed end it so, keeping Cancel's reason (and so does
	// RecoverLeases); it is not a failure of its group. A final failure of a job with
	// CancelGroupOnFailure cancels, in the same transaction, the group's
	// waiting jobs and requests cancellation of its running ones.
	Complete(ctx context.Context, now time.Time, owner string, outcomes []Outcome) (applied []bool, err error)

	// Cancel cancels a job: a waiting job becomes StateCanceled at once; a
	// running job gets CancelRequested (the worker holding it sees it at its
	// next heartbeat). It returns the job after the change, or ErrNotFound.
	// Cancelling a terminal job changes nothing and is not an error.
	Cancel(ctx context.Context, now time.Time, id int64, reason string) (*Job, error)

	// RecoverLeases returns to waiting every running job whose lease
	// expired before now (its owner crashed or lost the database), or fails
	// it when it has used all its attempts. It returns how many it touched.
	RecoverLeases(ctx context.Context, now time.Time) (int, error)

	// ExpireDue moves waiting jobs whose Deadline is at or before now to
	// StateExpired. It returns how many.
	ExpireDue(ctx context.Context, now time.Time) (int, error)

	// DeleteFinished deletes up to limit jobs that reached a terminal
	// state before before (FinishedAt < before), and returns how many it
	// deleted; a caller repeats it until it deletes fewer than limit.
	// Waiting and running jobs are never deleted, nor jobs that finished
	// less than their queue's IdempotencyWindow before now (so that no
	// bound idempotency key loses its job). A deleted job is gone for
	// Get, List and Group, and its idempotency key is free again. Job IDs
	// are never reused: a store that would reuse the highest ID after
	// deleting it keeps that one job until a newer one exists.
	DeleteFinished(ctx context.Context, now, before time.Time, limit int) (int, error)

	// Get returns a job, or ErrNotFound.
	Get(ctx context.Context, id int64) (*Job, error)
	// List returns jobs matching f, by ascending ID, starting after
	// f.AfterID, at most f.Limit (zero means 100).
	List(ctx context.Context, f ListFilter) ([]*Job, error)
	// Group returns the number of jobs of a group in each state, or
	// ErrNotFound for a group with no jobs.
	Group(ctx context.Context, name string) (map[State]int, error)

	// PutQueue creates or replaces a queue's configuration (normalized by
	// the caller).
	PutQueue(ctx context.Context, q QueueConfig) error
	// GetQueue returns a queue's configuration, or ErrNotFound.
	GetQueue(ctx context.Context, name string) (QueueConfig, error)
	// Queues returns every queue's configuration, by name.
	Queues(ctx context.Context) ([]QueueConfig, error)
	// QueueStats counts a queue's waiting and running jobs and the jobs
	// that reached a terminal state after since.
	QueueStats(ctx context.Context, queue string, since time.Time) (QueueStats, error)

	// Close releases the store's resources.
	Close() error
}

// Attempt names one attempt of one job: the fencing token of its lease.
type Attempt struct {
	ID      int64
	Attempt int
}

// EnqueueResult is one job's result from Enqueue.
type EnqueueResult struct {
	Job       *Job
	Duplicate bool  // an existing job bound to the idempotency key
	Err       error // ErrIdempotencyConflict, else nil
	// Shed is the ID of the waiting job that FullShed evicted to make room
	// for this one, or 0.
	Shed int64
}

// OutcomeKind is how an attempt ended.
type OutcomeKind int

const (
	// Succeeded: the job is done.
	Succeeded OutcomeKind = iota + 1
	// Retry: back to waiting with RunAt; the attempt is used. The worker
	// reports a failed last attempt as Failed instead; a store still turns
	// a Retry into Failed if the job has no attempts left.
	Retry
	// Failed: the job fails for good: its last attempt failed, or Reason
	// says why (a permanent error, say).
	Failed
	// Canceled: the job ends canceled (its cancellation was requested).
	Canceled
	// Released: the attempt never really happened (the worker is
	// stopping, or the handler withheld the work, see NotAttempted): back
	// to waiting, keeping its place in line, or at RunAt when it is set;
	// the attempt is not used (Attempt goes back down by one).
	Released
	// Expired: the job's deadline passed while it ran.
	Expired
)

// String returns the kind's name in lower case.
func (k OutcomeKind) String() string {
	switch k {
	case Succeeded:
		return "succeeded"
	case Retry:
		return "retry"
	case Failed:
		return "failed"
	case Canceled:
		return "canceled"
	case Released:
		return "released"
	case Expired:
		return "expired"
	}
	return "unknown"
}

// Outcome is the result of one attempt.
type Outcome struct {
	Attempt
	Kind  OutcomeKind
	RunAt time.Time // Retry: when to run again
	Error string    // Retry, Failed: the attempt's error
	// Reason says why, for Failed, Canceled and Expired. Empty, a
	// Canceled outcome keeps the reason the cancellation was requested
	// with, and a Failed one means the job ran out of attempts; an empty
	// Expired one stores "deadline passed while running".
	Reason string

	// hold is the Worker's hold of the job that produced the outcome (nil
	// outside a Worker); stores never see it.
	hold *heldJob
}

// ListFilter selects jobs for List. Zero fields match everything.
type ListFilter struct {
	Queue   string
	State   State
	Group   string
	AfterID int64
	Limit   int
}

// QueueStats are a queue's counters at one moment.
type QueueStats struct {
	Waiting  int
	Running  int
	Finished int // reached a terminal state after the given time
}
