package jobs

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"time"
	"unicode/utf8"
)

// State is where a job is in its life. See docs/jobs.md for the diagram.
type State string

// The states. Waiting covers jobs scheduled for later and jobs waiting out
// a retry backoff (RunAt in the future). The last five are terminal.
const (
	StateWaiting   State = "waiting"
	StateRunning   State = "running"
	StateSucceeded State = "succeeded"
	StateFailed    State = "failed"   // attempts exhausted, or a permanent error
	StateCanceled  State = "canceled" // by Cancel, or by its group's failure
	StateExpired   State = "expired"  // its deadline passed before it could run
	StateShed      State = "shed"     // evicted from a full queue by higher-priority work
)

// Terminal reports whether s is a final state.
func (s State) Terminal() bool {
	switch s {
	case StateSucceeded, StateFailed, StateCanceled, StateExpired, StateShed:
		return true
	}
	return false
}

// Valid reports whether s is one of the states.
func (s State) Valid() bool { return s == StateWaiting || s == StateRunning || s.Terminal() }

// Limits on job fields.
const (
	MaxPriority       = 9
	DefaultQueue      = "default"
	DefaultAttempts   = 5
	DefaultBackoffMin = time.Second
	DefaultBackoffMax = 10 * time.Minute
	maxNameLen        = 128
)

// NewJob describes a job to enqueue. The zero value of each optional field
// takes the default its comment names.
type NewJob struct {
	Kind    string          // required: selects the handler
	Queue   string          // "" means DefaultQueue
	Payload json.RawMessage // JSON; nil means null
	// Priority 0..MaxPriority; higher runs first and is shed last. 0 is the default.
	Priority int
	// IdempotencyKey, when set, makes Enqueue return the existing job with
	// the same key (within the queue's idempotency window) instead of a
	// new one.
	IdempotencyKey string
	RunAt          time.Time     // zero means now
	Deadline       time.Time     // zero means none; else after RunAt; after it the job never starts (StateExpired)
	AttemptTimeout time.Duration // zero means none (the deadline still bounds each attempt)
	MaxAttempts    int           // zero means DefaultAttempts
	BackoffMin     time.Duration // zero means DefaultBackoffMin
	BackoffMax     time.Duration // zero means DefaultBackoffMax
	// Group, when set, joins the job to a group (see GroupStatus);
	// CancelGroupOnFailure makes a final failure of this job cancel the
	// group's other unfinished jobs.
	Group                string
	CancelGroupOnFailure bool
}

// Job is a stored job.
type Job struct {
	ID int64
	NewJob
	State     State
	Attempt   int    // attempts started so far
	LastError string // the error of the last failed attempt
	// Reason says why a job ended in StateCanceled, StateExpired or
	// StateShed, or failed without running out of attempts.
	Reason          string
	CreatedAt       time.Time
	UpdatedAt       time.Time
	FinishedAt      time.Time // zero until terminal
	LeaseOwner      string    // running jobs: the worker that holds the lease
	LeaseExpiresAt  time.Time // running jobs
	CancelRequested bool      // running jobs: Cancel was called
}

// ValidationError is a bad field in a NewJob or a QueueConfig. Field names
// the field as the HTTP API spells it.
type ValidationError struct {
	Field string
	Msg   string
}

func (e *ValidationError) Error() string { return fmt.Sprintf("jobs: invalid %s: %s", e.Field, e.Msg) }

const notText = "must be UTF-8 without NUL bytes"

// text reports whether s is UTF-8 without NUL bytes, as every store can
// keep it.
func text(s string) bool { return utf8.ValidString(s) && !strings.ContainsRune(s, 0) }

// SamePayload reports whether two JSON documents are the same, ignoring
// insignificant white space: the payload rule of idempotency keys, which
// every store applies.
func SamePayload(a, b json.RawMessage) bool {
	if bytes.Equal(a, b) {
		return true
	}
	var ca, cb bytes.Buffer
	if json.Compact(&ca, a) != nil || json.Compact(&cb, b) != nil {
		return false
	}
	return bytes.Equal(ca.Bytes(), cb.Bytes())
}

