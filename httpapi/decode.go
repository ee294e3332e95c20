package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"mime"
	"net/http"
	"net/url"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sluicehq/sluice/jobs"
)

// Request decoding is strict: a body must be one JSON object whose keys are
// exactly (case-sensitively) the documented snake_case names, each at most
// once, with values of the documented types, followed by nothing but white
// space. Every refusal is a *requestError naming the field.

// maxNameLen bounds queue and group names (as package jobs does).
const maxNameLen = 128

// readBody reads r's body, at most limit bytes: a larger body is a
// *http.MaxBytesError (413), a non-empty body that is not JSON a
// *mediaTypeError (415).
func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	if r.ContentLength > limit {
		// Refuse without reading the body, but through MaxBytesReader: it
		// tells net/http the request was too large, so the server closes
		// the connection after the 413 instead of resetting it before the
		// client could read the answer.
		_, _ = io.Copy(io.Discard, http.MaxBytesReader(w, r.Body, 0))
		return nil, &http.MaxBytesError{Limit: limit}
	}
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var mb *http.MaxBytesError
		if errors.As(err, &mb) {
			return nil, mb
		}
		return nil, fmt.Errorf("read body: %w", err)
	}
	if len(bytes.TrimSpace(data)) > 0 {
		if ct := r.Header.Get("Content-Type"); ct != "" {
			mt, _, err := mime.ParseMediaType(ct)
			if err != nil || mt != "application/json" {
				return nil, &mediaTypeError{got: ct}
			}
		} else {
			return nil, &mediaTypeError{}
		}
	}
	return data, nil
}

// fieldNames returns the JSON names of the fields of struct type t.
var fieldNames = func() func(reflect.Type) map[string]bool {
	var cache sync.Map // reflect.Type -> map[string]bool
	return func(t reflect.Type) map[string]bool {
		if m, ok := cache.Load(t); ok {
			return m.(map[string]bool)
		}
		m := map[string]bool{}
		for f := range t.Fields() {
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if name != "" && name != "-" {
				m[name] = true
			}
		}
		cache.Store(t, m)
		return m
	}
}()

// decodeObject decodes data, one JSON object, into dst (a pointer to a
// struct with json tags). prefix is prepended to field names in errors
// ("jobs[2]." for the third job of a batch).
func decodeObject(data []byte, dst any, prefix string) error {
	whole := strings.TrimSuffix(prefix, ".")
	if len(bytes.TrimSpace(data)) == 0 {
		return &requestError{Field: whole, Msg: "must be a JSON object"}
	}
	if err := checkKeys(data, fieldNames(reflect.TypeOf(dst).Elem()), prefix); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		return jsonError(err, prefix)
	}
	return nil
}

// checkKeys checks that data is one JSON object with only allowed keys,
// none repeated, and nothing after it.
func checkKeys(data []byte, allowed map[string]bool, prefix string) error {
	whole := strings.TrimSuffix(prefix, ".")
	dec := json.NewDecoder(bytes.NewReader(data))
	tok, err := dec.Token()
	if err != nil {
		return jsonError(err, prefix)
	}
	if tok != json.Delim('{') {
		return &requestError{Field: whole, Msg: "must be a JSON object"}
	}
	seen := make(map[string]bool, len(allowed))
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return jsonError(err, prefix)
		}
		key, _ := tok.(string)
		switch {
		case !allowed[key]:
			return &requestError{Field: prefix + key, Msg: "unknown field"}
		case seen[key]:
			return &requestError{Field: prefix + key, Msg: "repeated field"}
		}
		seen[key] = true
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return jsonError(err, prefix)
		}
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return jsonError(err, prefix)
	}
	if _, err := dec.Token(); err != io.EOF {
		return &requestError{Field: whole, Msg: "unexpected data after the JSON object"}
	}
	return nil
}

