package client

import (
	"errors"
	"fmt"
	"net/http"
	"time"
)

// Sentinel errors an *APIError matches with errors.Is, by its code (or,
// for a response without one, by its status).
var (
	// ErrInvalid: the server refused the request as malformed (400, 413
	// and 415, including admission control's bad_priority and
	// bad_deadline); Field names the offending field.
	ErrInvalid = errors.New("client: invalid request")
	// ErrUnauthorized: the token is missing or wrong (401).
	ErrUnauthorized = errors.New("client: unauthorized")
	// ErrNotFound: no such job, group, queue or endpoint (404).
	ErrNotFound = errors.New("client: not found")
	// ErrConflict: the idempotency key is bound to a job with another kind
	// or payload (409).
	ErrConflict = errors.New("client: idempotency conflict")
	// ErrQueueFull: the queue is at capacity (429 queue_full); retry after
	// APIError.RetryAfter.
	ErrQueueFull = errors.New("client: queue full")
	// ErrUnavailable: the server cannot serve now: its store is
	// unavailable, it is shutting down or not ready, it sheds load, or the
	// request's deadline passed before it was admitted (503, 504, and 429
	// other than queue_full); retry after APIError.RetryAfter.
	ErrUnavailable = errors.New("client: server unavailable")
)

// APIError is an error response of the server.
type APIError struct {
	Status  int    // HTTP status
	Code    string // stable code, e.g. "queue_full"; "" if the body had none
	Message string
	Field   string // the offending field, when there is one
	// RetryAfter is the server's Retry-After, zero when it sent none.
	RetryAfter time.Duration
}

func (e *APIError) Error() string {
	msg := fmt.Sprintf("client: server answered %d", e.Status)
	if e.Code != "" {
		msg += " " + e.Code
	}
	if e.Field != "" {
		msg += ": " + e.Field
	}
	if e.Message != "" {
		msg += ": " + e.Message
	}
	if e.RetryAfter > 0 {
		msg += fmt.Sprintf(" (retry after %v)", e.RetryAfter)
	}
	return msg
}

// Is matches the sentinel errors of the package.
func (e *APIError) Is(target error) bool {
	switch target {
	case ErrInvalid:
		switch e.Code {
		case "invalid_request", "payload_too_large", "unsupported_media_type", "bad_priority", "bad_deadline":
			return true
		}
		return e.Code == "" && (e.Status == http.StatusBadRequest || e.Status == http.StatusRequestEntityTooLarge ||
			e.Status == http.StatusUnsupportedMediaType)
	case ErrUnauthorized:
		return e.Code == "unauthorized" || (e.Code == "" && e.Status == http.StatusUnauthorized)
	case ErrNotFound:
		return e.Code == "not_found" || (e.Code == "" && e.Status == http.StatusNotFound)
	case ErrConflict:
		return e.Code == "idempotency_conflict" || (e.Code == "" && e.Status == http.StatusConflict)
	case ErrQueueFull:
		return e.Code == "queue_full"
	case ErrUnavailable:
		return e.Status == http.StatusServiceUnavailable || e.Status == http.StatusGatewayTimeout ||
			(e.Status == http.StatusTooManyRequests && e.Code != "queue_full")
	}
	return false
}

// Temporary reports whether retrying later may succeed (429, 503 and 504).
func (e *APIError) Temporary() bool {
	return e.Status == http.StatusTooManyRequests || e.Status == http.StatusServiceUnavailable ||
		e.Status == http.StatusGatewayTimeout
}

func asAPIError(err error, target **APIError) bool { return err != nil && errors.As(err, target) }

// errorWire is the JSON of an error response.
type errorWire struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Field   string `json:"field,omitempty"`
}
