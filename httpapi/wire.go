package httpapi

import (
	"encoding/json"
	"net/http"
	"time"

	"github.com/sluicehq/sluice/jobs"
)

// Wire conventions (docs/api.md): snake_case names; durations as Go
// duration strings ("1.5s", "0s" for none); times as RFC 3339 in UTC with
// nanoseconds when they have them, null when unset.

// timeJSON is a time that encodes as RFC 3339, or null when zero.
type timeJSON time.Time

func (t timeJSON) MarshalJSON() ([]byte, error) {
	tt := time.Time(t)
	if tt.IsZero() {
		return []byte("null"), nil
	}
	return json.Marshal(tt.UTC().Format(time.RFC3339Nano))
}

// durationJSON is a duration that encodes as a Go duration string.
type durationJSON time.Duration

func (d durationJSON) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

// jobJSON is a job as the API shows it.
type jobJSON struct {
	ID                   int64           `json:"id"`
	Kind                 string          `json:"kind"`
	Queue                string          `json:"queue"`
	Payload              json.RawMessage `json:"payload"`
	Priority             int             `json:"priority"`
	IdempotencyKey       string          `json:"idempotency_key"`
	RunAt                timeJSON        `json:"run_at"`
	Deadline             timeJSON        `json:"deadline"`
	AttemptTimeout       durationJSON    `json:"attempt_timeout"`
	MaxAttempts          int             `json:"max_attempts"`
	BackoffMin           durationJSON    `json:"backoff_min"`
	BackoffMax           durationJSON    `json:"backoff_max"`
	Group                string          `json:"group"`
	CancelGroupOnFailure bool            `json:"cancel_group_on_failure"`
	State                jobs.State      `json:"state"`
	Attempt              int             `json:"attempt"`
	LastError            string          `json:"last_error"`
	Reason               string          `json:"reason"`
	CreatedAt            timeJSON        `json:"created_at"`
	UpdatedAt            timeJSON        `json:"updated_at"`
	FinishedAt           timeJSON        `json:"finished_at"`
	CancelRequested      bool            `json:"cancel_requested"`
}

func toJobJSON(j *jobs.Job) jobJSON {
	payload := j.Payload
	if len(payload) == 0 {
		payload = json.RawMessage("null")
	}
	return jobJSON{
		ID:                   j.ID,
		Kind:                 j.Kind,
		Queue:                j.Queue,
		Payload:              payload,
		Priority:             j.Priority,
		IdempotencyKey:       j.IdempotencyKey,
		RunAt:                timeJSON(j.RunAt),
		Deadline:             timeJSON(j.Deadline),
		AttemptTimeout:       durationJSON(j.AttemptTimeout),
		MaxAttempts:          j.MaxAttempts,
		BackoffMin:           durationJSON(j.BackoffMin),
		BackoffMax:           durationJSON(j.BackoffMax),
		Group:                j.Group,
		CancelGroupOnFailure: j.CancelGroupOnFailure,
		State:                j.State,
		Attempt:              j.Attempt,
		LastError:            j.LastError,
		Reason:               j.Reason,
		CreatedAt:            timeJSON(j.CreatedAt),
		UpdatedAt:            timeJSON(j.UpdatedAt),
		FinishedAt:           timeJSON(j.FinishedAt),
		CancelRequested:      j.CancelRequested,
	}
}

// enqueuedJSON is a job in an enqueue response.
type enqueuedJSON struct {
	jobJSON
	Duplicate bool `json:"duplicate"`
}

// batchEntryJSON is one entry of a batch enqueue response: the job, or
// (for an idempotency conflict) the error alone.
type batchEntryJSON struct {
	*enqueuedJSON
	Error *errorJSON `json:"error,omitempty"`
}

type batchJSON struct {
	Jobs []batchEntryJSON `json:"jobs"`
}

type listJSON struct {
	Jobs      []jobJSON `json:"jobs"`
	NextAfter *int64    `json:"next_after"`
}

type groupJSON struct {
	Name      string             `json:"name"`
	Counts    map[jobs.State]int `json:"counts"`
	Total     int                `json:"total"`
	Done      bool               `json:"done"`
	Succeeded bool               `json:"succeeded"`
}

type queueJSON struct {
	Name              string          `json:"name"`
	Concurrency       int             `json:"concurrency"`
	Capacity          int             `json:"capacity"`
	Policy            jobs.FullPolicy `json:"policy"`
	MaxWait           durationJSON    `json:"max_wait"`
	RateLimit         float64         `json:"rate_limit"`
	RateBurst         int             `json:"rate_burst"`
	Paused            bool            `json:"paused"`
	IdempotencyWindow durationJSON    `json:"idempotency_window"`
}

func toQueueJSON(q jobs.QueueConfig) queueJSON {
	return queueJSON{
		Name:              q.Name,
		Concurrency:       q.Concurrency,
		Capacity:          q.Capacity,
		Policy:            q.Policy,
		MaxWait:           durationJSON(q.MaxWait),
		RateLimit:         q.RateLimit,
		RateBurst:         q.RateBurst,
		Paused:            q.Paused,
		IdempotencyWindow: durationJSON(q.IdempotencyWindow),
	}
}

type queuesJSON struct {
	Queues []queueJSON `json:"queues"`
}

type statusJSON struct {
	Status string `json:"status"`
}

// writeJSON sends v with status. An encoding failure cannot be reported
// to the client any more (the status is sent); v's types cannot fail.
func writeJSON(w http.ResponseWriter, status int, v any) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}
