package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/jobs"
	"github.com/sluicehq/sluice/jobs/sqlitestore"
)

func TestEnqueueOne(t *testing.T) {
	e := newEnv(t, Config{})
	deadline := time.Now().Add(time.Hour).UTC().Truncate(time.Second).Format(time.RFC3339)
	body := `{"kind":"email","payload":{"to":"ada@example.com"},"priority":7,"idempotency_key":"k1",
		"deadline":"` + deadline + `","attempt_timeout":"1.5s","max_attempts":3,"backoff_min":"250ms","backoff_max":"1m",
		"group":"g1","cancel_group_on_failure":true}`
	rec := e.do("POST", "/v1/queues/mail/jobs", body)
	wantStatus(t, rec, http.StatusCreated)
	j := decodeAs[jobOut](t, rec)
	if j.ID <= 0 || j.Kind != "email" || j.Queue != "mail" || string(j.Payload) != `{"to":"ada@example.com"}` ||
		j.Priority != 7 || j.IdempotencyKey != "k1" || j.Deadline == nil || *j.Deadline != deadline ||
		j.AttemptTimeout != "1.5s" || j.MaxAttempts != 3 || j.BackoffMin != "250ms" || j.BackoffMax != "1m0s" ||
		j.Group != "g1" || !j.CancelGroupOnFailure || j.State != "waiting" || j.Attempt != 0 ||
		j.RunAt == nil || j.CreatedAt == nil || j.UpdatedAt == nil || j.FinishedAt != nil ||
		j.Duplicate == nil || *j.Duplicate {
		t.Fatalf("job %s", rec.Body.String())
	}
	if loc := rec.Header().Get("Location"); loc != "/v1/jobs/"+strconv.FormatInt(j.ID, 10) {
		t.Fatalf("Location %q", loc)
	}
	if _, err := time.Parse(time.RFC3339Nano, *j.CreatedAt); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(e.logs.String(), `"job_ids":[`+strconv.FormatInt(j.ID, 10)+`]`) {
		t.Fatalf("logs lack the job id: %s", e.logs.String())
	}

	// The same key, kind and payload: the same job, 200, duplicate.
	rec = e.do("POST", "/v1/queues/mail/jobs", body)
	wantStatus(t, rec, http.StatusOK)
	if d := decodeAs[jobOut](t, rec); d.ID != j.ID || d.Duplicate == nil || !*d.Duplicate {
		t.Fatalf("repeat: %s", rec.Body.String())
	}
	// The same key, another payload: 409.
	rec = e.do("POST", "/v1/queues/mail/jobs", `{"kind":"email","idempotency_key":"k1","payload":{"to":"bob@example.com"}}`)
	wantError(t, rec, http.StatusConflict, CodeIdempotencyConflict, "")

	// Minimal job: defaults, payload null, queue named in the body too.
	rec = e.do("POST", "/v1/queues/default/jobs", `{"kind":"noop","queue":"default"}`)
	wantStatus(t, rec, http.StatusCreated)
	j = decodeAs[jobOut](t, rec)
	if string(j.Payload) != "null" || j.MaxAttempts != jobs.DefaultAttempts || j.BackoffMin != "1s" || j.BackoffMax != "10m0s" ||
		j.AttemptTimeout != "0s" || j.Deadline != nil || j.Group != "" {
		t.Fatalf("defaults: %s", rec.Body.String())
	}
	// Scheduled for later.
	runAt := time.Now().Add(time.Hour).UTC().Truncate(time.Millisecond)
	rec = e.do("POST", "/v1/queues/default/jobs", `{"kind":"later","run_at":"`+runAt.Format(time.RFC3339Nano)+`"}`)
	wantStatus(t, rec, http.StatusCreated)
	if got, _ := time.Parse(time.RFC3339Nano, *decodeAs[jobOut](t, rec).RunAt); !got.Equal(runAt) {
		t.Fatalf("run_at %v, want %v", got, runAt)
	}
}

type batchOut struct {
	Jobs []jobOut `json:"jobs"`
}

