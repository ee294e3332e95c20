package main

// End-to-end tests against the real binary: each test builds "sluice" (once
// per run, see e2e_helpers_test.go), starts "sluice serve" as a child
// process on a loopback port with its own SQLite file, and drives it over
// HTTP, with httptest servers as the targets of "http" jobs.

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestE2ETargets runs "http" jobs against targets that answer, are slow,
// fail, ask to retry later or hang. Each scenario has its own queue and its
// own target (so its own host breaker and limiter) on one server.
func TestE2ETargets(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverOpts{allowPrivate: true, queues: "ok,slow,failing,rejecting,limited,hang"})

	// Every delivery reaches the target once, with the documented headers.
	t.Run("OK", func(t *testing.T) {
		t.Parallel()
		tg := newTarget(t, func(_ *target, w http.ResponseWriter, _ *http.Request, _ *delivery) {
			w.WriteHeader(http.StatusNoContent)
		})
		const n = 8
		want := map[int64]map[string]any{} // job id -> its request
		for i := range n {
			job := httpJob(tg.URL+"/hook", nil)
			p := job["payload"].(map[string]any)
			p["body"] = map[string]any{"n": i}
			if i == 0 {
				p["method"] = "PUT"
				p["headers"] = map[string]string{"X-Test": "yes"}
			}
			if i%2 == 0 {
				job["idempotency_key"] = fmt.Sprintf("k-%d", i)
			}
			j := s.enqueue(t, "ok", job)
			want[j.ID] = job
			if i == 0 {
				// The same key, kind and payload again: the existing job.
				r := s.request(t, "POST", "/v1/queues/ok/jobs", job, nil)
				var dup e2eJob
				_ = json.Unmarshal(r.Body, &dup)
				if r.Status != http.StatusOK || !dup.Duplicate || dup.ID != j.ID {
					t.Errorf("repeat of an idempotent enqueue: %s, want 200 duplicate of job %d", r, j.ID)
				}
			}
		}
		for id, job := range want {
			if j := s.waitJob(t, id, 20*time.Second); j.State != "succeeded" || j.Attempt != 1 {
				t.Errorf("%v, want succeeded at attempt 1", j)
			}
			ds := tg.of(id)
			if len(ds) != 1 {
				t.Errorf("job %d delivered %d times, want once", id, len(ds))
				continue
			}
			d := ds[0]
			wantKey := "sluice-job-" + strconv.FormatInt(id, 10)
			if k, ok := job["idempotency_key"].(string); ok {
				wantKey = k
			}
			p := job["payload"].(map[string]any)
			wantMethod := "POST"
			if m, ok := p["method"].(string); ok {
				wantMethod = m
			}
			body, _ := json.Marshal(p["body"])
			if d.Key != wantKey || d.Attempt != 1 || d.Queue != "ok" || d.Method != wantMethod ||
				string(d.Body) != string(body) || d.Header.Get("Content-Type") != "application/json" {
				t.Errorf("job %d delivered as key=%q attempt=%d queue=%q method=%s body=%s content-type=%q; want key=%q attempt=1 queue=ok method=%s body=%s",
					id, d.Key, d.Attempt, d.Queue, d.Method, d.Body, d.Header.Get("Content-Type"), wantKey, wantMethod, body)
			}
			if hs, ok := p["headers"].(map[string]string); ok && d.Header.Get("X-Test") != hs["X-Test"] {
				t.Errorf("job %d: X-Test = %q, want the job's header", id, d.Header.Get("X-Test"))
			}
		}
		if got := tg.count(); got != n {
			t.Errorf("target saw %d deliveries, want %d", got, n)
		}
	})

	// A target slower than the attempt timeout: each attempt is cut off at
	// the timeout, the job is retried, then fails for good.
	t.Run("Slow", func(t *testing.T) {
		t.Parallel()
		tg := newTarget(t, func(tg *target, w http.ResponseWriter, r *http.Request, _ *delivery) {
			if tg.sleep(r, 10*time.Second) {
				w.WriteHeader(http.StatusOK)
			}
		})
		j := s.enqueue(t, "slow", httpJob(tg.URL, map[string]any{
			"attempt_timeout": "300ms", "max_attempts": 2, "backoff_min": "20ms", "backoff_max": "50ms",
		}))
		j = s.waitJob(t, j.ID, 20*time.Second)
		if j.State != "failed" || j.Attempt != 2 || !strings.Contains(j.LastError, "timed out") {
			t.Errorf("%v, want failed at attempt 2 with a timeout", j)
		}
		ds := tg.of(j.ID)
		if len(ds) != 2 {
			t.Fatalf("delivered %d times, want 2", len(ds))
		}
		for i, d := range ds {
			ms, err := strconv.Atoi(d.Deadline)
			if d.Attempt != i+1 || err != nil || ms <= 0 || ms > 300 {
				t.Errorf("delivery %d: Sluice-Attempt %d, Sluice-Deadline %q; want %d and 1..300 ms", i+1, d.Attempt, d.Deadline, i+1)
			}
			if !d.Aborted || d.Ended.Sub(d.At) > 2*time.Second {
				t.Errorf("delivery %d: the server hung up after %v (aborted %v), want about 300ms", i+1, d.Ended.Sub(d.At), d.Aborted)
			}
		}
	})

	// 5xx: retried with backoff (same idempotency key), then failed.
	t.Run("Failing", func(t *testing.T) {
		t.Parallel()
		tg := newTarget(t, func(_ *target, w http.ResponseWriter, _ *http.Request, _ *delivery) {
			http.Error(w, "boom", http.StatusInternalServerError)
		})
		j := s.enqueue(t, "failing", httpJob(tg.URL, map[string]any{"max_attempts": 3, "backoff_min": "20ms", "backoff_max": "50ms"}))
		j = s.waitJob(t, j.ID, 20*time.Second)
		if j.State != "failed" || j.Attempt != 3 || !strings.Contains(j.LastError, "500") {
			t.Errorf("%v, want failed at attempt 3 after a 500", j)
		}
		ds := tg.of(j.ID)
		if len(ds) != 3 {
			t.Fatalf("delivered %d times, want 3", len(ds))
		}
		for i, d := range ds {
			if d.Attempt != i+1 || d.Key != ds[0].Key || d.Key == "" {
				t.Errorf("delivery %d: attempt %d key %q, want attempt %d and the key of the first (%q)", i+1, d.Attempt, d.Key, i+1, ds[0].Key)
			}
		}
	})

	// Other 4xx and 3xx: failed at once, never retried, redirects not followed.
	t.Run("Rejecting", func(t *testing.T) {
		t.Parallel()
		tg := newTarget(t, func(_ *target, w http.ResponseWriter, r *http.Request, _ *delivery) {
			if r.URL.Path == "/moved" {
				http.Redirect(w, r, "/elsewhere", http.StatusFound)
				return
			}
			http.Error(w, "no such order", http.StatusUnprocessableEntity)
		})
		more := map[string]any{"max_attempts": 3, "backoff_min": "20ms", "backoff_max": "50ms"}
		j4 := s.enqueue(t, "rejecting", httpJob(tg.URL+"/order", more))
		j3 := s.enqueue(t, "rejecting", httpJob(tg.URL+"/moved", more))
		for _, c := range []struct {
			id   int64
			want string
		}{{j4.ID, "422"}, {j3.ID, "302"}} {
			j := s.waitJob(t, c.id, 20*time.Second)
			if j.State != "failed" || j.Attempt != 1 || !strings.Contains(j.LastError, c.want) {
				t.Errorf("%v, want failed at attempt 1 with %s", j, c.want)
			}
			if n := len(tg.of(c.id)); n != 1 {
				t.Errorf("job %d delivered %d times, want once", c.id, n)
			}
		}
		for _, d := range tg.all() {
			if d.Path == "/elsewhere" {
				t.Errorf("job %d: the redirect was followed", d.JobID)
			}
		}
		if n := tg.count(); n != 2 {
			t.Errorf("target saw %d requests, want 2 (the redirect is not followed)", n)
		}
	})

	// 429 with Retry-After: 1: the retry waits at least that long, then
	// succeeds once the target answers 200.
	t.Run("RetryAfter", func(t *testing.T) {
		t.Parallel()
		tg := newTarget(t, func(_ *target, w http.ResponseWriter, _ *http.Request, d *delivery) {
			if d.N == 1 {
				w.Header().Set("Retry-After", "1")
				w.WriteHeader(http.StatusTooManyRequests)
				return
			}
			w.WriteHeader(http.StatusOK)
		})
		j := s.enqueue(t, "limited", httpJob(tg.URL, map[string]any{"max_attempts": 5, "backoff_min": "10ms", "backoff_max": "30s"}))
		waitFor(t, 10*time.Second, func() (bool, string) { return tg.count() >= 1, "no delivery yet" })
		first := tg.all()[0]
		// The job waits again, its next run no sooner than Retry-After.
		var waiting e2eJob
		waitFor(t, 10*time.Second, func() (bool, string) {
			waiting = s.job(t, j.ID)
			return waiting.State != "running", waiting.String()
		})
		if waiting.State == "waiting" && waiting.RunAt.Sub(first.At) < 950*time.Millisecond {
			t.Errorf("after 429 Retry-After: 1 the job runs again at %v, only %v after the 429", waiting.RunAt, waiting.RunAt.Sub(first.At))
		}
		j = s.waitJob(t, j.ID, 20*time.Second)
		if j.State != "succeeded" || j.Attempt < 2 {
			t.Errorf("%v, want succeeded after the retry", j)
		}
		ds := tg.of(j.ID)
		if len(ds) != 2 {
			t.Fatalf("delivered %d times, want 2", len(ds))
		}
		if gap := ds[1].At.Sub(ds[0].At); gap < 950*time.Millisecond || gap > 6*time.Second {
			t.Errorf("retry %v after the 429 with Retry-After: 1, want about 1s (no sooner)", gap)
		}
	})

	// A target that never answers, with a job deadline: the job ends
	// expired at its deadline, and meanwhile the queue's other slot keeps
	// serving jobs to a healthy target.
	t.Run("Hanging", func(t *testing.T) {
		t.Parallel()
		hang := newTarget(t, func(tg *target, _ http.ResponseWriter, r *http.Request, _ *delivery) {
			tg.sleep(r, time.Minute)
		})
		ok := newTarget(t, func(_ *target, w http.ResponseWriter, _ *http.Request, _ *delivery) {
			w.WriteHeader(http.StatusOK)
		})
		if r := s.request(t, "PUT", "/v1/queues/hang", map[string]any{"concurrency": 2}, nil); r.Status != http.StatusOK {
			t.Fatalf("PUT queue: %s", r)
		}
		time.Sleep(1500 * time.Millisecond) // the worker reloads queue settings every second

		deadline := time.Now().Add(3 * time.Second).UTC()
		hj := s.enqueue(t, "hang", httpJob(hang.URL, map[string]any{"deadline": deadline.Format(time.RFC3339Nano), "max_attempts": 5, "backoff_min": "10ms", "backoff_max": "20ms"}))
		waitFor(t, 10*time.Second, func() (bool, string) { return hang.count() == 1, "the hanging target has no delivery yet" })
		var healthy []int64
		for range 6 {
			healthy = append(healthy, s.enqueue(t, "hang", httpJob(ok.URL, nil)).ID)
		}
		for _, id := range healthy {
			if j := s.waitJob(t, id, 20*time.Second); j.State != "succeeded" {
				t.Errorf("healthy %v, want succeeded", j)
			}
		}
		if j := s.job(t, hj.ID); j.terminal() || time.Now().After(deadline) {
			t.Logf("healthy jobs done at %v (deadline %v); hanging %v", time.Now(), deadline, j)
			t.Errorf("the healthy jobs did not complete while the hanging one was still running")
		}
		j := s.waitJob(t, hj.ID, 20*time.Second)
		if j.State != "expired" && j.State != "failed" {
			t.Errorf("hanging %v, want expired (or failed)", j)
		}
		if j.FinishedAt == nil || j.FinishedAt.Sub(deadline) > 3*time.Second {
			t.Errorf("hanging job finished at %v, deadline %v: want it ended promptly at the deadline", j.FinishedAt, deadline)
		}
		ds := hang.all()
		if len(ds) != 1 {
			t.Fatalf("hanging target saw %d requests, want 1", len(ds))
		}
		if !ds[0].Aborted || ds[0].Ended.Sub(deadline) > 2*time.Second {
			t.Errorf("the server hung up on the hanging target at %v (aborted %v), deadline %v", ds[0].Ended, ds[0].Aborted, deadline)
		}
	})
}

