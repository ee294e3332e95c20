package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/client"
	"github.com/sluicehq/sluice/httpapi"
	"github.com/sluicehq/sluice/jobs"
	"github.com/sluicehq/sluice/jobs/sqlitestore"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type env struct {
	store *sqlitestore.Store
	ts    *httptest.Server
	c     *client.Client
}

// newEnv serves the API over a real SQLite store; token protects it.
func newEnv(t *testing.T, token string) *env {
	t.Helper()
	store, err := sqlitestore.Open(context.Background(), filepath.Join(t.TempDir(), "jobs.db"), sqlitestore.Config{})
	if err != nil {
		t.Fatal(err)
	}
	api := httpapi.New(jobs.NewClient(store, jobs.ClientConfig{}), httpapi.Config{Token: token, Logger: slog.New(slog.DiscardHandler)})
	ts := httptest.NewServer(api)
	t.Cleanup(func() {
		ts.Close()
		store.Close()
	})
	c, err := client.New(ts.URL, client.Config{Token: token, HTTPClient: ts.Client()})
	if err != nil {
		t.Fatal(err)
	}
	return &env{store: store, ts: ts, c: c}
}

func TestJobs(t *testing.T) {
	e := newEnv(t, "tok")
	ctx := context.Background()
	deadline := time.Now().Add(time.Hour).Truncate(time.Millisecond)
	res, err := e.c.Enqueue(ctx, client.NewJob{
		Kind: "email", Queue: "mail", Payload: json.RawMessage(`{"to":"ada@example.com"}`), Priority: 5,
		IdempotencyKey: "k", Deadline: deadline, AttemptTimeout: 1500 * time.Millisecond, MaxAttempts: 2,
		BackoffMin: time.Second, BackoffMax: time.Minute, Group: "g", CancelGroupOnFailure: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	j := res.Job
	if res.Duplicate || j.ID <= 0 || j.Kind != "email" || j.Queue != "mail" || string(j.Payload) != `{"to":"ada@example.com"}` ||
		j.Priority != 5 || !j.Deadline.Equal(deadline) || j.AttemptTimeout != 1500*time.Millisecond || j.MaxAttempts != 2 ||
		j.BackoffMin != time.Second || j.BackoffMax != time.Minute || j.Group != "g" || !j.CancelGroupOnFailure ||
		j.State != client.StateWaiting || j.CreatedAt.IsZero() || j.RunAt.IsZero() || !j.FinishedAt.IsZero() {
		t.Fatalf("enqueued %+v", j)
	}
	again, err := e.c.Enqueue(ctx, client.NewJob{Kind: "email", Queue: "mail", Payload: json.RawMessage(`{"to": "ada@example.com"}`), IdempotencyKey: "k"})
	if err != nil || !again.Duplicate || again.Job.ID != j.ID {
		t.Fatalf("repeat: %+v, %v", again, err)
	}
	_, err = e.c.Enqueue(ctx, client.NewJob{Kind: "other", Queue: "mail", IdempotencyKey: "k"})
	if !errors.Is(err, client.ErrConflict) {
		t.Fatalf("conflict: %v", err)
	}

	got, err := e.c.Get(ctx, j.ID)
	if err != nil || got.ID != j.ID || got.Kind != "email" {
		t.Fatalf("get: %+v, %v", got, err)
	}
	if _, err := e.c.Get(ctx, 12345); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("get missing: %v", err)
	}

	// A batch, into the default queue, with a conflicting entry.
	rs, err := e.c.EnqueueMany(ctx, "", []client.NewJob{{Kind: "a"}, {Kind: "b", Group: "g"}, {Kind: "c"}})
	if err != nil || len(rs) != 3 || rs[0].Job.Queue != "default" || rs[1].Job.Kind != "b" {
		t.Fatalf("batch: %+v, %v", rs, err)
	}
	rs, err = e.c.EnqueueMany(ctx, "mail", []client.NewJob{{Kind: "x", IdempotencyKey: "k"}, {Kind: "d"}})
	if err != nil || len(rs) != 2 || !errors.Is(rs[0].Err, client.ErrConflict) || rs[0].Job != nil || rs[1].Job == nil {
		t.Fatalf("mixed batch: %+v, %v", rs, err)
	}
	if _, err := e.c.EnqueueMany(ctx, "mail", []client.NewJob{{Kind: "a"}, {Kind: "b", Priority: 12}}); !isField(err, client.ErrInvalid, "jobs[1].priority") {
		t.Fatalf("bad batch: %v", err)
	}

	// Paging.
	var ids []int64
	f := client.ListFilter{Limit: 2}
	for range 10 {
		p, err := e.c.List(ctx, f)
		if err != nil {
			t.Fatal(err)
		}
		for _, j := range p.Jobs {
			ids = append(ids, j.ID)
		}
		if p.NextAfter == 0 {
			break
		}
		f.After = p.NextAfter
	}
	if len(ids) != 5 {
		t.Fatalf("paged ids %v", ids)
	}
	p, err := e.c.List(ctx, client.ListFilter{Queue: "mail", State: client.StateWaiting, Group: "g"})
	if err != nil || len(p.Jobs) != 1 || p.Jobs[0].ID != j.ID || p.NextAfter != 0 {
		t.Fatalf("filtered: %+v, %v", p, err)
	}
	if _, err := e.c.List(ctx, client.ListFilter{State: "done"}); !isField(err, client.ErrInvalid, "state") {
		t.Fatalf("bad state: %v", err)
	}

	c, err := e.c.Cancel(ctx, j.ID)
	if err != nil || c.State != client.StateCanceled || !c.State.Terminal() || c.FinishedAt.IsZero() {
		t.Fatalf("cancel: %+v, %v", c, err)
	}
	g, err := e.c.Group(ctx, "g")
	if err != nil || g.Total != 2 || g.Counts[client.StateCanceled] != 1 || g.Counts[client.StateWaiting] != 1 || g.Done {
		t.Fatalf("group: %+v, %v", g, err)
	}
	if _, err := e.c.Group(ctx, "none"); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("group missing: %v", err)
	}
}