func TestEnqueueBatch(t *testing.T) {
	e := newEnv(t, Config{})
	rec := e.do("POST", "/v1/queues/q/jobs", `{"jobs":[{"kind":"a","idempotency_key":"x"},{"kind":"b","priority":9},{"kind":"c","payload":[1,2]}]}`)
	wantStatus(t, rec, http.StatusCreated)
	b := decodeAs[batchOut](t, rec)
	if len(b.Jobs) != 3 || b.Jobs[0].Kind != "a" || b.Jobs[1].Priority != 9 || string(b.Jobs[2].Payload) != "[1,2]" {
		t.Fatalf("batch: %s", rec.Body.String())
	}
	for _, j := range b.Jobs {
		if j.ID <= 0 || j.Queue != "q" || j.Duplicate == nil || *j.Duplicate || j.Error != nil {
			t.Fatalf("batch job: %+v", j)
		}
	}

	// Atomic: one bad job refuses the batch, named by its index.
	rec = e.do("POST", "/v1/queues/q/jobs", `{"jobs":[{"kind":"ok"},{"kind":"bad","priority":10}]}`)
	wantError(t, rec, http.StatusBadRequest, CodeInvalidRequest, "jobs[1].priority")
	list, err := e.jc.List(context.Background(), jobs.ListFilter{Queue: "q"})
	if err != nil || len(list) != 3 {
		t.Fatalf("after refused batch: %d jobs, %v", len(list), err)
	}

	// Only duplicates: 200.
	rec = e.do("POST", "/v1/queues/q/jobs", `{"jobs":[{"kind":"a","idempotency_key":"x"}]}`)
	wantStatus(t, rec, http.StatusOK)
	if d := decodeAs[batchOut](t, rec); len(d.Jobs) != 1 || d.Jobs[0].ID != b.Jobs[0].ID || !*d.Jobs[0].Duplicate {
		t.Fatalf("duplicate batch: %s", rec.Body.String())
	}
	// Only conflicts: 409.
	rec = e.do("POST", "/v1/queues/q/jobs", `{"jobs":[{"kind":"other","idempotency_key":"x"}]}`)
	wantError(t, rec, http.StatusConflict, CodeIdempotencyConflict, "")
	// A conflict beside a new job: the store keeps the new job; the entry
	// of the conflict carries the error.
	rec = e.do("POST", "/v1/queues/q/jobs", `{"jobs":[{"kind":"other","idempotency_key":"x"},{"kind":"new"}]}`)
	wantStatus(t, rec, http.StatusCreated)
	b = decodeAs[batchOut](t, rec)
	if len(b.Jobs) != 2 || b.Jobs[0].Error == nil || b.Jobs[0].Error.Code != CodeIdempotencyConflict ||
		b.Jobs[0].Error.Field != "jobs[0].idempotency_key" || b.Jobs[0].ID != 0 || b.Jobs[1].ID <= 0 || b.Jobs[1].Error != nil {
		t.Fatalf("mixed batch: %s", rec.Body.String())
	}
}

type listOut struct {
	Jobs      []jobOut `json:"jobs"`
	NextAfter *int64   `json:"next_after"`
}

