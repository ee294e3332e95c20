package httpapi

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/jobs"
)

// TestBadInput sends every endpoint what it must refuse, and checks the
// status, the code and the field named.
func TestBadInput(t *testing.T) {
	e := newEnv(t, Config{MaxBodyBytes: 4096, MaxBatch: 3})
	wantStatus(t, e.do("PUT", "/v1/queues/q", `{}`), http.StatusOK)

	past := time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)
	long := strings.Repeat("n", 129)
	huge := `{"kind":"a","payload":"` + strings.Repeat("x", 5000) + `"}`
	enq := "/v1/queues/q/jobs"

	type tc struct {
		name, method, path, body string
		status                   int
		code, field              string
		hdr                      []string
	}
	cases := []tc{
		// POST /v1/queues/{queue}/jobs: one job.
		{"enqueue: empty body", "POST", enq, "", 400, CodeInvalidRequest, "", nil},
		{"enqueue: not an object", "POST", enq, `["kind"]`, 400, CodeInvalidRequest, "", nil},
		{"enqueue: a string", "POST", enq, `"job"`, 400, CodeInvalidRequest, "", nil},
		{"enqueue: null", "POST", enq, `null`, 400, CodeInvalidRequest, "", nil},
		{"enqueue: malformed", "POST", enq, `{"kind":"a",}`, 400, CodeInvalidRequest, "", nil},
		{"enqueue: truncated", "POST", enq, `{"kind":"a"`, 400, CodeInvalidRequest, "", nil},
		{"enqueue: trailing data", "POST", enq, `{"kind":"a"} {"kind":"b"}`, 400, CodeInvalidRequest, "", nil},
		{"enqueue: trailing garbage", "POST", enq, `{"kind":"a"}x`, 400, CodeInvalidRequest, "", nil},
		{"enqueue: unknown field", "POST", enq, `{"kind":"a","prio":1}`, 400, CodeInvalidRequest, "prio", nil},
		{"enqueue: wrong case", "POST", enq, `{"Kind":"a"}`, 400, CodeInvalidRequest, "Kind", nil},
		{"enqueue: repeated field", "POST", enq, `{"kind":"a","kind":"b"}`, 400, CodeInvalidRequest, "kind", nil},
		{"enqueue: kind missing", "POST", enq, `{}`, 400, CodeInvalidRequest, "kind", nil},
		{"enqueue: kind too long", "POST", enq, `{"kind":"` + long + `"}`, 400, CodeInvalidRequest, "kind", nil},
		{"enqueue: kind a number", "POST", enq, `{"kind":1}`, 400, CodeInvalidRequest, "kind", nil},
		{"enqueue: priority a string", "POST", enq, `{"kind":"a","priority":"high"}`, 400, CodeInvalidRequest, "priority", nil},
		{"enqueue: priority a fraction", "POST", enq, `{"kind":"a","priority":1.5}`, 400, CodeInvalidRequest, "priority", nil},
		{"enqueue: priority overflow", "POST", enq, `{"kind":"a","priority":1e30}`, 400, CodeInvalidRequest, "priority", nil},
		{"enqueue: negative priority", "POST", enq, `{"kind":"a","priority":-1}`, 400, CodeInvalidRequest, "priority", nil},
		{"enqueue: priority above 9", "POST", enq, `{"kind":"a","priority":10}`, 400, CodeInvalidRequest, "priority", nil},
		{"enqueue: negative max_attempts", "POST", enq, `{"kind":"a","max_attempts":-2}`, 400, CodeInvalidRequest, "max_attempts", nil},
		{"enqueue: bool as string", "POST", enq, `{"kind":"a","cancel_group_on_failure":"yes"}`, 400, CodeInvalidRequest, "cancel_group_on_failure", nil},
		{"enqueue: duration a number", "POST", enq, `{"kind":"a","attempt_timeout":1500}`, 400, CodeInvalidRequest, "attempt_timeout", nil},
		{"enqueue: duration without unit", "POST", enq, `{"kind":"a","attempt_timeout":"1500"}`, 400, CodeInvalidRequest, "attempt_timeout", nil},
		{"enqueue: bad duration", "POST", enq, `{"kind":"a","backoff_min":"soon"}`, 400, CodeInvalidRequest, "backoff_min", nil},
		{"enqueue: negative duration", "POST", enq, `{"kind":"a","backoff_max":"-1s"}`, 400, CodeInvalidRequest, "backoff_max", nil},
		{"enqueue: backoff max below min", "POST", enq, `{"kind":"a","backoff_min":"1m","backoff_max":"1s"}`, 400, CodeInvalidRequest, "backoff_max", nil},
		{"enqueue: deadline before run_at", "POST", enq, `{"kind":"a","run_at":"2100-01-02T00:00:00Z","deadline":"2100-01-01T00:00:00Z"}`, 400, CodeInvalidRequest, "deadline", nil},
		{"enqueue: deadline at run_at", "POST", enq, `{"kind":"a","run_at":"2100-01-01T00:00:00Z","deadline":"2100-01-01T00:00:00Z"}`, 400, CodeInvalidRequest, "deadline", nil},
		{"enqueue: run_at beyond the stores' range", "POST", enq, `{"kind":"a","run_at":"9999-12-31T23:59:59Z"}`, 400, CodeInvalidRequest, "run_at", nil},
		{"enqueue: deadline beyond the stores' range", "POST", enq, `{"kind":"a","deadline":"2262-04-12T00:00:00Z"}`, 400, CodeInvalidRequest, "deadline", nil},
		{"enqueue: bad time", "POST", enq, `{"kind":"a","run_at":"tomorrow"}`, 400, CodeInvalidRequest, "run_at", nil},
		{"enqueue: time without zone", "POST", enq, `{"kind":"a","run_at":"2030-01-02T15:04:05"}`, 400, CodeInvalidRequest, "run_at", nil},
		{"enqueue: time a number", "POST", enq, `{"kind":"a","deadline":1700000000}`, 400, CodeInvalidRequest, "deadline", nil},
		{"enqueue: deadline in the past", "POST", enq, `{"kind":"a","deadline":"` + past + `"}`, 400, CodeInvalidRequest, "deadline", nil},
		{"enqueue: queue differs from the path", "POST", enq, `{"kind":"a","queue":"other"}`, 400, CodeInvalidRequest, "queue", nil},
		{"enqueue: group too long", "POST", enq, `{"kind":"a","group":"` + long + `"}`, 400, CodeInvalidRequest, "group", nil},
		{"enqueue: key too long", "POST", enq, `{"kind":"a","idempotency_key":"` + strings.Repeat("k", 257) + `"}`, 400, CodeInvalidRequest, "idempotency_key", nil},
		{"enqueue: malformed payload", "POST", enq, `{"kind":"a","payload":{"x":}}`, 400, CodeInvalidRequest, "", nil},
		{"enqueue: queue name too long", "POST", "/v1/queues/" + long + "/jobs", `{"kind":"a"}`, 400, CodeInvalidRequest, "queue", nil},
		{"enqueue: oversize", "POST", enq, huge, 413, CodePayloadTooLarge, "", nil},
		{"enqueue: form content type", "POST", enq, `{"kind":"a"}`, 415, CodeUnsupportedMediaType, "", []string{"Content-Type", "application/x-www-form-urlencoded"}},
		{"enqueue: text content type", "POST", enq, `{"kind":"a"}`, 415, CodeUnsupportedMediaType, "", []string{"Content-Type", "text/plain"}},
		// POST /v1/queues/{queue}/jobs: a batch.
		{"batch: empty", "POST", enq, `{"jobs":[]}`, 400, CodeInvalidRequest, "jobs", nil},
		{"batch: too many", "POST", enq, `{"jobs":[{"kind":"a"},{"kind":"a"},{"kind":"a"},{"kind":"a"}]}`, 400, CodeInvalidRequest, "jobs", nil},
		{"batch: not an array", "POST", enq, `{"jobs":{"kind":"a"}}`, 400, CodeInvalidRequest, "jobs", nil},
		{"batch: job not an object", "POST", enq, `{"jobs":[{"kind":"a"},7]}`, 400, CodeInvalidRequest, "jobs[1]", nil},
		{"batch: job fields beside jobs", "POST", enq, `{"jobs":[{"kind":"a"}],"priority":1}`, 400, CodeInvalidRequest, "priority", nil},
		{"batch: unknown top-level field", "POST", enq, `{"jobs":[{"kind":"a"}],"atomic":true}`, 400, CodeInvalidRequest, "atomic", nil},
		{"batch: unknown field in a job", "POST", enq, `{"jobs":[{"kind":"a"},{"kind":"b","colour":"red"}]}`, 400, CodeInvalidRequest, "jobs[1].colour", nil},
		{"batch: wrong type in a job", "POST", enq, `{"jobs":[{"kind":"a","priority":"1"}]}`, 400, CodeInvalidRequest, "jobs[0].priority", nil},
		{"batch: bad duration in a job", "POST", enq, `{"jobs":[{"kind":"a"},{"kind":"a"},{"kind":"a","backoff_min":"1 s"}]}`, 400, CodeInvalidRequest, "jobs[2].backoff_min", nil},
		{"batch: negative priority in a job", "POST", enq, `{"jobs":[{"kind":"a","priority":-3}]}`, 400, CodeInvalidRequest, "jobs[0].priority", nil},
		{"batch: job for another queue", "POST", enq, `{"jobs":[{"kind":"a","queue":"x"}]}`, 400, CodeInvalidRequest, "jobs[0].queue", nil},
		{"batch: repeated jobs", "POST", enq, `{"jobs":[{"kind":"a"}],"jobs":[{"kind":"b"}]}`, 400, CodeInvalidRequest, "jobs", nil},
		// GET /v1/jobs/{id}.
		{"get: id not a number", "GET", "/v1/jobs/abc", "", 400, CodeInvalidRequest, "id", nil},
		{"get: id zero", "GET", "/v1/jobs/0", "", 400, CodeInvalidRequest, "id", nil},
		{"get: id negative", "GET", "/v1/jobs/-1", "", 400, CodeInvalidRequest, "id", nil},
		{"get: id with sign", "GET", "/v1/jobs/+1", "", 400, CodeInvalidRequest, "id", nil},
		{"get: id overflows", "GET", "/v1/jobs/99999999999999999999", "", 400, CodeInvalidRequest, "id", nil},
		{"get: id a fraction", "GET", "/v1/jobs/1.5", "", 400, CodeInvalidRequest, "id", nil},
		// GET /v1/jobs.
		{"list: unknown parameter", "GET", "/v1/jobs?status=waiting", "", 400, CodeInvalidRequest, "status", nil},
		{"list: bad state", "GET", "/v1/jobs?state=done", "", 400, CodeInvalidRequest, "state", nil},
		{"list: limit zero", "GET", "/v1/jobs?limit=0", "", 400, CodeInvalidRequest, "limit", nil},
		{"list: limit negative", "GET", "/v1/jobs?limit=-5", "", 400, CodeInvalidRequest, "limit", nil},
		{"list: limit too big", "GET", "/v1/jobs?limit=1001", "", 400, CodeInvalidRequest, "limit", nil},
		{"list: limit not a number", "GET", "/v1/jobs?limit=ten", "", 400, CodeInvalidRequest, "limit", nil},
		{"list: after negative", "GET", "/v1/jobs?after=-1", "", 400, CodeInvalidRequest, "after", nil},
		{"list: after not a number", "GET", "/v1/jobs?after=x", "", 400, CodeInvalidRequest, "after", nil},
		{"list: after overflows", "GET", "/v1/jobs?after=9223372036854775808", "", 400, CodeInvalidRequest, "after", nil},
		{"list: repeated parameter", "GET", "/v1/jobs?queue=a&queue=b", "", 400, CodeInvalidRequest, "queue", nil},
		{"list: queue too long", "GET", "/v1/jobs?queue=" + long, "", 400, CodeInvalidRequest, "queue", nil},
		{"list: malformed query", "GET", "/v1/jobs?limit=5;after=1", "", 400, CodeInvalidRequest, "", nil},
		{"list: bad escape", "GET", "/v1/jobs?queue=%zz", "", 400, CodeInvalidRequest, "", nil},
		{"list: group too long", "GET", "/v1/jobs?group=" + long, "", 400, CodeInvalidRequest, "group", nil},
		// POST /v1/jobs/{id}/cancel.
		{"cancel: bad id", "POST", "/v1/jobs/x/cancel", "", 400, CodeInvalidRequest, "id", nil},
		{"cancel: id zero", "POST", "/v1/jobs/0/cancel", "", 400, CodeInvalidRequest, "id", nil},
		{"cancel: unknown field", "POST", "/v1/jobs/1/cancel", `{"reason":"x"}`, 400, CodeInvalidRequest, "reason", nil},
		{"cancel: body not an object", "POST", "/v1/jobs/1/cancel", `[]`, 400, CodeInvalidRequest, "", nil},
		{"cancel: oversize", "POST", "/v1/jobs/1/cancel", huge, 413, CodePayloadTooLarge, "", nil},
		// GET /v1/groups/{name}.
		{"group: name too long", "GET", "/v1/groups/" + long, "", 400, CodeInvalidRequest, "name", nil},
		// GET /v1/queues/{name}.
		{"queue: name too long", "GET", "/v1/queues/" + long, "", 400, CodeInvalidRequest, "name", nil},
		// PUT /v1/queues/{name}.
		{"put queue: empty body", "PUT", "/v1/queues/q", "", 400, CodeInvalidRequest, "", nil},
		{"put queue: unknown field", "PUT", "/v1/queues/q", `{"size":3}`, 400, CodeInvalidRequest, "size", nil},
		{"put queue: name mismatch", "PUT", "/v1/queues/q", `{"name":"r"}`, 400, CodeInvalidRequest, "name", nil},
		{"put queue: name too long", "PUT", "/v1/queues/" + long, `{}`, 400, CodeInvalidRequest, "name", nil},
		{"put queue: capacity a string", "PUT", "/v1/queues/q", `{"capacity":"10"}`, 400, CodeInvalidRequest, "capacity", nil},
		{"put queue: negative capacity", "PUT", "/v1/queues/q", `{"capacity":-1}`, 400, CodeInvalidRequest, "capacity", nil},
		{"put queue: negative concurrency", "PUT", "/v1/queues/q", `{"concurrency":-1}`, 400, CodeInvalidRequest, "concurrency", nil},
		{"put queue: bad policy", "PUT", "/v1/queues/q", `{"policy":"drop"}`, 400, CodeInvalidRequest, "policy", nil},
		{"put queue: bad max_wait", "PUT", "/v1/queues/q", `{"max_wait":"1 minute"}`, 400, CodeInvalidRequest, "max_wait", nil},
		{"put queue: max_wait a number", "PUT", "/v1/queues/q", `{"max_wait":1000}`, 400, CodeInvalidRequest, "max_wait", nil},
		{"put queue: negative window", "PUT", "/v1/queues/q", `{"idempotency_window":"-1h"}`, 400, CodeInvalidRequest, "idempotency_window", nil},
		{"put queue: negative rate", "PUT", "/v1/queues/q", `{"rate_limit":-1}`, 400, CodeInvalidRequest, "rate_limit", nil},
		{"put queue: paused a string", "PUT", "/v1/queues/q", `{"paused":"true"}`, 400, CodeInvalidRequest, "paused", nil},
		{"put queue: trailing data", "PUT", "/v1/queues/q", `{}{}`, 400, CodeInvalidRequest, "", nil},
		{"put queue: oversize", "PUT", "/v1/queues/q", huge, 413, CodePayloadTooLarge, "", nil},
		// POST /v1/queues/{name}/pause and resume.
		{"pause: name too long", "POST", "/v1/queues/" + long + "/pause", "", 400, CodeInvalidRequest, "name", nil},
		{"pause: unknown field", "POST", "/v1/queues/q/pause", `{"until":"1h"}`, 400, CodeInvalidRequest, "until", nil},
		{"resume: name too long", "POST", "/v1/queues/" + long + "/resume", "", 400, CodeInvalidRequest, "name", nil},
		{"resume: malformed body", "POST", "/v1/queues/q/resume", `{`, 400, CodeInvalidRequest, "", nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rec := e.do(c.method, c.path, c.body, c.hdr...)
			wantError(t, rec, c.status, c.code, c.field)
		})
	}
	// Nothing above was enqueued.
	rec := e.do("GET", "/v1/jobs", "")
	wantStatus(t, rec, http.StatusOK)
	if l := decodeAs[listOut](t, rec); len(l.Jobs) != 0 {
		t.Fatalf("%d jobs enqueued by bad requests", len(l.Jobs))
	}
}