// CleanText returns s as every store can keep it: NUL bytes dropped,
// invalid UTF-8 replaced by U+FFFD. Stores apply it to the free text they
// are given (outcome errors and reasons, cancel reasons), which comes
// from handlers' errors and API callers rather than from validated
// fields.
func CleanText(s string) string {
	if text(s) {
		return s
	}
	return strings.ToValidUTF8(strings.ReplaceAll(s, "\x00", ""), "\uFFFD")
}

// Normalize fills defaults and checks the fields, returning a
// *ValidationError for the first bad one.
func (n *NewJob) Normalize(now time.Time) error {
	switch {
	case n.Kind == "" || len(n.Kind) > maxNameLen:
		return &ValidationError{"kind", fmt.Sprintf("must be 1..%d bytes", maxNameLen)}
	case len(n.Queue) > maxNameLen:
		return &ValidationError{"queue", fmt.Sprintf("must be at most %d bytes", maxNameLen)}
	case n.Priority < 0 || n.Priority > MaxPriority:
		return &ValidationError{"priority", fmt.Sprintf("must be 0..%d", MaxPriority)}
	case n.AttemptTimeout < 0:
		return &ValidationError{"attempt_timeout", "must not be negative"}
	case n.MaxAttempts < 0:
		return &ValidationError{"max_attempts", "must not be negative"}
	case n.BackoffMin < 0:
		return &ValidationError{"backoff_min", "must not be negative"}
	case n.BackoffMax < 0:
		return &ValidationError{"backoff_max", "must not be negative"}
	case len(n.IdempotencyKey) > 256:
		return &ValidationError{"idempotency_key", "must be at most 256 bytes"}
	case len(n.Group) > maxNameLen:
		return &ValidationError{"group", fmt.Sprintf("must be at most %d bytes", maxNameLen)}
	case !text(n.Kind):
		return &ValidationError{"kind", notText}
	case !text(n.Queue):
		return &ValidationError{"queue", notText}
	case !text(n.IdempotencyKey):
		return &ValidationError{"idempotency_key", notText}
	case !text(n.Group):
		return &ValidationError{"group", notText}
	}
	// json.Valid lets invalid UTF-8 through inside strings; the stores
	// (PostgreSQL's json type) do not.
	if n.Payload != nil && (!json.Valid(n.Payload) || !utf8.Valid(n.Payload)) {
		return &ValidationError{"payload", "must be valid JSON in UTF-8"}
	}
	if n.Queue == "" {
		n.Queue = DefaultQueue
	}
	if n.Payload == nil {
		n.Payload = json.RawMessage("null")
	}
	if n.RunAt.IsZero() {
		n.RunAt = now
	}
	if n.MaxAttempts == 0 {
		n.MaxAttempts = DefaultAttempts
	}
	if n.BackoffMin == 0 {
		n.BackoffMin = DefaultBackoffMin
	}
	if n.BackoffMax == 0 {
		n.BackoffMax = DefaultBackoffMax
	}
	if n.BackoffMax < n.BackoffMin {
		return &ValidationError{"backoff_max", "must not be below backoff_min"}
	}
	if n.RunAt.After(maxTime) {
		return &ValidationError{"run_at", maxTimeMsg}
	}
	if !n.Deadline.IsZero() {
		switch {
		case !n.Deadline.After(now):
			return &ValidationError{"deadline", "must be in the future"}
		case !n.Deadline.After(n.RunAt):
			return &ValidationError{"deadline", "must be after run_at: the job would expire before it could run"}
		case n.Deadline.After(maxTime):
			return &ValidationError{"deadline", maxTimeMsg}
		}
	}
	return nil
}

// MaxQueueWait is the longest QueueConfig.MaxWait: a FullWait enqueue
// holds its caller (an HTTP request, say) for that long.
const MaxQueueWait = time.Minute

// ClampStored brings a configuration read from a store within the bounds
// that Normalize enforces on new ones, where a bound came later than the
// data: a MaxWait stored over MaxQueueWait (before the bound existed)
// becomes MaxQueueWait. The worker and SetPaused apply it, so that such a
// queue keeps working instead of failing validation.
func (q *QueueConfig) ClampStored() {
	q.MaxWait = min(q.MaxWait, MaxQueueWait)
}

// maxTime is the latest RunAt or Deadline a job may have, to the second:
// the stores keep times as nanoseconds since 1970 in 64 bits.
var maxTime = time.Unix(math.MaxInt64/int64(time.Second), 0).UTC()