// jsonError turns an encoding/json error into a *requestError.
func jsonError(err error, prefix string) error {
	whole := strings.TrimSuffix(prefix, ".")
	var (
		se *json.SyntaxError
		te *json.UnmarshalTypeError
	)
	switch {
	case errors.As(err, &se):
		return &requestError{Field: whole, Msg: fmt.Sprintf("malformed JSON at byte %d: %s", se.Offset, strings.TrimPrefix(se.Error(), "json: "))}
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return &requestError{Field: whole, Msg: "malformed JSON: unexpected end"}
	case errors.As(err, &te):
		field := te.Field
		if field == "" {
			field = whole
		} else {
			field = prefix + field
		}
		return &requestError{Field: field, Msg: "must be " + describeType(te.Type)}
	}
	// DisallowUnknownFields; checkKeys normally catches these first.
	if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		if n, uerr := strconv.Unquote(name); uerr == nil {
			name = n
		}
		return &requestError{Field: prefix + name, Msg: "unknown field"}
	}
	return &requestError{Field: whole, Msg: "malformed JSON"}
}

// describeType names a Go type the way the API documents it.
func describeType(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer in range"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Struct, reflect.Map:
		return "an object"
	}
	return "of another type"
}

// parseDuration parses an optional, non-negative Go duration string ("" is
// zero).
func parseDuration(field, s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, &requestError{Field: field, Msg: `must be a duration such as "1.5s", "250ms" or "2h45m"`}
	}
	if d < 0 {
		return 0, &requestError{Field: field, Msg: "must not be negative"}
	}
	return d, nil
}

// parseTime parses an optional RFC 3339 time ("" is the zero time).
func parseTime(field, s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, &requestError{Field: field, Msg: `must be an RFC 3339 time such as "2025-01-02T15:04:05Z"`}
	}
	return t, nil
}

// parseName checks a queue or group name from the path.
func parseName(field, s string) (string, error) {
	if s == "" || len(s) > maxNameLen {
		return "", &requestError{Field: field, Msg: fmt.Sprintf("must be 1..%d bytes", maxNameLen)}
	}
	return s, nil
}

// parseID parses a job id: a positive decimal integer.
func parseID(s string) (int64, error) {
	id, err := strconv.ParseInt(s, 10, 64)
	if err != nil || id <= 0 || s[0] < '0' || s[0] > '9' {
		return 0, &requestError{Field: "id", Msg: "must be a positive integer"}
	}
	return id, nil
}

// jobRequest is one job in an enqueue request.
type jobRequest struct {
	Kind                 string          `json:"kind"`
	Queue                string          `json:"queue"`
	Payload              json.RawMessage `json:"payload"`
	Priority             int             `json:"priority"`
	IdempotencyKey       string          `json:"idempotency_key"`
	RunAt                string          `json:"run_at"`
	Deadline             string          `json:"deadline"`
	AttemptTimeout       string          `json:"attempt_timeout"`
	MaxAttempts          int             `json:"max_attempts"`
	BackoffMin           string          `json:"backoff_min"`
	BackoffMax           string          `json:"backoff_max"`
	Group                string          `json:"group"`
	CancelGroupOnFailure bool            `json:"cancel_group_on_failure"`
}

// batchRequest is the body of a batch enqueue.
type batchRequest struct {
	Jobs []json.RawMessage `json:"jobs"`
}

// toNewJob converts r; prefix is prepended to field names in errors.
func (r *jobRequest) toNewJob(prefix string) (jobs.NewJob, error) {
	n := jobs.NewJob{
		Kind:                 r.Kind,
		Queue:                r.Queue,
		Payload:              r.Payload,
		Priority:             r.Priority,
		IdempotencyKey:       r.IdempotencyKey,
		MaxAttempts:          r.MaxAttempts,
		Group:                r.Group,
		CancelGroupOnFailure: r.CancelGroupOnFailure,
	}
	var err error
	if n.RunAt, err = parseTime(prefix+"run_at", r.RunAt); err != nil {
		return n, err
	}
	if n.Deadline, err = parseTime(prefix+"deadline", r.Deadline); err != nil {
		return n, err
	}
	if n.AttemptTimeout, err = parseDuration(prefix+"attempt_timeout", r.AttemptTimeout); err != nil {
		return n, err
	}
	if n.BackoffMin, err = parseDuration(prefix+"backoff_min", r.BackoffMin); err != nil {
		return n, err
	}
	if n.BackoffMax, err = parseDuration(prefix+"backoff_max", r.BackoffMax); err != nil {
		return n, err
	}
	if bytes.Equal(bytes.TrimSpace(n.Payload), []byte("null")) {
		n.Payload = nil
	}
	return n, nil
}