func TestGetListCancel(t *testing.T) {
	e := newEnv(t, Config{})
	var ids []int64
	for i := range 5 {
		q := "a"
		if i%2 == 1 {
			q = "b"
		}
		rec := e.do("POST", "/v1/queues/"+q+"/jobs", fmt.Sprintf(`{"kind":"k%d","group":"g"}`, i))
		wantStatus(t, rec, http.StatusCreated)
		ids = append(ids, decodeAs[jobOut](t, rec).ID)
	}

	rec := e.do("GET", "/v1/jobs/"+strconv.FormatInt(ids[2], 10), "")
	wantStatus(t, rec, http.StatusOK)
	if j := decodeAs[jobOut](t, rec); j.ID != ids[2] || j.Kind != "k2" || j.Duplicate != nil {
		t.Fatalf("get: %s", rec.Body.String())
	}
	wantError(t, e.do("GET", "/v1/jobs/999999", ""), http.StatusNotFound, CodeNotFound, "")

	// Paging: full pages carry next_after, the last one null.
	var got []int64
	after := int64(0)
	for pages := 0; ; pages++ {
		if pages > 5 {
			t.Fatal("paging does not end")
		}
		rec := e.do("GET", fmt.Sprintf("/v1/jobs?limit=2&after=%d", after), "")
		wantStatus(t, rec, http.StatusOK)
		l := decodeAs[listOut](t, rec)
		for _, j := range l.Jobs {
			got = append(got, j.ID)
		}
		if l.NextAfter == nil {
			break
		}
		after = *l.NextAfter
	}
	if fmt.Sprint(got) != fmt.Sprint(ids) {
		t.Fatalf("paged %v, want %v", got, ids)
	}

	// Cancel a waiting job, then filter by state and queue.
	rec = e.do("POST", "/v1/jobs/"+strconv.FormatInt(ids[1], 10)+"/cancel", "")
	wantStatus(t, rec, http.StatusOK)
	if j := decodeAs[jobOut](t, rec); j.State != "canceled" || j.FinishedAt == nil || j.Reason == "" {
		t.Fatalf("cancel: %s", rec.Body.String())
	}
	// Again: a terminal job is left as it is, 200.
	wantStatus(t, e.do("POST", "/v1/jobs/"+strconv.FormatInt(ids[1], 10)+"/cancel", "{}"), http.StatusOK)
	wantError(t, e.do("POST", "/v1/jobs/999999/cancel", ""), http.StatusNotFound, CodeNotFound, "")

	for _, tc := range []struct {
		query string
		want  []int64
	}{
		{"state=canceled", ids[1:2]},
		{"queue=b&state=waiting", ids[3:4]},
		{"queue=a", []int64{ids[0], ids[2], ids[4]}},
		{"group=g&state=waiting&queue=a&after=" + strconv.FormatInt(ids[0], 10), []int64{ids[2], ids[4]}},
		{"group=none", nil},
		{"state=", ids},
		{"after=&limit=&queue=&group=", ids}, // empty means absent, for every parameter
	} {
		rec := e.do("GET", "/v1/jobs?"+tc.query, "")
		wantStatus(t, rec, http.StatusOK)
		l := decodeAs[listOut](t, rec)
		var got []int64
		for _, j := range l.Jobs {
			got = append(got, j.ID)
		}
		if fmt.Sprint(got) != fmt.Sprint(tc.want) || l.NextAfter != nil || l.Jobs == nil {
			t.Errorf("%s: %v (next %v), want %v", tc.query, got, l.NextAfter, tc.want)
		}
	}
	if !strings.Contains(e.logs.String(), `"job_id":`+strconv.FormatInt(ids[1], 10)) {
		t.Fatalf("cancel not logged with its job id: %s", e.logs.String())
	}
}

type groupOut struct {
	Name      string         `json:"name"`
	Counts    map[string]int `json:"counts"`
	Total     int            `json:"total"`
	Done      bool           `json:"done"`
	Succeeded bool           `json:"succeeded"`
}

func TestGroup(t *testing.T) {
	e := newEnv(t, Config{})
	rec := e.do("POST", "/v1/queues/q/jobs", `{"jobs":[{"kind":"a","group":"build"},{"kind":"b","group":"build"}]}`)
	wantStatus(t, rec, http.StatusCreated)
	first := decodeAs[batchOut](t, rec).Jobs[0].ID
	wantStatus(t, e.do("POST", "/v1/jobs/"+strconv.FormatInt(first, 10)+"/cancel", ""), http.StatusOK)

	rec = e.do("GET", "/v1/groups/build", "")
	wantStatus(t, rec, http.StatusOK)
	g := decodeAs[groupOut](t, rec)
	if g.Name != "build" || g.Total != 2 || g.Counts["waiting"] != 1 || g.Counts["canceled"] != 1 || g.Done || g.Succeeded {
		t.Fatalf("group: %s", rec.Body.String())
	}
	wantError(t, e.do("GET", "/v1/groups/nothing", ""), http.StatusNotFound, CodeNotFound, "")
}