// TestE2ESIGTERMInFlight sends SIGTERM while deliveries are in flight: the
// server drains them and exits 0 within its shutdown timeout; restarted on
// the same database it finishes the rest. Every job succeeds and the target
// sees every job exactly once: none lost, none run twice.
func TestE2ESIGTERMInFlight(t *testing.T) {
	t.Parallel()
	tg := newTarget(t, func(tg *target, w http.ResponseWriter, r *http.Request, _ *delivery) {
		if tg.sleep(r, 300*time.Millisecond) {
			w.WriteHeader(http.StatusOK)
		}
	})
	const n = 50
	const shutdown = 15 * time.Second
	s := startServer(t, serverOpts{allowPrivate: true, extra: []string{"--shutdown-timeout", shutdown.String()}})
	batch := make([]map[string]any, n)
	for i := range batch {
		// Attempts refused by the host's concurrency limiter (initially 5
		// in flight, below the queue's 10) are never sent but still count
		// (docs/httptarget.md): give the jobs room for them.
		batch[i] = httpJob(tg.URL, map[string]any{"max_attempts": 100, "backoff_min": "50ms", "backoff_max": "100ms"})
	}
	r := s.request(t, "POST", "/v1/queues/default/jobs", map[string]any{"jobs": batch}, nil)
	var created struct{ Jobs []e2eJob }
	if err := json.Unmarshal(r.Body, &created); r.Status != http.StatusCreated || err != nil || len(created.Jobs) != n {
		t.Fatalf("batch enqueue: %s", r)
	}
	waitFor(t, 15*time.Second, func() (bool, string) { return tg.count() >= 3, "fewer than 3 deliveries in flight" })

	start := time.Now()
	s.signal(t, syscall.SIGTERM)
	code, exited := s.wait(shutdown + 3*time.Second)
	took := time.Since(start)
	if !exited {
		t.Fatalf("no exit %v after SIGTERM", shutdown+3*time.Second)
	}
	if code != 0 || took > shutdown {
		t.Errorf("exit status %d after %v (%s), want 0 within the shutdown timeout %v", code, took, exitError(s.err), shutdown)
	}
	before := tg.all()
	if len(before) >= n {
		t.Fatalf("all %d jobs were delivered before the server stopped: SIGTERM came too late to test anything", n)
	}
	for _, d := range before {
		if d.Aborted || d.Ended.IsZero() {
			t.Errorf("job %d: delivery in flight at SIGTERM was cut off (aborted %v), want it drained", d.JobID, d.Aborted)
		}
	}
	if out := s.stderr.String(); strings.Contains(out, `"level":"ERROR"`) {
		t.Errorf("errors logged during the shutdown")
	}
	t.Logf("SIGTERM after %d deliveries started; exit %d after %v", len(before), code, took)

	s2 := startServer(t, serverOpts{db: s.db, allowPrivate: true})
	var jobs []e2eJob
	waitFor(t, 30*time.Second, func() (bool, string) {
		r := s2.request(t, "GET", "/v1/jobs?queue=default&limit=1000", nil, nil)
		var page struct{ Jobs []e2eJob }
		if err := json.Unmarshal(r.Body, &page); r.Status != http.StatusOK || err != nil {
			return false, r.String()
		}
		jobs = page.Jobs
		done := 0
		for _, j := range jobs {
			if j.terminal() {
				done++
			}
		}
		return done == n, fmt.Sprintf("%d of %d jobs terminal", done, len(jobs))
	})
	if len(jobs) != n {
		t.Fatalf("%d jobs after the restart, want %d", len(jobs), n)
	}
	for _, j := range jobs {
		if j.State != "succeeded" {
			t.Errorf("%v, want succeeded", j)
		}
		ds := tg.of(j.ID)
		if len(ds) != 1 {
			t.Errorf("job %d delivered %d times, want exactly once", j.ID, len(ds))
			continue
		}
		if ds[0].Attempt != j.Attempt || ds[0].Key != "sluice-job-"+strconv.FormatInt(j.ID, 10) {
			t.Errorf("job %d (attempt %d) delivered with Sluice-Attempt %d, key %q", j.ID, j.Attempt, ds[0].Attempt, ds[0].Key)
		}
	}
	if got := tg.count(); got != n {
		t.Errorf("target saw %d deliveries, want %d", got, n)
	}
}

