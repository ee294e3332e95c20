package client

import (
	"encoding/json"
	"fmt"
	"time"
)

// The wire format (docs/api.md): snake_case names, durations as Go
// duration strings ("1.5s"), times as RFC 3339. The types below encode
// and decode it with encoding/json, so that they can be printed or stored
// as the API shows them.

// State is where a job is in its life (docs/jobs.md).
type State string

// The states; the last five are terminal.
const (
	StateWaiting   State = "waiting"
	StateRunning   State = "running"
	StateSucceeded State = "succeeded"
	StateFailed    State = "failed"
	StateCanceled  State = "canceled"
	StateExpired   State = "expired"
	StateShed      State = "shed"
)

// Terminal reports whether s is a final state.
func (s State) Terminal() bool {
	switch s {
	case StateSucceeded, StateFailed, StateCanceled, StateExpired, StateShed:
		return true
	}
	return false
}

// NewJob is a job to enqueue. Zero fields take the server's defaults
// (docs/jobs.md): queue "default", priority 0, run now, no deadline, no
// attempt timeout, 5 attempts, backoff 1s..10m.
type NewJob struct {
	Kind    string          // required: selects the handler
	Queue   string          // "" means the queue of the call
	Payload json.RawMessage // JSON handed to the handler; nil means null
	// Priority 0..9; higher runs first and is shed last.
	Priority int
	// IdempotencyKey, when set, makes a repeat with the same kind and
	// payload return the existing job (Duplicate) instead of a new one.
	IdempotencyKey       string
	RunAt                time.Time     // zero means now
	Deadline             time.Time     // zero means none; else after now and after RunAt
	AttemptTimeout       time.Duration // zero means none
	MaxAttempts          int           // zero means the server's default
	BackoffMin           time.Duration // zero means the server's default
	BackoffMax           time.Duration // zero means the server's default
	Group                string
	CancelGroupOnFailure bool
}

// Job is a job as the server stores it.
type Job struct {
	ID int64
	NewJob
	State           State
	Attempt         int    // attempts claimed so far (a released one is given back)
	LastError       string // the error of the last failed attempt
	Reason          string // why it was canceled, expired, shed or failed early
	CreatedAt       time.Time
	UpdatedAt       time.Time
	FinishedAt      time.Time // zero until terminal
	CancelRequested bool      // cancellation was requested while it ran (stays true after it ends)
}

// newJobWire is NewJob on the wire: zero fields are left out.
type newJobWire struct {
	Kind                 string          `json:"kind"`
	Queue                string          `json:"queue,omitempty"`
	Payload              json.RawMessage `json:"payload,omitempty"`
	Priority             int             `json:"priority,omitempty"`
	IdempotencyKey       string          `json:"idempotency_key,omitempty"`
	RunAt                string          `json:"run_at,omitempty"`
	Deadline             string          `json:"deadline,omitempty"`
	AttemptTimeout       string          `json:"attempt_timeout,omitempty"`
	MaxAttempts          int             `json:"max_attempts,omitempty"`
	BackoffMin           string          `json:"backoff_min,omitempty"`
	BackoffMax           string          `json:"backoff_max,omitempty"`
	Group                string          `json:"group,omitempty"`
	CancelGroupOnFailure bool            `json:"cancel_group_on_failure,omitempty"`
}

// jobWire is Job on the wire: every field, null for unset times.
type jobWire struct {
	ID                   int64           `json:"id"`
	Kind                 string          `json:"kind"`
	Queue                string          `json:"queue"`
	Payload              json.RawMessage `json:"payload"`
	Priority             int             `json:"priority"`
	IdempotencyKey       string          `json:"idempotency_key"`
	RunAt                *time.Time      `json:"run_at"`
	Deadline             *time.Time      `json:"deadline"`
	AttemptTimeout       wireDuration    `json:"attempt_timeout"`
	MaxAttempts          int             `json:"max_attempts"`
	BackoffMin           wireDuration    `json:"backoff_min"`
	BackoffMax           wireDuration    `json:"backoff_max"`
	Group                string          `json:"group"`
	CancelGroupOnFailure bool            `json:"cancel_group_on_failure"`
	State                State           `json:"state"`
	Attempt              int             `json:"attempt"`
	LastError            string          `json:"last_error"`
	Reason               string          `json:"reason"`
	CreatedAt            *time.Time      `json:"created_at"`
	UpdatedAt            *time.Time      `json:"updated_at"`
	FinishedAt           *time.Time      `json:"finished_at"`
	CancelRequested      bool            `json:"cancel_requested"`
}

// wireDuration is a duration as a Go duration string.
type wireDuration time.Duration

func (d wireDuration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

func (d *wireDuration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration: %w", err)
	}
	if s == "" {
		*d = 0
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("duration: %w", err)
	}
	*d = wireDuration(v)
	return nil
}