// TestErrorTable checks the classification of each error kind.
func TestErrorTable(t *testing.T) {
	for _, tc := range []struct {
		err    error
		status int
		code   string
		retry  string
	}{
		{&requestError{"f", "m"}, 400, CodeInvalidRequest, ""},
		{fmt.Errorf("x: %w", &requestError{"f", "m"}), 400, CodeInvalidRequest, ""},
		{&http.MaxBytesError{Limit: 1}, 413, CodePayloadTooLarge, ""},
		{&mediaTypeError{"text/plain"}, 415, CodeUnsupportedMediaType, ""},
		{errUnauthorized, 401, CodeUnauthorized, ""},
		{errRouteNotFound, 404, CodeNotFound, ""},
		{errMethodNotAllowed, 405, CodeMethodNotAllowed, ""},
		{errNotReady, 503, CodeNotReady, "1"},
		{fmt.Errorf("ctx: %w", context.DeadlineExceeded), 503, CodeUnavailable, "1"},
		{context.Canceled, 503, CodeUnavailable, "1"},
		{fmt.Errorf("get: %w", jobs.ErrNotFound), 404, CodeNotFound, ""},
		{&jobs.ValidationError{Field: "kind", Msg: "m"}, 400, CodeInvalidRequest, ""},
		{jobs.ErrIdempotencyConflict, 409, CodeIdempotencyConflict, ""},
		{&jobs.QueueFullError{Queue: "q", RetryAfter: 2500 * time.Millisecond}, 429, CodeQueueFull, "3"},
		{&jobs.QueueFullError{Queue: "q"}, 429, CodeQueueFull, "1"},
		{fmt.Errorf("x: %w: %w", jobs.ErrUnavailable, context.DeadlineExceeded), 503, CodeUnavailable, "1"},
		{fmt.Errorf("x: %w", jobs.ErrClosed), 503, CodeShuttingDown, "1"},
		{fmt.Errorf("oops"), 500, CodeInternal, ""},
	} {
		e := classify(tc.err, time.Second)
		ra := ""
		if e.retryAfter > 0 {
			ra = retryAfterSeconds(e.retryAfter)
		}
		if e.status != tc.status || e.code != tc.code || ra != tc.retry || e.msg == "" {
			t.Errorf("%v: %d %s %q, want %d %s %q", tc.err, e.status, e.code, ra, tc.status, tc.code, tc.retry)
		}
	}
	for d, want := range map[time.Duration]string{0: "1", time.Millisecond: "1", time.Second: "1", 1001 * time.Millisecond: "2", time.Hour: "3600"} {
		if got := retryAfterSeconds(d); got != want {
			t.Errorf("retryAfterSeconds(%v) = %s, want %s", d, got, want)
		}
	}
}