// TestE2EAPIGuards runs a server with a token and the default address
// rules: authentication, bad input on every endpoint, body limit, full
// queue, and refused internal targets.
func TestE2EAPIGuards(t *testing.T) {
	t.Parallel()
	const token = "e2e-s3cret-token"
	s := startServer(t, serverOpts{token: token, queues: "default,ssrf", extra: []string{"--max-body", "65536"}})
	t.Cleanup(func() {
		if strings.Contains(s.stderr.String(), token) {
			t.Errorf("the token appears in the server's logs")
		}
	})

	t.Run("Auth", func(t *testing.T) {
		t.Parallel()
		endpoints := []struct{ method, path string }{
			{"POST", "/v1/queues/authq/jobs"},
			{"GET", "/v1/jobs"},
			{"GET", "/v1/jobs/1"},
			{"POST", "/v1/jobs/1/cancel"},
			{"GET", "/v1/groups/g"},
			{"GET", "/v1/queues"},
			{"GET", "/v1/queues/authq"},
			{"PUT", "/v1/queues/authq"},
			{"POST", "/v1/queues/authq/pause"},
			{"POST", "/v1/queues/authq/resume"},
			{"GET", "/metrics"},
		}
		for _, e := range endpoints {
			var body any
			if e.method != "GET" {
				body = "not even JSON" // authentication comes before any other check
			}
			for _, c := range []struct {
				name, auth, challenge string
			}{
				{"no token", "", `Bearer realm="sluice"`},
				{"wrong token", "Bearer not-the-token", `error="invalid_token"`},
				{"other scheme", "Basic " + token, `Bearer realm="sluice"`},
			} {
				// Headers that admission control would refuse (400
				// bad_priority, 504 deadline_exceeded) if it came first.
				r := s.request(t, e.method, e.path, body, map[string]string{"Authorization": c.auth,
					"Sluice-Priority": "urgent", "Sluice-Deadline": "0s"})
				if r.Status != http.StatusUnauthorized || r.errorBody().Error.Code != "unauthorized" ||
					!strings.Contains(r.Header.Get("WWW-Authenticate"), c.challenge) {
					t.Errorf("%s %s with %s: %s, WWW-Authenticate %q; want 401 unauthorized with %s",
						e.method, e.path, c.name, r, r.Header.Get("WWW-Authenticate"), c.challenge)
				}
			}
			if e.method == "GET" {
				if r := s.request(t, e.method, e.path, nil, nil); r.Status == http.StatusUnauthorized {
					t.Errorf("%s %s with the token: %s", e.method, e.path, r)
				}
			}
		}
		for _, path := range []string{"/v1/jobs", "/v1/queues", "/metrics"} {
			if r := s.request(t, "GET", path, nil, nil); r.Status != http.StatusOK {
				t.Errorf("GET %s with the token: %s, want 200", path, r)
			}
		}
		if r := s.request(t, "POST", "/v1/queues/authq/jobs", map[string]any{"kind": "noop"}, nil); r.Status != http.StatusCreated {
			t.Errorf("enqueue with the token: %s, want 201", r)
		}
		if r := s.request(t, "GET", "/metrics", nil, nil); !strings.Contains(string(r.Body), "# HELP") {
			t.Errorf("/metrics with the token is not Prometheus text: %.200s", r.Body)
		}
		for _, path := range []string{"/healthz", "/readyz"} {
			if r := s.request(t, "GET", path, nil, map[string]string{"Authorization": ""}); r.Status != http.StatusOK {
				t.Errorf("GET %s without a token: %s, want 200", path, r)
			}
		}
	})

	t.Run("BadInput", func(t *testing.T) {
		t.Parallel()
		if r := s.request(t, "PUT", "/v1/queues/bi", map[string]any{}, nil); r.Status != http.StatusOK {
			t.Fatalf("PUT queue: %s", r)
		}
		long := strings.Repeat("n", 129)
		plain := map[string]string{"Content-Type": "text/plain"}
		noType := map[string]string{"Content-Type": ""}
		const enq = "/v1/queues/bi/jobs"
		for _, c := range []struct {
			method, path string
			body         string
			headers      map[string]string
			status       int
			code, field  string
		}{
			// POST /v1/queues/{queue}/jobs
			{"POST", enq, `{`, nil, 400, "invalid_request", ""},
			{"POST", enq, `[{"kind":"x"}]`, nil, 400, "invalid_request", ""},
			{"POST", enq, `{"kind":"x"} {}`, nil, 400, "invalid_request", ""},
			{"POST", enq, `{}`, nil, 400, "invalid_request", "kind"},
			{"POST", enq, `{"kind":"x","bogus":1}`, nil, 400, "invalid_request", "bogus"},
			{"POST", enq, `{"kind":"x","Priority":1}`, nil, 400, "invalid_request", "Priority"},
			{"POST", enq, `{"kind":"x","kind":"y"}`, nil, 400, "invalid_request", "kind"},
			{"POST", enq, `{"kind":1}`, nil, 400, "invalid_request", "kind"},
			{"POST", enq, `{"kind":"` + long + `"}`, nil, 400, "invalid_request", "kind"},
			{"POST", enq, `{"kind":"x","priority":10}`, nil, 400, "invalid_request", "priority"},
			{"POST", enq, `{"kind":"x","priority":-1}`, nil, 400, "invalid_request", "priority"},
			{"POST", enq, `{"kind":"x","priority":"high"}`, nil, 400, "invalid_request", "priority"},
			{"POST", enq, `{"kind":"x","attempt_timeout":"5"}`, nil, 400, "invalid_request", "attempt_timeout"},
			{"POST", enq, `{"kind":"x","attempt_timeout":5}`, nil, 400, "invalid_request", "attempt_timeout"},
			{"POST", enq, `{"kind":"x","backoff_min":"-1s"}`, nil, 400, "invalid_request", "backoff_min"},
			{"POST", enq, `{"kind":"x","backoff_min":"2s","backoff_max":"1s"}`, nil, 400, "invalid_request", "backoff_max"},
			{"POST", enq, `{"kind":"x","max_attempts":-1}`, nil, 400, "invalid_request", "max_attempts"},
			{"POST", enq, `{"kind":"x","deadline":"2001-01-01T00:00:00Z"}`, nil, 400, "invalid_request", "deadline"},
			{"POST", enq, `{"kind":"x","run_at":"tomorrow"}`, nil, 400, "invalid_request", "run_at"},
			{"POST", enq, `{"kind":"x","queue":"other"}`, nil, 400, "invalid_request", "queue"},
			{"POST", enq, `{"kind":"x","idempotency_key":"` + strings.Repeat("k", 257) + `"}`, nil, 400, "invalid_request", "idempotency_key"},
			{"POST", enq, `{"kind":"x","group":"` + long + `"}`, nil, 400, "invalid_request", "group"},
			{"POST", enq, `{"jobs":[]}`, nil, 400, "invalid_request", "jobs"},
			{"POST", enq, `{"jobs":[{"kind":"x"},{"kind":"x","priority":12}]}`, nil, 400, "invalid_request", "jobs[1].priority"},
			{"POST", enq, `{"jobs":[{"kind":"x"}],"priority":1}`, nil, 400, "invalid_request", "priority"},
			{"POST", enq, `{"kind":"x"}`, plain, 415, "unsupported_media_type", ""},
			{"POST", enq, `{"kind":"x"}`, noType, 415, "unsupported_media_type", ""},
			{"POST", "/v1/queues/" + long + "/jobs", `{"kind":"x"}`, nil, 400, "invalid_request", "queue"},
			{"GET", enq, ``, nil, 405, "method_not_allowed", ""},
			{"POST", enq, `{"kind":"x"}`, map[string]string{"Sluice-Priority": "urgent"}, 400, "bad_priority", ""},
			{"POST", enq, `{"kind":"x"}`, map[string]string{"Sluice-Deadline": "5 s"}, 400, "bad_deadline", ""},
			{"POST", enq, `{"kind":"x"}`, map[string]string{"Sluice-Deadline": "-1s"}, 504, "deadline_exceeded", ""},
			// GET /v1/jobs/{id}
			{"GET", "/v1/jobs/abc", ``, nil, 400, "invalid_request", "id"},
			{"GET", "/v1/jobs/0", ``, nil, 400, "invalid_request", "id"},
			{"GET", "/v1/jobs/-3", ``, nil, 400, "invalid_request", "id"},
			{"GET", "/v1/jobs/+3", ``, nil, 400, "invalid_request", "id"},
			{"GET", "/v1/jobs/99999999999999999999", ``, nil, 400, "invalid_request", "id"},
			{"GET", "/v1/jobs/424242", ``, nil, 404, "not_found", ""},
			{"DELETE", "/v1/jobs/1", ``, nil, 405, "method_not_allowed", ""},
			// GET /v1/jobs
			{"GET", "/v1/jobs?limit=0", ``, nil, 400, "invalid_request", "limit"},
			{"GET", "/v1/jobs?limit=1001", ``, nil, 400, "invalid_request", "limit"},
			{"GET", "/v1/jobs?limit=ten", ``, nil, 400, "invalid_request", "limit"},
			{"GET", "/v1/jobs?limit=5&limit=6", ``, nil, 400, "invalid_request", "limit"},
			{"GET", "/v1/jobs?after=-1", ``, nil, 400, "invalid_request", "after"},
			{"GET", "/v1/jobs?state=done", ``, nil, 400, "invalid_request", "state"},
			{"GET", "/v1/jobs?queue=" + long, ``, nil, 400, "invalid_request", "queue"},
			{"GET", "/v1/jobs?colour=red", ``, nil, 400, "invalid_request", "colour"},
			{"GET", "/v1/jobs?%zz", ``, nil, 400, "invalid_request", ""},
			{"POST", "/v1/jobs", `{}`, nil, 405, "method_not_allowed", ""},
			// POST /v1/jobs/{id}/cancel
			{"POST", "/v1/jobs/x/cancel", ``, nil, 400, "invalid_request", "id"},
			{"POST", "/v1/jobs/424242/cancel", ``, nil, 404, "not_found", ""},
			{"POST", "/v1/jobs/424242/cancel", `{"reason":"x"}`, nil, 400, "invalid_request", "reason"},
			{"POST", "/v1/jobs/424242/cancel", `please`, plain, 415, "unsupported_media_type", ""},
			{"GET", "/v1/jobs/1/cancel", ``, nil, 405, "method_not_allowed", ""},
			// GET /v1/groups/{name}
			{"GET", "/v1/groups/nobody", ``, nil, 404, "not_found", ""},
			{"GET", "/v1/groups/" + long, ``, nil, 400, "invalid_request", "name"},
			{"POST", "/v1/groups/g", `{}`, nil, 405, "method_not_allowed", ""},
			// /v1/queues and /v1/queues/{name}
			{"POST", "/v1/queues", `{}`, nil, 405, "method_not_allowed", ""},
			{"GET", "/v1/queues/nothere", ``, nil, 404, "not_found", ""},
			{"GET", "/v1/queues/" + long, ``, nil, 400, "invalid_request", "name"},
			{"DELETE", "/v1/queues/bi", ``, nil, 405, "method_not_allowed", ""},
			{"PUT", "/v1/queues/bi", ``, nil, 400, "invalid_request", ""},
			{"PUT", "/v1/queues/bi", `{"policy":"drop"}`, nil, 400, "invalid_request", "policy"},
			{"PUT", "/v1/queues/bi", `{"name":"other"}`, nil, 400, "invalid_request", "name"},
			{"PUT", "/v1/queues/bi", `{"capacity":-1}`, nil, 400, "invalid_request", "capacity"},
			{"PUT", "/v1/queues/bi", `{"concurrency":"4"}`, nil, 400, "invalid_request", "concurrency"},
			{"PUT", "/v1/queues/bi", `{"max_wait":"soon"}`, nil, 400, "invalid_request", "max_wait"},
			{"PUT", "/v1/queues/bi", `{"rate_limit":-1}`, nil, 400, "invalid_request", "rate_limit"},
			{"PUT", "/v1/queues/bi", `{"idempotency_window":"-1h"}`, nil, 400, "invalid_request", "idempotency_window"},
			{"PUT", "/v1/queues/bi", `{"paused":"yes"}`, nil, 400, "invalid_request", "paused"},
			{"PUT", "/v1/queues/bi", `{"bogus":true}`, nil, 400, "invalid_request", "bogus"},
			{"PUT", "/v1/queues/bi", `{"capacity":5}`, plain, 415, "unsupported_media_type", ""},
			// POST /v1/queues/{name}/pause and /resume
			{"POST", "/v1/queues/nothere/pause", ``, nil, 404, "not_found", ""},
			{"POST", "/v1/queues/nothere/resume", `{}`, nil, 404, "not_found", ""},
			{"POST", "/v1/queues/bi/pause", `{"paused":true}`, nil, 400, "invalid_request", "paused"},
			{"POST", "/v1/queues/bi/resume", `[]`, nil, 400, "invalid_request", ""},
			{"POST", "/v1/queues/bi/resume", `go`, plain, 415, "unsupported_media_type", ""},
			{"GET", "/v1/queues/bi/pause", ``, nil, 405, "method_not_allowed", ""},
			// elsewhere
			{"POST", "/metrics", `{}`, nil, 405, "method_not_allowed", ""},
			{"POST", "/healthz", `{}`, nil, 405, "method_not_allowed", ""},
			{"GET", "/v1/nothing", ``, nil, 404, "not_found", ""},
			{"GET", "/v2/jobs", ``, nil, 404, "not_found", ""},
		} {
			var body any
			if c.body != "" {
				body = c.body
			}
			r := s.request(t, c.method, c.path, body, c.headers)
			e := r.errorBody().Error
			if r.Status != c.status || e.Code != c.code || e.Field != c.field || e.Message == "" {
				t.Errorf("%s %.60s %.60s %v: %.300s; want %d %s field %q", c.method, c.path, c.body, c.headers, r, c.status, c.code, c.field)
			}
			if ct := r.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("%s %.60s: Content-Type %q", c.method, c.path, ct)
			}
			if c.status == 405 && r.Header.Get("Allow") == "" {
				t.Errorf("%s %.60s: 405 without Allow", c.method, c.path)
			}
		}
		// Nothing above reached the queue.
		if r := s.request(t, "GET", "/v1/jobs?queue=bi", nil, nil); r.Status != 200 || !strings.Contains(string(r.Body), `"jobs":[]`) {
			t.Errorf("jobs in queue bi after refused enqueues: %s", r)
		}
	})

	t.Run("BodyTooLarge", func(t *testing.T) {
		t.Parallel()
		big := func(n int) string { return `{"kind":"x","payload":"` + strings.Repeat("a", n) + `"}` }
		if r := s.request(t, "POST", "/v1/queues/big/jobs", big(60000), nil); r.Status != http.StatusCreated {
			t.Errorf("enqueue just under --max-body: %.200s, want 201", r)
		}
		for _, c := range []struct{ method, path, body string }{
			{"POST", "/v1/queues/big/jobs", big(70000)},
			{"PUT", "/v1/queues/big", `{"name":"` + strings.Repeat("b", 70000) + `"}`},
			{"POST", "/v1/jobs/1/cancel", `{` + strings.Repeat(" ", 70000) + `}`},
		} {
			r := s.request(t, c.method, c.path, c.body, nil)
			if r.Status != http.StatusRequestEntityTooLarge || r.errorBody().Error.Code != "payload_too_large" {
				t.Errorf("%s %s with %d bytes: %.200s, want 413 payload_too_large", c.method, c.path, len(c.body), r)
			}
		}
		// Without a Content-Length (chunked), the limit holds while reading.
		req, _ := http.NewRequest("POST", s.url+"/v1/queues/big/jobs", struct{ *strings.Reader }{strings.NewReader(big(70000))})
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/json")
		resp, err := s.http.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestEntityTooLarge || req.ContentLength != 0 {
			t.Errorf("chunked body over the limit: %d (content length %d), want 413", resp.StatusCode, req.ContentLength)
		}
		if r := s.request(t, "GET", "/v1/jobs?queue=big", nil, nil); strings.Count(string(r.Body), `"id":`) != 1 {
			t.Errorf("jobs in queue big: %.300s, want only the one under the limit", r)
		}
	})

	t.Run("QueueFull", func(t *testing.T) {
		t.Parallel()
		for _, q := range []string{"full", "fullbatch"} {
			if r := s.request(t, "PUT", "/v1/queues/"+q, map[string]any{"capacity": 1, "paused": true}, nil); r.Status != http.StatusOK {
				t.Fatalf("PUT queue %s: %s", q, r)
			}
		}
		s.enqueue(t, "full", map[string]any{"kind": "x"})
		r := s.request(t, "POST", "/v1/queues/full/jobs", map[string]any{"kind": "x"}, nil)
		ra, err := strconv.Atoi(r.Header.Get("Retry-After"))
		if r.Status != http.StatusTooManyRequests || r.errorBody().Error.Code != "queue_full" || err != nil || ra < 1 {
			t.Errorf("second job into a queue of capacity 1: %s, Retry-After %q; want 429 queue_full with Retry-After >= 1", r, r.Header.Get("Retry-After"))
		}
		// A batch without room for all of its jobs is refused whole.
		r = s.request(t, "POST", "/v1/queues/fullbatch/jobs", map[string]any{"jobs": []any{map[string]any{"kind": "x"}, map[string]any{"kind": "x"}}}, nil)
		if r.Status != http.StatusTooManyRequests || r.errorBody().Error.Code != "queue_full" || r.Header.Get("Retry-After") == "" {
			t.Errorf("batch of 2 into a queue of capacity 1: %s, want 429 queue_full with Retry-After", r)
		}
		if r := s.request(t, "GET", "/v1/jobs?queue=fullbatch", nil, nil); !strings.Contains(string(r.Body), `"jobs":[]`) {
			t.Errorf("a refused batch left jobs: %s", r)
		}
	})

	// Without --allow-private-targets, loopback and link-local targets are
	// refused at dial time: the job fails for good and nothing is sent.
	t.Run("SSRF", func(t *testing.T) {
		t.Parallel()
		tg := newTarget(t, func(_ *target, w http.ResponseWriter, _ *http.Request, _ *delivery) {
			w.WriteHeader(http.StatusOK)
		})
		port := tg.URL[strings.LastIndex(tg.URL, ":")+1:]
		for _, c := range []struct {
			url  string
			want []string // one of these addresses must be named
		}{
			{"http://127.0.0.1:" + port + "/", []string{"127.0.0.1"}},
			{"http://localhost:" + port + "/hook", []string{"127.0.0.1", "::1"}},
			{"http://[::1]:" + port + "/", []string{"::1"}},
			{"http://[::ffff:127.0.0.1]:" + port + "/", []string{"127.0.0.1"}},
			{"http://169.254.169.254/latest/meta-data/", []string{"169.254.169.254"}},
		} {
			j := s.enqueue(t, "ssrf", httpJob(c.url, map[string]any{"max_attempts": 3, "backoff_min": "10ms", "backoff_max": "20ms"}))
			j = s.waitJob(t, j.ID, 20*time.Second)
			named := slices.ContainsFunc(c.want, func(a string) bool { return strings.Contains(j.LastError, a) })
			if j.State != "failed" || j.Attempt != 1 || !strings.Contains(j.LastError, "not allowed") || !named {
				t.Errorf("%s: %v; want failed at attempt 1, the error naming the refused address (%v)", c.url, j, c.want)
			}
		}
		if n := tg.count(); n != 0 {
			t.Errorf("the loopback target received %d requests, want none", n)
		}
	})
}