func durString(d time.Duration) string {
	if d == 0 {
		return ""
	}
	return d.String()
}

func timeString(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.Format(time.RFC3339Nano)
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

func timeVal(t *time.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return *t
}

func parseWireTime(field, s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return t, fmt.Errorf("%s: %w", field, err)
	}
	return t, nil
}

func parseWireDuration(field, s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return d, fmt.Errorf("%s: %w", field, err)
	}
	return d, nil
}

func (n NewJob) wire() newJobWire {
	return newJobWire{
		Kind:                 n.Kind,
		Queue:                n.Queue,
		Payload:              n.Payload,
		Priority:             n.Priority,
		IdempotencyKey:       n.IdempotencyKey,
		RunAt:                timeString(n.RunAt),
		Deadline:             timeString(n.Deadline),
		AttemptTimeout:       durString(n.AttemptTimeout),
		MaxAttempts:          n.MaxAttempts,
		BackoffMin:           durString(n.BackoffMin),
		BackoffMax:           durString(n.BackoffMax),
		Group:                n.Group,
		CancelGroupOnFailure: n.CancelGroupOnFailure,
	}
}

// MarshalJSON encodes n as an enqueue request carries it.
func (n NewJob) MarshalJSON() ([]byte, error) { return json.Marshal(n.wire()) }

// UnmarshalJSON decodes n from an enqueue request's job object.
func (n *NewJob) UnmarshalJSON(b []byte) error {
	var w newJobWire
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	v := NewJob{
		Kind: w.Kind, Queue: w.Queue, Payload: w.Payload, Priority: w.Priority,
		IdempotencyKey: w.IdempotencyKey, MaxAttempts: w.MaxAttempts, Group: w.Group,
		CancelGroupOnFailure: w.CancelGroupOnFailure,
	}
	var err error
	if v.RunAt, err = parseWireTime("run_at", w.RunAt); err != nil {
		return err
	}
	if v.Deadline, err = parseWireTime("deadline", w.Deadline); err != nil {
		return err
	}
	if v.AttemptTimeout, err = parseWireDuration("attempt_timeout", w.AttemptTimeout); err != nil {
		return err
	}
	if v.BackoffMin, err = parseWireDuration("backoff_min", w.BackoffMin); err != nil {
		return err
	}
	if v.BackoffMax, err = parseWireDuration("backoff_max", w.BackoffMax); err != nil {
		return err
	}
	*n = v
	return nil
}

func (j *Job) wire() jobWire {
	return jobWire{
		ID: j.ID, Kind: j.Kind, Queue: j.Queue, Payload: j.Payload, Priority: j.Priority,
		IdempotencyKey: j.IdempotencyKey, RunAt: timePtr(j.RunAt), Deadline: timePtr(j.Deadline),
		AttemptTimeout: wireDuration(j.AttemptTimeout), MaxAttempts: j.MaxAttempts,
		BackoffMin: wireDuration(j.BackoffMin), BackoffMax: wireDuration(j.BackoffMax),
		Group: j.Group, CancelGroupOnFailure: j.CancelGroupOnFailure, State: j.State,
		Attempt: j.Attempt, LastError: j.LastError, Reason: j.Reason,
		CreatedAt: timePtr(j.CreatedAt), UpdatedAt: timePtr(j.UpdatedAt), FinishedAt: timePtr(j.FinishedAt),
		CancelRequested: j.CancelRequested,
	}
}

// MarshalJSON encodes j as the API shows a job.
func (j Job) MarshalJSON() ([]byte, error) { return json.Marshal(j.wire()) }

// UnmarshalJSON decodes j as the API shows a job. Unknown fields are
// ignored, so that newer servers can add some.
func (j *Job) UnmarshalJSON(b []byte) error {
	var w jobWire
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	*j = Job{
		ID: w.ID,
		NewJob: NewJob{
			Kind: w.Kind, Queue: w.Queue, Payload: w.Payload, Priority: w.Priority,
			IdempotencyKey: w.IdempotencyKey, RunAt: timeVal(w.RunAt), Deadline: timeVal(w.Deadline),
			AttemptTimeout: time.Duration(w.AttemptTimeout), MaxAttempts: w.MaxAttempts,
			BackoffMin: time.Duration(w.BackoffMin), BackoffMax: time.Duration(w.BackoffMax),
			Group: w.Group, CancelGroupOnFailure: w.CancelGroupOnFailure,
		},
		State: w.State, Attempt: w.Attempt, LastError: w.LastError, Reason: w.Reason,
		CreatedAt: timeVal(w.CreatedAt), UpdatedAt: timeVal(w.UpdatedAt), FinishedAt: timeVal(w.FinishedAt),
		CancelRequested: w.CancelRequested,
	}
	return nil
}