type queuesOut struct {
	Queues []queueOut `json:"queues"`
}

func TestQueues(t *testing.T) {
	e := newEnv(t, Config{})
	rec := e.do("PUT", "/v1/queues/mail", `{"concurrency":4,"capacity":50,"policy":"shed","max_wait":"2s","rate_limit":2.5,"idempotency_window":"1h"}`)
	wantStatus(t, rec, http.StatusOK)
	want := queueOut{Name: "mail", Concurrency: 4, Capacity: 50, Policy: "shed", MaxWait: "2s", RateLimit: 2.5, RateBurst: 1, IdempotencyWindow: "1h0m0s"}
	if q := decodeAs[queueOut](t, rec); q != want {
		t.Fatalf("put: %+v, want %+v", q, want)
	}
	rec = e.do("GET", "/v1/queues/mail", "")
	wantStatus(t, rec, http.StatusOK)
	if q := decodeAs[queueOut](t, rec); q != want {
		t.Fatalf("get: %+v", q)
	}
	// A round trip: what GET answers, PUT takes back (name included).
	wantStatus(t, e.do("PUT", "/v1/queues/mail", rec.Body.String()), http.StatusOK)
	// Defaults.
	rec = e.do("PUT", "/v1/queues/other", `{}`)
	wantStatus(t, rec, http.StatusOK)
	if q := decodeAs[queueOut](t, rec); q.Capacity != jobs.DefaultCapacity || q.Policy != "reject" || q.MaxWait != "1s" || q.IdempotencyWindow != "24h0m0s" {
		t.Fatalf("defaults: %+v", q)
	}

	rec = e.do("POST", "/v1/queues/mail/pause", "")
	wantStatus(t, rec, http.StatusOK)
	if q := decodeAs[queueOut](t, rec); !q.Paused || q.Capacity != 50 {
		t.Fatalf("pause: %+v", q)
	}
	rec = e.do("GET", "/v1/queues", "")
	wantStatus(t, rec, http.StatusOK)
	qs := decodeAs[queuesOut](t, rec)
	if len(qs.Queues) != 2 || qs.Queues[0].Name != "mail" || !qs.Queues[0].Paused || qs.Queues[1].Name != "other" {
		t.Fatalf("list: %s", rec.Body.String())
	}
	rec = e.do("POST", "/v1/queues/mail/resume", "{}")
	wantStatus(t, rec, http.StatusOK)
	if q := decodeAs[queueOut](t, rec); q.Paused {
		t.Fatalf("resume: %+v", q)
	}
	wantError(t, e.do("GET", "/v1/queues/none", ""), http.StatusNotFound, CodeNotFound, "")
	wantError(t, e.do("POST", "/v1/queues/none/pause", ""), http.StatusNotFound, CodeNotFound, "")
	wantError(t, e.do("POST", "/v1/queues/none/resume", ""), http.StatusNotFound, CodeNotFound, "")
}

func TestHealthReadyMetrics(t *testing.T) {
	ready := false
	metrics := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprintln(w, "sluice_up 1")
	})
	e := newEnv(t, Config{Token: "s3cret", Ready: func() bool { return ready }, Metrics: metrics})
	wantStatus(t, e.do("GET", "/healthz", ""), http.StatusOK)
	rec := e.do("GET", "/readyz", "")
	wantError(t, rec, http.StatusServiceUnavailable, CodeNotReady, "")
	if rec.Header().Get("Retry-After") != "1" {
		t.Fatalf("Retry-After %q", rec.Header().Get("Retry-After"))
	}
	ready = true
	wantStatus(t, e.do("GET", "/readyz", ""), http.StatusOK)
	wantError(t, e.do("GET", "/metrics", ""), http.StatusUnauthorized, CodeUnauthorized, "")
	rec = e.do("GET", "/metrics", "", "Authorization", "Bearer s3cret")
	if rec.Code != http.StatusOK || rec.Body.String() != "sluice_up 1\n" {
		t.Fatalf("metrics: %d %q", rec.Code, rec.Body.String())
	}

	// Without Config.Metrics, /metrics does not exist; without Ready, the
	// server is always ready.
	e = newEnv(t, Config{})
	wantError(t, e.do("GET", "/metrics", ""), http.StatusNotFound, CodeNotFound, "")
	wantStatus(t, e.do("GET", "/readyz", ""), http.StatusOK)
}