func isField(err, sentinel error, field string) bool {
	var ae *client.APIError
	return errors.Is(err, sentinel) && errors.As(err, &ae) && ae.Field == field
}

func TestQueues(t *testing.T) {
	e := newEnv(t, "")
	ctx := context.Background()
	q, err := e.c.PutQueue(ctx, client.Queue{Name: "mail box", Capacity: 2, Policy: "shed", MaxWait: 3 * time.Second, RateLimit: 1.5, IdempotencyWindow: time.Hour})
	want := client.Queue{Name: "mail box", Concurrency: jobs.DefaultConcurrency, Capacity: 2, Policy: "shed", MaxWait: 3 * time.Second, RateLimit: 1.5, RateBurst: 1, IdempotencyWindow: time.Hour}
	if err != nil || q != want {
		t.Fatalf("put: %+v, %v", q, err)
	}
	if q, err := e.c.Queue(ctx, "mail box"); err != nil || q != want {
		t.Fatalf("get: %+v, %v", q, err)
	}
	if q, err := e.c.Pause(ctx, "mail box"); err != nil || !q.Paused {
		t.Fatalf("pause: %+v, %v", q, err)
	}
	qs, err := e.c.Queues(ctx)
	if err != nil || len(qs) != 1 || !qs[0].Paused || qs[0].Name != "mail box" {
		t.Fatalf("queues: %+v, %v", qs, err)
	}
	if q, err := e.c.Resume(ctx, "mail box"); err != nil || q.Paused {
		t.Fatalf("resume: %+v, %v", q, err)
	}
	if _, err := e.c.Pause(ctx, "none"); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("pause missing: %v", err)
	}
	if _, err := e.c.PutQueue(ctx, client.Queue{Name: "x", Policy: "drop"}); !isField(err, client.ErrInvalid, "policy") {
		t.Fatalf("bad policy: %v", err)
	}

	// A full queue: ErrQueueFull with the server's Retry-After.
	if _, err := e.c.PutQueue(ctx, client.Queue{Name: "one", Capacity: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.c.Enqueue(ctx, client.NewJob{Kind: "a", Queue: "one"}); err != nil {
		t.Fatal(err)
	}
	_, err = e.c.Enqueue(ctx, client.NewJob{Kind: "a", Queue: "one"})
	var ae *client.APIError
	if !errors.Is(err, client.ErrQueueFull) || errors.Is(err, client.ErrUnavailable) || !errors.As(err, &ae) ||
		ae.Status != 429 || ae.RetryAfter < time.Second || !client.IsTemporary(err) {
		t.Fatalf("full: %#v", err)
	}
}

func TestErrors(t *testing.T) {
	e := newEnv(t, "right")
	ctx := context.Background()
	bad, err := client.New(e.ts.URL, client.Config{Token: "wrong", HTTPClient: e.ts.Client()})
	if err != nil {
		t.Fatal(err)
	}
	_, err = bad.Queues(ctx)
	if !errors.Is(err, client.ErrUnauthorized) || strings.Contains(err.Error(), "wrong") {
		t.Fatalf("wrong token: %v", err)
	}

	// A closed store: 503 shutting_down, ErrUnavailable, Retry-After.
	e.store.Close()
	_, err = e.c.Enqueue(ctx, client.NewJob{Kind: "a"})
	var ae *client.APIError
	if !errors.Is(err, client.ErrUnavailable) || !errors.As(err, &ae) || ae.Code != "shutting_down" || ae.RetryAfter != time.Second {
		t.Fatalf("closed: %#v", err)
	}

	// A canceled ctx.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := e.c.Get(cctx, 1); !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled: %v", err)
	}

	for _, u := range []string{"", "ftp://x", "http://", "127.0.0.1:8080", "http://h/?q=1", "http://h/#f", "http://a b/"} {
		if _, err := client.New(u, client.Config{}); err == nil {
			t.Errorf("New(%q) accepted", u)
		}
	}
}

