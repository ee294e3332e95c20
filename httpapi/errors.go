package httpapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/sluicehq/sluice/jobs"
)

// Error codes: the stable "code" of an error response. Clients match on
// these, never on messages.
const (
	CodeInvalidRequest       = "invalid_request"
	CodeUnauthorized         = "unauthorized"
	CodeNotFound             = "not_found"
	CodeMethodNotAllowed     = "method_not_allowed"
	CodeIdempotencyConflict  = "idempotency_conflict"
	CodePayloadTooLarge      = "payload_too_large"
	CodeUnsupportedMediaType = "unsupported_media_type"
	CodeQueueFull            = "queue_full"
	CodeUnavailable          = "unavailable"
	CodeShuttingDown         = "shutting_down"
	CodeNotReady             = "not_ready"
	CodeInternal             = "internal"
)

// Errors of the API itself, beside those of package jobs.
var (
	errUnauthorized     = errors.New("httpapi: missing or invalid bearer token")
	errRouteNotFound    = errors.New("httpapi: no such endpoint")
	errMethodNotAllowed = errors.New("httpapi: method not allowed")
	errNotReady         = errors.New("httpapi: not ready")
)

// requestError is a request that does not decode: a body that is not the
// expected JSON, or a bad path or query parameter. Field names the
// offending field as the API spells it ("" when the whole body is wrong).
type requestError struct {
	Field string
	Msg   string
}

func (e *requestError) Error() string {
	if e.Field == "" {
		return "httpapi: invalid request: " + e.Msg
	}
	return fmt.Sprintf("httpapi: invalid %s: %s", e.Field, e.Msg)
}

// mediaTypeError is a body sent with a Content-Type other than JSON.
type mediaTypeError struct{ got string }

func (e *mediaTypeError) Error() string {
	return fmt.Sprintf("httpapi: Content-Type %q: want application/json", e.got)
}

// messageError attaches a message safe to show the client to an error
// whose kind (status and code) still comes from the error it wraps.
type messageError struct {
	msg string
	err error
}

func (e *messageError) Error() string { return e.msg + ": " + e.err.Error() }
func (e *messageError) Unwrap() error { return e.err }

// withMessage wraps err with a message for the client.
func withMessage(err error, format string, args ...any) error {
	return &messageError{msg: fmt.Sprintf(format, args...), err: err}
}

func isErr(target error) func(error) bool {
	return func(err error) bool { return errors.Is(err, target) }
}

func asErr[T error](err error) bool {
	var t T
	return errors.As(err, &t)
}

// errorKinds is the one table that maps error kinds to HTTP statuses and
// codes. The first matching row wins; an error no row matches is a 500
// "internal" whose details are logged, never sent. Rows marked retry send
// Retry-After. docs/api.md reproduces this table; keep them together.
var errorKinds = []struct {
	match  func(error) bool
	status int
	code   string
	msg    string // the message when the error carries none for the client
	retry  bool
}{
	{asErr[*requestError], http.StatusBadRequest, CodeInvalidRequest, "invalid request", false},
	{asErr[*jobs.ValidationError], http.StatusBadRequest, CodeInvalidRequest, "invalid request", false},
	{asErr[*http.MaxBytesError], http.StatusRequestEntityTooLarge, CodePayloadTooLarge, "request body too large", false},
	{asErr[*mediaTypeError], http.StatusUnsupportedMediaType, CodeUnsupportedMediaType, "request body must be application/json", false},
	{isErr(errUnauthorized), http.StatusUnauthorized, CodeUnauthorized, "missing or invalid bearer token", false},
	{isErr(jobs.ErrNotFound), http.StatusNotFound, CodeNotFound, "not found", false},
	{isErr(errRouteNotFound), http.StatusNotFound, CodeNotFound, "no such endpoint", false},
	{isErr(errMethodNotAllowed), http.StatusMethodNotAllowed, CodeMethodNotAllowed, "method not allowed", false},
	{isErr(jobs.ErrIdempotencyConflict), http.StatusConflict, CodeIdempotencyConflict, "idempotency key is bound to a job with another kind or payload", false},
	{isErr(jobs.ErrQueueFull), http.StatusTooManyRequests, CodeQueueFull, "queue is full", true},
	{isErr(jobs.ErrClosed), http.StatusServiceUnavailable, CodeShuttingDown, "server is shutting down", true},
	{isErr(errNotReady), http.StatusServiceUnavailable, CodeNotReady, "server is not ready", true},
	{isErr(jobs.ErrUnavailable), http.StatusServiceUnavailable, CodeUnavailable, "store unavailable, retry later", true},
	{isErr(context.DeadlineExceeded), http.StatusServiceUnavailable, CodeUnavailable, "request ran out of time, retry later", true},
	{isErr(context.Canceled), http.StatusServiceUnavailable, CodeUnavailable, "request canceled", true},
}