func TestAuth(t *testing.T) {
	const token = "tok-3f9a7c"
	e := newEnv(t, Config{Token: token})
	for _, tc := range []struct {
		name, method, path, body, auth string
		status                         int
	}{
		{"no header", "GET", "/v1/queues", "", "", 401},
		{"wrong token", "GET", "/v1/queues", "", "Bearer nope", 401},
		{"prefix of the token", "GET", "/v1/queues", "", "Bearer tok-3f9", 401},
		{"token plus more", "GET", "/v1/queues", "", "Bearer " + token + "x", 401},
		{"basic scheme", "GET", "/v1/queues", "", "Basic " + token, 401},
		{"bare token", "GET", "/v1/queues", "", token, 401},
		{"enqueue without", "POST", "/v1/queues/q/jobs", `{"kind":"a"}`, "", 401},
		{"bad input without token: 401 first", "POST", "/v1/queues/q/jobs", `{"nope":1}`, "", 401},
		{"cancel without", "POST", "/v1/jobs/1/cancel", "", "", 401},
		{"put queue without", "PUT", "/v1/queues/q", `{}`, "", 401},
		{"right token", "GET", "/v1/queues", "", "Bearer " + token, 200},
		{"scheme case-insensitive", "GET", "/v1/queues", "", "bearer " + token, 200},
		{"enqueue with", "POST", "/v1/queues/q/jobs", `{"kind":"a"}`, "Bearer " + token, 201},
		{"healthz is public", "GET", "/healthz", "", "", 200},
		{"readyz is public", "GET", "/readyz", "", "", 200},
		{"healthz ignores a wrong token", "GET", "/healthz", "", "Bearer nope", 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var hdr []string
			if tc.auth != "" {
				hdr = []string{"Authorization", tc.auth}
			}
			rec := e.do(tc.method, tc.path, tc.body, hdr...)
			if rec.Code != tc.status {
				t.Fatalf("status %d, want %d: %s", rec.Code, tc.status, rec.Body.String())
			}
			if tc.status == 401 {
				wantError(t, rec, 401, CodeUnauthorized, "")
				wa := rec.Header().Get("WWW-Authenticate")
				if !strings.HasPrefix(wa, "Bearer ") {
					t.Fatalf("WWW-Authenticate %q", wa)
				}
				if (tc.auth != "") != strings.Contains(wa, "invalid_token") {
					t.Fatalf("WWW-Authenticate %q for Authorization %q", wa, tc.auth)
				}
			}
		})
	}
	if strings.Contains(e.logs.String(), token) {
		t.Fatal("the token was logged")
	}
}

func TestQueueFull429(t *testing.T) {
	e := newEnv(t, Config{})
	wantStatus(t, e.do("PUT", "/v1/queues/small", `{"capacity":1}`), http.StatusOK)
	wantStatus(t, e.do("POST", "/v1/queues/small/jobs", `{"kind":"a"}`), http.StatusCreated)
	rec := e.do("POST", "/v1/queues/small/jobs", `{"kind":"b"}`)
	wantError(t, rec, http.StatusTooManyRequests, CodeQueueFull, "")
	ra, err := strconv.Atoi(rec.Header().Get("Retry-After"))
	if err != nil || ra < 1 {
		t.Fatalf("Retry-After %q", rec.Header().Get("Retry-After"))
	}
	// A batch that does not fit is refused whole.
	wantStatus(t, e.do("PUT", "/v1/queues/three", `{"capacity":3}`), http.StatusOK)
	wantError(t, e.do("POST", "/v1/queues/three/jobs", `{"jobs":[{"kind":"a"},{"kind":"a"},{"kind":"a"},{"kind":"a"}]}`), http.StatusTooManyRequests, CodeQueueFull, "")
	if l, _ := e.jc.List(context.Background(), jobs.ListFilter{Queue: "three"}); len(l) != 0 {
		t.Fatalf("%d jobs after a refused batch", len(l))
	}
}