// TestE2EOversizedBodyAnswered413 sends bodies over --max-body on
// connections the client closes after one request (Connection: close, as
// HTTP/1.0 clients and many scripts do). Every one must get its 413.
// The server refuses a body whose Content-Length is over the limit without
// reading it; net/http then closes the connection with unread data, the
// kernel answers with a reset, and the client sees "broken pipe" or
// "connection reset" instead of the 413 (a few percent of requests).
func TestE2EOversizedBodyAnswered413(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverOpts{queues: "none", extra: []string{"--max-body", "65536"}})
	c := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	defer c.CloseIdleConnections()
	body := `{"kind":"x","payload":"` + strings.Repeat("a", 70000) + `"}`
	const n = 100
	var lost []string
	for range n {
		req, err := http.NewRequest("POST", s.url+"/v1/queues/big/jobs", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := c.Do(req)
		if err != nil {
			lost = append(lost, err.Error())
			continue
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestEntityTooLarge {
			t.Fatalf("status %d, want 413", resp.StatusCode)
		}
	}
	if len(lost) > 0 {
		t.Errorf("%d of %d oversized requests with Connection: close got no 413 but a network error, such as: %s", len(lost), n, lost[0])
	}
}

// TestE2ERefusesOpenAddressWithoutToken: on an address beyond loopback
// the server does not start without a token.
func TestE2ERefusesOpenAddressWithoutToken(t *testing.T) {
	t.Parallel()
	bin := sluiceBinary(t)
	for _, addr := range []string{"0.0.0.0:" + strconv.Itoa(freePort(t)), ":" + strconv.Itoa(freePort(t))} {
		db := filepath.Join(t.TempDir(), "sluice.db")
		cmd := exec.Command(bin, "serve", "--addr", addr, "--db", "sqlite:"+db)
		cmd.Env = serverEnv()
		out := &syncBuffer{}
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if cmd.ProcessState.ExitCode() == 0 || !strings.Contains(out.String(), "without --token") {
				t.Errorf("--addr %s without a token: %s, output %q; want a non-zero exit saying a token is needed", addr, exitError(err), out)
			}
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
			t.Errorf("--addr %s without a token: still running after 10s; output %q", addr, out)
		}
	}
}

