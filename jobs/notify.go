package jobs

import (
	"context"
	"time"
)

// Notifier is implemented by stores that can push events to workers (for
// PostgreSQL, LISTEN/NOTIFY): jobs became available in a queue, or a
// running job's cancellation was requested. A worker whose store has it
// wakes idle fetch loops at once and cancels a job without waiting for its
// next heartbeat. Notifications are hints: a missed one only delays work
// until the next poll or heartbeat, so a store may drop them under load.
type Notifier interface {
	// Listen delivers notifications on the returned channel until ctx
	// ends; then it closes the channel. It returns an error if it cannot
	// start listening. A store that loses its connection reconnects and
	// keeps delivering (notifications sent meanwhile are lost).
	Listen(ctx context.Context) (<-chan Notification, error)
}

// LocalNotifier is implemented by Notifiers whose notifications come only
// from calls made through the same Store value, in this process (SQLite:
// the file may also be written by another process, which notifies
// nobody). LocalOnly reports whether that is so. A worker on such a store
// still extends every lease at each maintenance pass, as on a store
// without notifications, so that cancellations requested by another
// process reach running jobs within a pass rather than a heartbeat.
type LocalNotifier interface {
	Notifier
	LocalOnly() bool
}

// Lookahead is implemented by stores that can tell when a queue's next
// scheduled job comes due. A worker whose store has it sleeps after an
// empty fetch no longer than until then, so a job scheduled for later (a
// RunAt in the future, or a retry's backoff) starts at most PollInterval
// after its RunAt, instead of up to MaxPollInterval.
type Lookahead interface {
	// NextDue returns the earliest RunAt after now among the waiting jobs
	// of queue that a Fetch at that time could claim (so not when the
	// queue is paused, nor for a job whose Deadline is at or before its
	// RunAt), and false when there is none.
	NextDue(ctx context.Context, now time.Time, queue string) (time.Time, bool, error)
}

// Notification is one event from a Notifier.
type Notification struct {
	// Queue is set when jobs became waiting in it: due now when At is
	// zero (or not after the worker's now), and the worker fetches at
	// once; otherwise At is the earliest RunAt among them, and an idle
	// worker only shortens its wait to At, since there is nothing to claim
	// yet (on a store that also implements Lookahead, the fetch after that
	// wait finds the job; on another, the worker's polls do).
	Queue string
	// At: see Queue.
	At time.Time
	// CancelID is set when the cancellation of a running job was
	// requested.
	CancelID int64
}

// Elector is implemented by stores shared by several nodes, so that
// maintenance (lease recovery, deadline expiry) runs on one node at a time.
// Without it every worker runs maintenance, which is correct (each step is
// one idempotent transaction) but wasteful with many nodes.
type Elector interface {
	// Lead tries to make owner the leader until now+ttl, or extends its
	// term if it already leads. It reports whether owner leads. A leader
	// that stops calling Lead loses the term when it expires, and another
	// node takes over.
	Lead(ctx context.Context, now time.Time, owner string, ttl time.Duration) (bool, error)
	// Resign gives up the term at once if owner holds it.
	Resign(ctx context.Context, owner string) error
}