func TestStoreClosed503(t *testing.T) {
	e := newEnv(t, Config{RetryAfter: 2500 * time.Millisecond})
	wantStatus(t, e.do("POST", "/v1/queues/q/jobs", `{"kind":"a"}`), http.StatusCreated)
	e.store.Close()
	for _, rq := range [][3]string{
		{"POST", "/v1/queues/q/jobs", `{"kind":"a"}`},
		{"GET", "/v1/jobs/1", ""},
		{"GET", "/v1/jobs", ""},
		{"POST", "/v1/jobs/1/cancel", ""},
		{"GET", "/v1/groups/g", ""},
		{"GET", "/v1/queues", ""},
		{"GET", "/v1/queues/q", ""},
		{"PUT", "/v1/queues/q", "{}"},
		{"POST", "/v1/queues/q/pause", ""},
		{"POST", "/v1/queues/q/resume", ""},
	} {
		rec := e.do(rq[0], rq[1], rq[2])
		wantError(t, rec, http.StatusServiceUnavailable, CodeShuttingDown, "")
		if ra := rec.Header().Get("Retry-After"); ra != "3" {
			t.Fatalf("%v: Retry-After %q, want 3 (2.5s rounded up)", rq, ra)
		}
	}
}

func TestStoreUnavailable503(t *testing.T) {
	// A call timeout too short for any store call: every call fails with
	// jobs.ErrUnavailable, as it does when the database is locked or slow.
	e := newEnvClient(t, Config{}, jobs.ClientConfig{CallTimeout: time.Nanosecond})
	for _, rq := range [][3]string{
		{"POST", "/v1/queues/q/jobs", `{"kind":"a"}`},
		{"GET", "/v1/jobs/1", ""},
		{"GET", "/v1/queues", ""},
	} {
		rec := e.do(rq[0], rq[1], rq[2])
		wantError(t, rec, http.StatusServiceUnavailable, CodeUnavailable, "")
		if ra := rec.Header().Get("Retry-After"); ra != "1" {
			t.Fatalf("%v: Retry-After %q", rq, ra)
		}
	}
}

// failingStore is a real store whose Get fails with an unexpected error.
type failingStore struct {
	*sqlitestore.Store
}

func (failingStore) Get(context.Context, int64) (*jobs.Job, error) {
	return nil, errors.New("disk on fire: /var/secret/path")
}

func TestInternalErrorIsGenericAndLogged(t *testing.T) {
	logs := &syncBuffer{}
	srv := New(jobs.NewClient(failingStore{openStore(t)}, jobs.ClientConfig{}), Config{Logger: slog.New(slog.NewJSONHandler(logs, nil))})
	rec := httptest.NewRecorder()
	srv.ServeHTTP(rec, httptest.NewRequest("GET", "/v1/jobs/1", nil))
	wantError(t, rec, http.StatusInternalServerError, CodeInternal, "")
	if strings.Contains(rec.Body.String(), "fire") {
		t.Fatalf("internal detail leaked: %s", rec.Body.String())
	}
	if !strings.Contains(logs.String(), "disk on fire") || !strings.Contains(logs.String(), `"level":"ERROR"`) {
		t.Fatalf("not logged: %s", logs.String())
	}
}