// TestE2EHTTPJobPayloadRefusedAtEnqueue: docs/httptarget.md says a bad
// "http" payload is a *jobs.ValidationError naming the field, which "the
// API answers with 400". sluice serve accepts such jobs (201) and they
// fail only when they run.
func TestE2EHTTPJobPayloadRefusedAtEnqueue(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverOpts{queues: "none"})
	for _, c := range []struct{ payload, field string }{
		{`{"url":"ftp://example.com/x"}`, "payload.url"},
		{`{"method":"POST"}`, "payload.url"},
		{`{"url":"https://example.com/","method":"GET"}`, "payload.method"},
		{`{"url":"https://example.com/","headers":{"Host":"evil"}}`, "payload.headers.Host"},
		{`{"url":"https://example.com/","header":{}}`, "payload"},
		{`"https://example.com/"`, "payload"},
	} {
		r := s.request(t, "POST", "/v1/queues/default/jobs", `{"kind":"http","payload":`+c.payload+`}`, nil)
		if e := r.errorBody().Error; r.Status != http.StatusBadRequest || e.Code != "invalid_request" || !strings.HasPrefix(e.Field, c.field) {
			t.Errorf("http job with payload %s: %.200s; want 400 invalid_request field %s", c.payload, r, c.field)
		}
	}
}