// enqueueRequest is a decoded enqueue body: one job, or a batch.
type enqueueRequest struct {
	Jobs  []jobs.NewJob
	Batch bool // the body was {"jobs": [...]}
}

// decodeEnqueue decodes an enqueue body for queue: either one job object
// or {"jobs": [...]} with 1..maxBatch jobs. It checks what package jobs
// would refuse too, so that a bad job of a batch is named by its index.
func decodeEnqueue(data []byte, queue string, maxBatch int, now time.Time) (enqueueRequest, error) {
	var top map[string]json.RawMessage
	if err := checkKeys(data, allJobKeys, ""); err != nil {
		return enqueueRequest{}, err
	}
	if err := json.Unmarshal(data, &top); err != nil {
		return enqueueRequest{}, jsonError(err, "")
	}
	if _, ok := top["jobs"]; !ok {
		var jr jobRequest
		if err := decodeObject(data, &jr, ""); err != nil {
			return enqueueRequest{}, err
		}
		n, err := checkJob(&jr, queue, "", now)
		if err != nil {
			return enqueueRequest{}, err
		}
		return enqueueRequest{Jobs: []jobs.NewJob{n}}, nil
	}
	for _, k := range slices.Sorted(maps.Keys(top)) {
		if k != "jobs" {
			return enqueueRequest{}, &requestError{Field: k, Msg: `not allowed beside "jobs": put it in each job`}
		}
	}
	var br batchRequest
	if err := decodeObject(data, &br, ""); err != nil {
		return enqueueRequest{}, err
	}
	if len(br.Jobs) == 0 || len(br.Jobs) > maxBatch {
		return enqueueRequest{}, &requestError{Field: "jobs", Msg: fmt.Sprintf("must hold 1..%d jobs", maxBatch)}
	}
	req := enqueueRequest{Jobs: make([]jobs.NewJob, len(br.Jobs)), Batch: true}
	for i, raw := range br.Jobs {
		prefix := fmt.Sprintf("jobs[%d].", i)
		var jr jobRequest
		if err := decodeObject(raw, &jr, prefix); err != nil {
			return enqueueRequest{}, err
		}
		n, err := checkJob(&jr, queue, prefix, now)
		if err != nil {
			return enqueueRequest{}, err
		}
		req.Jobs[i] = n
	}
	return req, nil
}

// allJobKeys are the keys an enqueue body may have at its top level.
var allJobKeys = func() map[string]bool {
	m := map[string]bool{"jobs": true}
	for k := range fieldNames(reflect.TypeFor[jobRequest]()) {
		m[k] = true
	}
	return m
}()

// checkJob converts jr and runs package jobs' checks on a copy, so that a
// refusal names the field with its prefix.
func checkJob(jr *jobRequest, queue, prefix string, now time.Time) (jobs.NewJob, error) {
	n, err := jr.toNewJob(prefix)
	if err != nil {
		return n, err
	}
	if n.Queue != "" && n.Queue != queue {
		return n, &jobs.ValidationError{Field: prefix + "queue", Msg: fmt.Sprintf("must be empty or %q, the queue in the path", queue)}
	}
	norm := n
	if err := norm.Normalize(now); err != nil {
		var ve *jobs.ValidationError
		if errors.As(err, &ve) {
			return n, &jobs.ValidationError{Field: prefix + ve.Field, Msg: ve.Msg}
		}
		return n, err
	}
	return n, nil
}