const maxTimeMsg = "must be at or before 2262-04-11T23:47:16Z (the latest time the stores can keep)"

// NormalizeBatch returns a normalized copy of batch for queue ("" means
// DefaultQueue): each job's Queue must be "" or queue, and each is
// normalized at now. The first bad job gives a *ValidationError. Client
// and every Store call it, so that a batch means the same everywhere.
func NormalizeBatch(now time.Time, queue string, batch []NewJob) (string, []NewJob, error) {
	if queue == "" {
		queue = DefaultQueue
	}
	out := make([]NewJob, len(batch))
	for i, n := range batch {
		if n.Queue != "" && n.Queue != queue {
			return queue, nil, &ValidationError{"queue", fmt.Sprintf("job %d is for queue %q, not %q", i, n.Queue, queue)}
		}
		n.Queue = queue
		if err := n.Normalize(now); err != nil {
			return queue, nil, err
		}
		out[i] = n
	}
	return queue, out, nil
}

// FullPolicy says what Enqueue does when a queue is at capacity.
type FullPolicy string

// The policies.
const (
	FullReject FullPolicy = "reject" // refuse with a *QueueFullError
	FullShed   FullPolicy = "shed"   // shed the lowest-priority waiting job if the new one outranks it, else refuse
	FullWait   FullPolicy = "wait"   // retry for up to QueueConfig.MaxWait, then refuse
)

// QueueConfig is a queue's configuration, stored with the jobs.
type QueueConfig struct {
	Name string
	// Concurrency bounds how many of the queue's jobs one worker runs at
	// once. Zero means DefaultConcurrency.
	Concurrency int
	// Capacity bounds the queue's waiting jobs. Zero means
	// DefaultCapacity.
	Capacity int
	// Policy when full; "" means FullReject.
	Policy FullPolicy
	// MaxWait bounds the wait of FullWait: at most MaxQueueWait. Zero
	// means 1s.
	MaxWait time.Duration
	// RateLimit, when positive, bounds job starts per second per worker,
	// with bursts of RateBurst (zero means 1).
	RateLimit float64
	RateBurst int
	// Paused queues accept jobs but start none.
	Paused bool
	// IdempotencyWindow is how long an idempotency key stays bound to its
	// job. Zero means 24h.
	IdempotencyWindow time.Duration
}

// Queue defaults.
const (
	DefaultConcurrency       = 10
	DefaultCapacity          = 100_000
	DefaultIdempotencyWindow = 24 * time.Hour
	// DefaultRetention is how long a Worker keeps jobs in a terminal state
	// by default (see WorkerConfig.Retention).
	DefaultRetention = 7 * 24 * time.Hour
)

// Normalize fills defaults and checks the fields.
func (q *QueueConfig) Normalize() error {
	switch {
	case q.Name == "" || len(q.Name) > maxNameLen:
		return &ValidationError{"name", fmt.Sprintf("must be 1..%d bytes", maxNameLen)}
	case !text(q.Name):
		return &ValidationError{"name", notText}
	case q.Concurrency < 0:
		return &ValidationError{"concurrency", "must not be negative"}
	case q.Capacity < 0:
		return &ValidationError{"capacity", "must not be negative"}
	case q.MaxWait < 0 || q.MaxWait > MaxQueueWait:
		return &ValidationError{"max_wait", fmt.Sprintf("must be 0..%v: a wait holds the enqueue call open", MaxQueueWait)}
	case q.RateLimit < 0 || q.RateBurst < 0:
		return &ValidationError{"rate_limit", "must not be negative"}
	case q.IdempotencyWindow < 0:
		return &ValidationError{"idempotency_window", "must not be negative"}
	}
	switch q.Policy {
	case "":
		q.Policy = FullReject
	case FullReject, FullShed, FullWait:
	default:
		return &ValidationError{"policy", `must be "reject", "shed" or "wait"`}
	}
	if q.Concurrency == 0 {
		q.Concurrency = DefaultConcurrency
	}
	if q.Capacity == 0 {
		q.Capacity = DefaultCapacity
	}
	if q.MaxWait == 0 {
		q.MaxWait = time.Second
	}
	if q.RateLimit > 0 && q.RateBurst == 0 {
		q.RateBurst = 1
	}
	if q.IdempotencyWindow == 0 {
		q.IdempotencyWindow = DefaultIdempotencyWindow
	}
	return nil
}