// apiError is the classified form of an error, ready to send.
type apiError struct {
	status     int
	code, msg  string
	field      string
	retryAfter time.Duration // > 0: send Retry-After
}

// classify maps err to its response through errorKinds. retryAfter is the
// Retry-After of retryable kinds that carry no estimate of their own.
func classify(err error, retryAfter time.Duration) apiError {
	for _, k := range errorKinds {
		if !k.match(err) {
			continue
		}
		e := apiError{status: k.status, code: k.code, msg: k.msg}
		if k.retry {
			e.retryAfter = retryAfter
		}
		var (
			re *requestError
			ve *jobs.ValidationError
			qf *jobs.QueueFullError
			me *messageError
			mb *http.MaxBytesError
		)
		switch {
		case errors.As(err, &re):
			e.field, e.msg = re.Field, re.Msg
		case errors.As(err, &ve):
			e.field, e.msg = ve.Field, ve.Msg
		case errors.As(err, &qf):
			e.msg = fmt.Sprintf("queue %q is full (capacity %d)", qf.Queue, qf.Capacity)
			if qf.Shed {
				e.msg += ": no lower-priority job to shed"
			}
			if qf.RetryAfter > 0 {
				e.retryAfter = qf.RetryAfter
			}
		case errors.As(err, &mb):
			e.msg = fmt.Sprintf("request body larger than %d bytes", mb.Limit)
		case errors.As(err, &me):
			e.msg = me.msg
		}
		return e
	}
	return apiError{status: http.StatusInternalServerError, code: CodeInternal, msg: "internal error"}
}

// retryAfterSeconds renders d as Retry-After: whole seconds, rounded up,
// at least 1.
func retryAfterSeconds(d time.Duration) string {
	s := int64((d + time.Second - 1) / time.Second)
	return strconv.FormatInt(max(s, 1), 10)
}

// errorBody is the JSON of an error response.
type errorBody struct {
	Error errorJSON `json:"error"`
}

type errorJSON struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Field   string `json:"field,omitempty"`
}

// fail answers r with err's status, code and message, and logs what the
// client does not see: the details of 500s at Error, others at Debug.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	e := classify(err, s.cfg.RetryAfter)
	if e.status >= 500 && e.code == CodeInternal {
		s.log.ErrorContext(r.Context(), "httpapi: request failed", "method", r.Method, "pattern", r.Pattern, "err", err)
	} else {
		s.log.DebugContext(r.Context(), "httpapi: request refused", "method", r.Method, "pattern", r.Pattern, "status", e.status, "code", e.code, "err", err)
	}
	if e.status == http.StatusUnauthorized {
		v := `Bearer realm="sluice"`
		if r.Header.Get("Authorization") != "" {
			v += `, error="invalid_token"`
		}
		w.Header().Set("WWW-Authenticate", v)
	}
	if e.retryAfter > 0 {
		w.Header().Set("Retry-After", retryAfterSeconds(e.retryAfter))
	}
	writeJSON(w, e.status, errorBody{errorJSON{Code: e.code, Message: e.msg, Field: e.field}})
}