// EnqueueResult is one job's result of an enqueue.
type EnqueueResult struct {
	Job *Job // nil when Err is set
	// Duplicate: the idempotency key was bound to this existing job.
	Duplicate bool
	// Err is an *APIError matching ErrConflict when the job's idempotency
	// key is bound to a job with another kind or payload (EnqueueMany
	// only: the other jobs of the batch were enqueued).
	Err error
}

// MarshalJSON encodes r as the API does: the job with "duplicate", or the
// error alone.
func (r EnqueueResult) MarshalJSON() ([]byte, error) {
	if r.Job == nil {
		var ae *APIError
		body := errorWire{Code: "error", Message: "no job"}
		if r.Err != nil {
			body.Message = r.Err.Error()
		}
		if asAPIError(r.Err, &ae) {
			body = errorWire{Code: ae.Code, Message: ae.Message, Field: ae.Field}
		}
		return json.Marshal(struct {
			Error errorWire `json:"error"`
		}{body})
	}
	return json.Marshal(struct {
		jobWire
		Duplicate bool `json:"duplicate"`
	}{r.Job.wire(), r.Duplicate})
}

// ListFilter selects jobs for List. Zero fields match everything.
type ListFilter struct {
	Queue string
	State State
	Group string
	// After: only jobs with a larger id (the NextAfter of the previous page).
	After int64
	// Limit bounds the page: 1..1000; zero means the server's default (100).
	Limit int
}

// JobPage is one page of List.
type JobPage struct {
	Jobs []*Job `json:"jobs"`
	// NextAfter is the ListFilter.After of the next page; zero on the
	// last page. A full page always has one, so the next page may be empty.
	NextAfter int64 `json:"next_after,omitempty"`
}

// GroupStatus is the outcome of a group of jobs.
type GroupStatus struct {
	Name   string        `json:"name"`
	Counts map[State]int `json:"counts"` // only states with jobs
	Total  int           `json:"total"`
	// Done: every job of the group is terminal.
	Done bool `json:"done"`
	// Succeeded: done, and every job succeeded.
	Succeeded bool `json:"succeeded"`
}

// Queue is a queue's configuration. For PutQueue, zero fields take the
// server's defaults (docs/jobs.md): concurrency 10, capacity 100000,
// policy "reject", max wait 1s, no rate limit, not paused, idempotency
// window 24h.
type Queue struct {
	Name        string
	Concurrency int // jobs of the queue one worker runs at once
	Capacity    int // waiting jobs
	// Policy when full: "reject", "shed" or "wait".
	Policy            string
	MaxWait           time.Duration // bound of the "wait" policy, at most 1m
	RateLimit         float64       // job starts per second per worker; 0 means none
	RateBurst         int
	Paused            bool // accepts jobs, starts none
	IdempotencyWindow time.Duration
}

type queueWire struct {
	Name              string       `json:"name"`
	Concurrency       int          `json:"concurrency"`
	Capacity          int          `json:"capacity"`
	Policy            string       `json:"policy"`
	MaxWait           wireDuration `json:"max_wait"`
	RateLimit         float64      `json:"rate_limit"`
	RateBurst         int          `json:"rate_burst"`
	Paused            bool         `json:"paused"`
	IdempotencyWindow wireDuration `json:"idempotency_window"`
}

// MarshalJSON encodes q as the API shows it.
func (q Queue) MarshalJSON() ([]byte, error) {
	return json.Marshal(queueWire{
		Name: q.Name, Concurrency: q.Concurrency, Capacity: q.Capacity, Policy: q.Policy,
		MaxWait: wireDuration(q.MaxWait), RateLimit: q.RateLimit, RateBurst: q.RateBurst,
		Paused: q.Paused, IdempotencyWindow: wireDuration(q.IdempotencyWindow),
	})
}

// UnmarshalJSON decodes q as the API shows it.
func (q *Queue) UnmarshalJSON(b []byte) error {
	var w queueWire
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	*q = Queue{
		Name: w.Name, Concurrency: w.Concurrency, Capacity: w.Capacity, Policy: w.Policy,
		MaxWait: time.Duration(w.MaxWait), RateLimit: w.RateLimit, RateBurst: w.RateBurst,
		Paused: w.Paused, IdempotencyWindow: time.Duration(w.IdempotencyWindow),
	}
	return nil
}

// queuePutWire is the body of PutQueue: zero fields left out, so that the
// server applies its defaults.
type queuePutWire struct {
	Name              string  `json:"name,omitempty"`
	Concurrency       int     `json:"concurrency,omitempty"`
	Capacity          int     `json:"capacity,omitempty"`
	Policy            string  `json:"policy,omitempty"`
	MaxWait           string  `json:"max_wait,omitempty"`
	RateLimit         float64 `json:"rate_limit,omitempty"`
	RateBurst         int     `json:"rate_burst,omitempty"`
	Paused            bool    `json:"paused,omitempty"`
	IdempotencyWindow string  `json:"idempotency_window,omitempty"`
}