func TestRoutingErrors(t *testing.T) {
	e := newEnv(t, Config{})
	for _, tc := range []struct {
		method, path string
		status       int
		allow        string
	}{
		{"GET", "/", 404, ""},
		{"GET", "/v1", 404, ""},
		{"GET", "/v1/nothing", 404, ""},
		{"GET", "/v1/jobs/1/extra", 404, ""},
		{"GET", "/v2/jobs", 404, ""},
		{"DELETE", "/v1/jobs/1", 405, "GET, HEAD"},
		{"POST", "/v1/jobs", 405, "GET, HEAD"},
		{"GET", "/v1/jobs/1/cancel", 405, "POST"},
		{"DELETE", "/v1/queues/q", 405, "GET, HEAD, PUT"},
		{"GET", "/v1/queues/q/jobs", 405, "POST"},
		{"POST", "/healthz", 405, "GET, HEAD"},
	} {
		rec := e.do(tc.method, tc.path, "")
		code := CodeNotFound
		if tc.status == 405 {
			code = CodeMethodNotAllowed
		}
		wantError(t, rec, tc.status, code, "")
		if got := rec.Header().Get("Allow"); got != tc.allow {
			t.Errorf("%s %s: Allow %q, want %q", tc.method, tc.path, got, tc.allow)
		}
	}
}

// TestOverHTTP runs the API behind a real HTTP server: the body limit
// holds for a chunked body without Content-Length, and HEAD works.
func TestOverHTTP(t *testing.T) {
	e := newEnv(t, Config{MaxBodyBytes: 1024})
	ts := httptest.NewServer(e.srv)
	defer ts.Close()

	big := `{"kind":"a","payload":"` + strings.Repeat("x", 2000) + `"}`
	for _, chunked := range []bool{false, true} {
		req, _ := http.NewRequest("POST", ts.URL+"/v1/queues/q/jobs", strings.NewReader(big))
		req.Header.Set("Content-Type", "application/json")
		if chunked {
			req.ContentLength = -1
			req.Body, req.GetBody = io.NopCloser(strings.NewReader(big)), nil
		}
		resp, err := ts.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var body errorBody
		json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestEntityTooLarge || body.Error.Code != CodePayloadTooLarge {
			t.Fatalf("chunked=%v: %d %+v", chunked, resp.StatusCode, body)
		}
	}
	resp, err := ts.Client().Head(ts.URL + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("HEAD /healthz: %d", resp.StatusCode)
	}
}

// TestAuthenticate: the middleware answers 401 for the token's paths
// before next sees the request, passes the others and authorized ones
// through, and is next itself when there is no token.
func TestAuthenticate(t *testing.T) {
	e := newEnv(t, Config{Token: "s3cret"})
	var reached []string
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reached = append(reached, r.URL.Path)
		w.WriteHeader(http.StatusTeapot)
	})
	h := e.srv.Authenticate(next)
	serve := func(path, auth string) int {
		req := httptest.NewRequest("GET", path, nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec.Code
	}
	for _, path := range []string{"/v1/jobs", "/v1/nothing", "/metrics"} {
		if code := serve(path, ""); code != http.StatusUnauthorized {
			t.Errorf("%s without the token: %d, want 401", path, code)
		}
		if code := serve(path, "Bearer wrong"); code != http.StatusUnauthorized {
			t.Errorf("%s with another token: %d, want 401", path, code)
		}
		if code := serve(path, "Bearer s3cret"); code != http.StatusTeapot {
			t.Errorf("%s with the token: %d, want next's answer", path, code)
		}
	}
	for _, path := range []string{"/healthz", "/readyz", "/elsewhere"} {
		if code := serve(path, ""); code != http.StatusTeapot {
			t.Errorf("%s without the token: %d, want next's answer", path, code)
		}
	}
	if want := []string{"/v1/jobs", "/v1/nothing", "/metrics", "/healthz", "/readyz", "/elsewhere"}; !slices.Equal(reached, want) {
		t.Errorf("next saw %v, want %v", reached, want)
	}
	open := newEnv(t, Config{})
	rec := httptest.NewRecorder()
	open.srv.Authenticate(next).ServeHTTP(rec, httptest.NewRequest("GET", "/v1/jobs", nil))
	if rec.Code != http.StatusTeapot {
		t.Errorf("without a token configured: %d, want next's answer", rec.Code)
	}
}