// queueRequest is the body of PUT /v1/queues/{name}.
type queueRequest struct {
	Name              string  `json:"name"`
	Concurrency       int     `json:"concurrency"`
	Capacity          int     `json:"capacity"`
	Policy            string  `json:"policy"`
	MaxWait           string  `json:"max_wait"`
	RateLimit         float64 `json:"rate_limit"`
	RateBurst         int     `json:"rate_burst"`
	Paused            bool    `json:"paused"`
	IdempotencyWindow string  `json:"idempotency_window"`
}

// decodeQueue decodes a queue configuration for the queue named in the
// path. The body may omit "name"; if it has one, it must match.
func decodeQueue(data []byte, name string) (jobs.QueueConfig, error) {
	var qr queueRequest
	if err := decodeObject(data, &qr, ""); err != nil {
		return jobs.QueueConfig{}, err
	}
	if qr.Name != "" && qr.Name != name {
		return jobs.QueueConfig{}, &requestError{Field: "name", Msg: fmt.Sprintf("must be empty or %q, the name in the path", name)}
	}
	q := jobs.QueueConfig{
		Name:        name,
		Concurrency: qr.Concurrency,
		Capacity:    qr.Capacity,
		Policy:      jobs.FullPolicy(qr.Policy),
		RateLimit:   qr.RateLimit,
		RateBurst:   qr.RateBurst,
		Paused:      qr.Paused,
	}
	var err error
	if q.MaxWait, err = parseDuration("max_wait", qr.MaxWait); err != nil {
		return q, err
	}
	if q.IdempotencyWindow, err = parseDuration("idempotency_window", qr.IdempotencyWindow); err != nil {
		return q, err
	}
	check := q
	if err := check.Normalize(); err != nil {
		return q, err
	}
	return q, nil
}

// decodeEmpty checks the body of an action (cancel, pause, resume): empty,
// or an empty JSON object.
func decodeEmpty(data []byte) error {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil
	}
	return decodeObject(data, &struct{}{}, "")
}

// List paging bounds.
const (
	DefaultListLimit = 100
	MaxListLimit     = 1000
)

// decodeListParams decodes the raw query of GET /v1/jobs: queue, state,
// group, after and limit, each at most once; an empty value means the
// parameter is absent, as an empty optional field does in a body; any
// other parameter, and a query that does not parse, is refused.
func decodeListParams(rawQuery string) (jobs.ListFilter, error) {
	f := jobs.ListFilter{Limit: DefaultListLimit}
	q, err := url.ParseQuery(rawQuery)
	if err != nil {
		return f, &requestError{Msg: "malformed query string"}
	}
	for k, vs := range q {
		if len(vs) != 1 {
			return f, &requestError{Field: k, Msg: "must be given once"}
		}
		v := vs[0]
		if v == "" && (k == "after" || k == "limit") {
			continue // absent, like an empty queue, state or group
		}
		switch k {
		case "queue", "group":
			if len(v) > maxNameLen {
				return f, &requestError{Field: k, Msg: fmt.Sprintf("must be at most %d bytes", maxNameLen)}
			}
			if k == "queue" {
				f.Queue = v
			} else {
				f.Group = v
			}
		case "state":
			if s := jobs.State(v); v != "" && !s.Valid() {
				return f, &requestError{Field: k, Msg: "must be one of waiting, running, succeeded, failed, canceled, expired, shed"}
			}
			f.State = jobs.State(v)
		case "after":
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < 0 || v == "" || v[0] < '0' || v[0] > '9' {
				return f, &requestError{Field: k, Msg: "must be a job id (a non-negative integer)"}
			}
			f.AfterID = n
		case "limit":
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > MaxListLimit || v[0] < '0' || v[0] > '9' {
				return f, &requestError{Field: k, Msg: fmt.Sprintf("must be an integer in 1..%d", MaxListLimit)}
			}
			f.Limit = n
		default:
			return f, &requestError{Field: k, Msg: "unknown parameter"}
		}
	}
	return f, nil
}