// TestE2EProbesAnswerJSON: docs/api.md documents /healthz as 200
// {"status":"ok"} and /readyz as 200 {"status":"ready"} or 503 not_ready
// with Retry-After. Readiness must go false at SIGTERM, during the drain
// delay, while the server still answers.
func TestE2EProbesAnswerJSON(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverOpts{extra: []string{"--drain-delay", "2s", "--shutdown-timeout", "10s"}})
	for path, want := range map[string]string{"/healthz": "ok", "/readyz": "ready"} {
		r := s.request(t, "GET", path, nil, nil)
		var got struct{ Status string }
		err := json.Unmarshal(r.Body, &got)
		if r.Status != http.StatusOK {
			t.Fatalf("GET %s: %s", path, r)
		}
		if err != nil || got.Status != want || r.Header.Get("Content-Type") != "application/json" {
			t.Errorf("GET %s: %s, Content-Type %q; want {\"status\":%q} in JSON as docs/api.md says", path, r, r.Header.Get("Content-Type"), want)
		}
	}

	s.signal(t, syscall.SIGTERM)
	var r apiResponse
	waitFor(t, 1500*time.Millisecond, func() (bool, string) {
		r = s.request(t, "GET", "/readyz", nil, nil)
		return r.Status == http.StatusServiceUnavailable, "/readyz still " + r.String()
	})
	if h := s.request(t, "GET", "/healthz", nil, nil); h.Status != http.StatusOK {
		t.Errorf("/healthz while draining: %s, want 200", h)
	}
	if e := r.errorBody().Error; e.Code != "not_ready" || r.Header.Get("Retry-After") == "" {
		t.Errorf("/readyz while draining: %s, Retry-After %q; want 503 not_ready in JSON with Retry-After as docs/api.md says", r, r.Header.Get("Retry-After"))
	}
	if code, ok := s.wait(15 * time.Second); !ok || code != 0 {
		t.Errorf("exit after SIGTERM: %d (exited %v), want 0", code, ok)
	}
}