// TestPlainErrors: an error answered by something else than the API (a
// proxy, an admission middleware) still becomes an *APIError.
func TestPlainErrors(t *testing.T) {
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("User-Agent") != "test-agent" || r.URL.Path != "/prefix/v1/jobs/7" {
			http.Error(w, "unexpected "+r.URL.Path, http.StatusTeapot)
			return
		}
		w.Header().Set("Retry-After", time.Now().Add(90*time.Second).UTC().Format(http.TimeFormat))
		http.Error(w, "overloaded", http.StatusTooManyRequests)
	}))
	defer ts.Close()
	c, err := client.New(ts.URL+"/prefix/", client.Config{UserAgent: "test-agent", HTTPClient: ts.Client()})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Get(context.Background(), 7)
	var ae *client.APIError
	if !errors.As(err, &ae) || ae.Status != 429 || ae.Code != "" || ae.Message != "overloaded" ||
		ae.RetryAfter < 80*time.Second || ae.RetryAfter > 91*time.Second ||
		!errors.Is(err, client.ErrUnavailable) || errors.Is(err, client.ErrQueueFull) {
		t.Fatalf("%#v", err)
	}
}

// TestWireRoundTrip: the client's types encode as the server does.
func TestWireRoundTrip(t *testing.T) {
	e := newEnv(t, "")
	res, err := e.c.Enqueue(context.Background(), client.NewJob{Kind: "a", Payload: json.RawMessage(`[1]`), AttemptTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := e.ts.Client().Get(fmt.Sprintf("%s/v1/jobs/%d", e.ts.URL, res.Job.ID))
	if err != nil {
		t.Fatal(err)
	}
	var server map[string]any
	json.NewDecoder(resp.Body).Decode(&server)
	resp.Body.Close()
	b, err := json.Marshal(res.Job)
	if err != nil {
		t.Fatal(err)
	}
	var mine map[string]any
	json.Unmarshal(b, &mine)
	if fmt.Sprint(mine) != fmt.Sprint(server) {
		t.Fatalf("client encodes\n%v\nserver sent\n%v", mine, server)
	}
	var back client.Job
	if err := json.Unmarshal(b, &back); err != nil || back.ID != res.Job.ID || back.AttemptTimeout != time.Second || !back.CreatedAt.Equal(res.Job.CreatedAt) {
		t.Fatalf("decode: %+v, %v", back, err)
	}
	er, _ := json.Marshal(client.EnqueueResult{Job: res.Job, Duplicate: true})
	if !strings.Contains(string(er), `"duplicate":true`) || !strings.Contains(string(er), `"kind":"a"`) {
		t.Fatalf("result: %s", er)
	}
}

// TestEndToEnd: a worker runs what the client enqueued.
func TestEndToEnd(t *testing.T) {
	e := newEnv(t, "")
	ctx := context.Background()
	reg := jobs.NewRegistry()
	jobs.HandleJSON(reg, "add", func(ctx context.Context, job *jobs.Job, p struct{ A, B int }) error {
		if p.A+p.B < 0 {
			return errors.New("negative")
		}
		return nil
	})
	recorded := make(chan int, 100) // outcomes applied, per batch written
	w := jobs.NewWorker(e.store, reg, jobs.WorkerConfig{
		Logger: slog.New(slog.DiscardHandler), PollInterval: time.Millisecond, MaxPollInterval: 10 * time.Millisecond,
		OnRecorded: func(_ []jobs.Outcome, applied []bool) {
			n := 0
			for _, a := range applied {
				if a {
					n++
				}
			}
			recorded <- n
		},
	})
	if err := w.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer func() {
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		w.Quiesce(sctx)
		w.Drain(sctx)
		w.Stop(sctx)
	}()
	rs, err := e.c.EnqueueMany(ctx, "", []client.NewJob{
		{Kind: "add", Payload: json.RawMessage(`{"A":1,"B":2}`), Group: "sum"},
		{Kind: "add", Payload: json.RawMessage(`{"A":3,"B":4}`), Group: "sum"},
	})
	if err != nil {
		t.Fatal(err)
	}
	timeout := time.After(30 * time.Second)
	for done := 0; done < 2; {
		select {
		case n := <-recorded:
			done += n
		case <-timeout:
			t.Fatalf("%d of 2 jobs recorded", done)
		}
	}
	g, err := e.c.Group(ctx, "sum")
	if err != nil || !g.Done || !g.Succeeded || g.Total != 2 || g.Counts[client.StateSucceeded] != 2 {
		t.Fatalf("group %+v, %v", g, err)
	}
	j, err := e.c.Get(ctx, rs[1].Job.ID)
	if err != nil || j.State != client.StateSucceeded || j.Attempt != 1 || j.FinishedAt.IsZero() {
		t.Fatalf("job %+v, %v", j, err)
	}
}

// TestAPIErrorMatches: every code and status the server (or admission
// control in front of it) answers with matches the right sentinel, and
// Temporary says which are worth retrying.
func TestAPIErrorMatches(t *testing.T) {
	for _, tc := range []struct {
		status    int
		code      string
		want      error
		temporary bool
	}{
		{400, "invalid_request", client.ErrInvalid, false},
		{400, "bad_priority", client.ErrInvalid, false},
		{400, "bad_deadline", client.ErrInvalid, false},
		{413, "payload_too_large", client.ErrInvalid, false},
		{415, "unsupported_media_type", client.ErrInvalid, false},
		{415, "", client.ErrInvalid, false},
		{401, "unauthorized", client.ErrUnauthorized, false},
		{404, "not_found", client.ErrNotFound, false},
		{409, "idempotency_conflict", client.ErrConflict, false},
		{429, "queue_full", client.ErrQueueFull, true},
		{429, "overloaded", client.ErrUnavailable, true},
		{503, "shutting_down", client.ErrUnavailable, true},
		{503, "canceled", client.ErrUnavailable, true},
		{504, "deadline_exceeded", client.ErrUnavailable, true},
	} {
		e := &client.APIError{Status: tc.status, Code: tc.code}
		for _, s := range []error{client.ErrInvalid, client.ErrUnauthorized, client.ErrNotFound, client.ErrConflict, client.ErrQueueFull, client.ErrUnavailable} {
			if got := errors.Is(e, s); got != (s == tc.want) {
				t.Errorf("%d %q: errors.Is(%v) = %v", tc.status, tc.code, s, got)
			}
		}
		if e.Temporary() != tc.temporary {
			t.Errorf("%d %q: Temporary() = %v, want %v", tc.status, tc.code, e.Temporary(), tc.temporary)
		}
	}
}