// heldAnswer is the answer to an enqueue that holdEnqueue started.
type heldAnswer struct {
	status int // 0 when the request failed
	body   string
}

// holdEnqueue makes queue a full, paused queue of capacity 1 with the wait
// policy and maxWait, then starts an enqueue into it that waits, and
// returns once that enqueue holds an API slot (seen through /metrics,
// which takes no slot itself). Its answer arrives on the channel.
func holdEnqueue(t *testing.T, s *e2eServer, queue, maxWait string) <-chan heldAnswer {
	t.Helper()
	path := "/v1/queues/" + queue
	if r := s.request(t, "PUT", path, map[string]any{"capacity": 1, "paused": true, "policy": "wait", "max_wait": maxWait}, nil); r.Status != http.StatusOK {
		t.Fatalf("PUT queue: %s", r)
	}
	if r := s.request(t, "POST", path+"/jobs", map[string]any{"kind": "noop"}, nil); r.Status != http.StatusCreated {
		t.Fatalf("first enqueue: %s", r)
	}
	held := make(chan heldAnswer, 1)
	go func() {
		res, err := s.http.Post(s.url+path+"/jobs", "application/json", strings.NewReader(`{"kind":"noop"}`))
		if err != nil {
			held <- heldAnswer{body: err.Error()}
			return
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		held <- heldAnswer{res.StatusCode, string(b)}
	}()
	for deadline := time.Now().Add(4 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		r := s.request(t, "GET", "/metrics", nil, nil)
		if r.Status == http.StatusOK && strings.Contains(string(r.Body), `sluice_api_in_flight{class="default"} 1`) {
			return held
		}
		if time.Now().After(deadline) {
			t.Fatalf("the second enqueue never started waiting: %s", r)
		}
	}
}

// TestE2EMetricsBypassAdmission: while admission control refuses the API
// for want of slots, /metrics, /healthz and /readyz still answer, and
// refusals are not cacheable.
func TestE2EMetricsBypassAdmission(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverOpts{queues: "default", extra: []string{"--max-in-flight", "1"}})
	held := holdEnqueue(t, s, "hold", "3s") // takes the only slot
	refused := s.request(t, "GET", "/v1/queues", nil, nil)
	if refused.Status != http.StatusTooManyRequests {
		t.Fatalf("GET /v1/queues with the only slot taken: %s, want 429", refused)
	}
	if cc := refused.Header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("admission refusal Cache-Control = %q, want no-store", cc)
	}
	for _, path := range []string{"/metrics", "/healthz", "/readyz"} {
		if r := s.request(t, "GET", path, nil, nil); r.Status != http.StatusOK {
			t.Errorf("GET %s while the API is saturated: %s, want 200", path, r)
		} else if path == "/metrics" && r.Header.Get("Cache-Control") != "no-store" {
			t.Errorf("/metrics Cache-Control = %q, want no-store", r.Header.Get("Cache-Control"))
		}
	}
	if a := <-held; a.status != http.StatusTooManyRequests {
		t.Errorf("held enqueue ended %d %s, want 429 (the queue stayed full)", a.status, a.body)
	}
}

// TestE2ESIGTERMEndsWaitingEnqueue: an enqueue waiting on a full queue
// (policy wait) is answered 503 shutting_down when SIGTERM comes, and the
// server exits cleanly at once, instead of the wait holding the drain.
func TestE2ESIGTERMEndsWaitingEnqueue(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverOpts{})
	held := holdEnqueue(t, s, "full", "1m")
	start := time.Now()
	s.signal(t, syscall.SIGTERM)
	select {
	case a := <-held:
		if a.status != http.StatusServiceUnavailable || !strings.Contains(a.body, `"shutting_down"`) {
			t.Errorf("waiting enqueue answered %d %s, want 503 shutting_down", a.status, a.body)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the waiting enqueue got no answer within 10s of SIGTERM")
	}
	if code, ok := s.wait(10 * time.Second); !ok || code != 0 {
		t.Fatalf("exit %d (exited %v), want 0", code, ok)
	}
	t.Logf("answered and exited %v after SIGTERM", time.Since(start).Round(time.Millisecond))
}
