package httptarget_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/sluicehq/sluice/admit"
	"github.com/sluicehq/sluice/httptarget"
	"github.com/sluicehq/sluice/jobs"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var loopback = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}

// target is a test server on 127.0.0.1 that counts its calls.
type target struct {
	*httptest.Server
	calls atomic.Int64
}

func newTarget(t *testing.T, fn http.HandlerFunc) *target {
	t.Helper()
	tg := &target{}
	tg.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tg.calls.Add(1)
		fn(w, r)
	}))
	t.Cleanup(tg.Close)
	return tg
}

// newHandler returns a handler that may call loopback targets.
func newHandler(t *testing.T, cfg httptarget.Config) *httptarget.Handler {
	t.Helper()
	if cfg.AllowPrefixes == nil {
		cfg.AllowPrefixes = loopback
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	h := httptarget.New(cfg)
	t.Cleanup(func() { _ = h.Close() })
	return h
}

func newJob(t *testing.T, req httptarget.Request) *jobs.Job {
	t.Helper()
	p, err := json.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	return &jobs.Job{ID: 42, Attempt: 1, NewJob: jobs.NewJob{Kind: httptarget.Kind, Queue: "default", Payload: p}}
}

func post(url string) httptarget.Request {
	return httptarget.Request{URL: url, Body: json.RawMessage(`{"n":1}`)}
}

func TestSuccessSendsPayloadAndHeaders(t *testing.T) {
	type seen struct {
		method string
		header http.Header
		body   string
	}
	got := make(chan seen, 1)
	tg := newTarget(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- seen{r.Method, r.Header.Clone(), string(b)}
	})
	h := newHandler(t, httptarget.Config{UserAgent: "test-agent"})
	job := newJob(t, httptarget.Request{
		URL: tg.URL + "/hook?x=1", Method: "PUT",
		Headers: map[string]string{"authorization": "Bearer t"},
		Body:    json.RawMessage(`{"order": 7}`),
	})
	job.Attempt = 3
	job.Deadline = time.Now().Add(10 * time.Second)
	ctx, cancel := context.WithDeadline(context.Background(), job.Deadline)
	defer cancel()
	if err := h.Work(ctx, job); err != nil {
		t.Fatalf("Work = %v, want nil", err)
	}
	s := <-got
	if s.method != "PUT" || s.body != `{"order":7}` {
		t.Errorf("method %q body %q", s.method, s.body)
	}
	for name, want := range map[string]string{
		"Idempotency-Key": "sluice-job-42",
		"Sluice-Job-Id":   "42",
		"Sluice-Attempt":  "3",
		"Sluice-Queue":    "default",
		"Content-Type":    "application/json",
		"User-Agent":      "test-agent",
		"Authorization":   "Bearer t",
	} {
		if v := s.header.Get(name); v != want {
			t.Errorf("%s = %q, want %q", name, v, want)
		}
	}
	ms, err := strconv.Atoi(s.header.Get("Sluice-Deadline"))
	if err != nil || ms <= 0 || ms > 10_000 {
		t.Errorf("Sluice-Deadline = %q, want milliseconds in (0, 10000]", s.header.Get("Sluice-Deadline"))
	}
	// A Sluice server on the other end reads it as the same deadline.
	now := time.Now()
	if dl, err := admit.ParseDeadline(s.header.Get("Sluice-Deadline"), now); err != nil || !dl.Equal(now.Add(time.Duration(ms)*time.Millisecond)) {
		t.Errorf("admit.ParseDeadline(%q) = %v, %v", s.header.Get("Sluice-Deadline"), dl, err)
	}

	// The job's own idempotency key wins over the derived one.
	job.IdempotencyKey = "order-7"
	if err := h.Work(context.Background(), job); err != nil {
		t.Fatal(err)
	}
	if s := <-got; s.header.Get("Idempotency-Key") != "order-7" {
		t.Errorf("Idempotency-Key = %q, want the job's key", s.header.Get("Idempotency-Key"))
	}
	st := h.Stats()
	if st.Total.Succeeded != 2 || st.Total.Sent != 2 || len(st.Hosts) != 1 || st.Hosts[0].Breaker != "closed" {
		t.Errorf("stats = %+v", st)
	}
}

func TestOutcomeByStatus(t *testing.T) {
	var redirected atomic.Int64
	tg := newTarget(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/elsewhere" {
			redirected.Add(1)
			return
		}
		code, _ := strconv.Atoi(r.URL.Query().Get("code"))
		if code >= 300 && code < 400 {
			w.Header().Set("Location", "/elsewhere")
		}
		w.WriteHeader(code)
		_, _ = io.WriteString(w, "detail for "+strconv.Itoa(code))
	})
	// A breaker that never opens and no host pauses: each status alone.
	h := newHandler(t, httptarget.Config{Breaker: httptarget.BreakerConfig{Failures: 1000, Window: 1000}, MaxHostPause: -1})
	cases := []struct {
		code      int
		want      string // "ok", "retry", "retry-after", "permanent"
		retryable bool
	}{
		{200, "ok", false}, {201, "ok", false}, {204, "ok", false},
		{301, "permanent", false}, {307, "permanent", false},
		{400, "permanent", false}, {401, "permanent", false}, {404, "permanent", false}, {409, "permanent", false}, {422, "permanent", false},
		{408, "retry", true}, {500, "retry", true}, {502, "retry", true}, {504, "retry", true},
		{429, "retry-after", true}, {503, "retry-after", true},
	}
	for _, c := range cases {
		err := h.Work(context.Background(), newJob(t, post(tg.URL+"/?code="+strconv.Itoa(c.code))))
		var se *httptarget.StatusError
		var ra *httptarget.RetryAfterError
		switch c.want {
		case "ok":
			if err != nil {
				t.Errorf("%d: err = %v, want nil", c.code, err)
			}
			continue
		case "permanent":
			if !jobs.IsPermanent(err) {
				t.Errorf("%d: err = %v, want permanent", c.code, err)
			}
		case "retry":
			if err == nil || jobs.IsPermanent(err) || errors.As(err, &ra) {
				t.Errorf("%d: err = %v, want a plain retryable error", c.code, err)
			}
		case "retry-after":
			if !errors.As(err, &ra) || jobs.IsPermanent(err) || !ra.Sent || ra.NotAttempted() {
				t.Errorf("%d: err = %v, want a sent *RetryAfterError", c.code, err)
			}
		}
		if !errors.As(err, &se) || se.Status != c.code {
			t.Errorf("%d: err = %v, want a *StatusError with the status", c.code, err)
		}
		if c.code < 300 || c.code >= 400 {
			if !strings.Contains(err.Error(), "detail for") {
				t.Errorf("%d: err = %v, want the start of the body", c.code, err)
			}
		} else if !strings.Contains(err.Error(), "not followed") {
			t.Errorf("%d: err = %v, want the redirect named", c.code, err)
		}
	}
	if n := redirected.Load(); n != 0 {
		t.Errorf("redirect followed %d times", n)
	}
}

func TestRetryAfterCarriesTargetsDelay(t *testing.T) {
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	tg := newTarget(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", r.URL.Query().Get("ra"))
		w.WriteHeader(http.StatusTooManyRequests)
	})
	h := newHandler(t, httptarget.Config{
		Now: func() time.Time { return now }, MaxRetryAfter: 10 * time.Minute, MaxHostPause: -1,
		Breaker: httptarget.BreakerConfig{Failures: 100, Window: 100},
	})
	for _, c := range []struct {
		header string
		want   time.Duration
	}{
		{"7", 7 * time.Second},
		{now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second},
		{"86400", 10 * time.Minute}, // capped at MaxRetryAfter
		{now.Add(-time.Minute).Format(http.TimeFormat), 0},
		{"soon", 0},
		{"", 0},
	} {
		err := h.Work(context.Background(), newJob(t, post(tg.URL+"/?ra="+url.QueryEscape(c.header))))
		var ra jobs.RetryAfterer // what the worker looks for
		if !errors.As(err, &ra) || ra.RetryAfter() != c.want {
			t.Errorf("Retry-After %q: err = %v, want RetryAfter %v", c.header, err, c.want)
		}
	}
}

func TestRetryAfterPausesTheHost(t *testing.T) {
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	var busy atomic.Bool
	busy.Store(true)
	tg := newTarget(t, func(w http.ResponseWriter, r *http.Request) {
		if busy.Load() {
			w.Header().Set("Retry-After", "120")
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	})
	h := newHandler(t, httptarget.Config{Now: clock})
	err := h.Work(context.Background(), newJob(t, post(tg.URL)))
	var ra *httptarget.RetryAfterError
	if !errors.As(err, &ra) || ra.Delay != 120*time.Second {
		t.Fatalf("first: %v, want retry after 2m", err)
	}
	// The host's other jobs are held back for at most MaxHostPause (1m).
	err = h.Work(context.Background(), newJob(t, post(tg.URL+"/other")))
	if !errors.Is(err, httptarget.ErrHostPaused) || !errors.As(err, &ra) || ra.Delay != time.Minute || !ra.NotAttempted() {
		t.Fatalf("second: %v, want ErrHostPaused for 1m, not sent", err)
	}
	if n := tg.calls.Load(); n != 1 {
		t.Fatalf("target called %d times, want 1", n)
	}
	busy.Store(false)
	mu.Lock()
	now = now.Add(time.Minute)
	mu.Unlock()
	if err := h.Work(context.Background(), newJob(t, post(tg.URL))); err != nil {
		t.Fatalf("after the pause: %v", err)
	}
}

// hang is a target that answers only when the client gives up or the test
// ends; arrived is signalled for each request.
func hang(t *testing.T, arrived chan<- struct{}) *target {
	release := make(chan struct{})
	tg := newTarget(t, func(w http.ResponseWriter, r *http.Request) {
		if arrived != nil {
			arrived <- struct{}{}
		}
		select {
		case <-r.Context().Done():
		case <-release:
		}
	})
	t.Cleanup(func() { close(release) }) // runs before tg.Close
	return tg
}

func TestAttemptTimeoutFromJobDeadline(t *testing.T) {
	tg := hang(t, nil)
	h := newHandler(t, httptarget.Config{}) // default attempt timeout 30s
	for _, workerCtx := range []bool{true, false} {
		job := newJob(t, post(tg.URL))
		job.Deadline = time.Now().Add(150 * time.Millisecond)
		ctx := context.Background()
		if workerCtx { // as the worker runs it; without, the handler applies the deadline itself
			var cancel context.CancelFunc
			ctx, cancel = context.WithDeadline(ctx, job.Deadline)
			defer cancel()
		}
		start := time.Now()
		err := h.Work(ctx, job)
		took := time.Since(start)
		if !errors.Is(err, httptarget.ErrTimeout) || jobs.IsPermanent(err) {
			t.Fatalf("worker ctx %v: err = %v, want a retryable ErrTimeout", workerCtx, err)
		}
		if took < 100*time.Millisecond || took > 5*time.Second {
			t.Fatalf("worker ctx %v: Work took %v, want about the 150ms left before the deadline", workerCtx, took)
		}
	}
}

func TestAttemptTimeoutOwnBound(t *testing.T) {
	tg := hang(t, nil)
	h := newHandler(t, httptarget.Config{AttemptTimeout: time.Minute})
	job := newJob(t, post(tg.URL))
	job.AttemptTimeout = 100 * time.Millisecond // the handler's bound, with no ctx deadline at all
	start := time.Now()
	err := h.Work(context.Background(), job)
	if !errors.Is(err, httptarget.ErrTimeout) || time.Since(start) > 5*time.Second {
		t.Fatalf("err = %v after %v, want ErrTimeout after about 100ms", err, time.Since(start))
	}
	if st := h.Stats(); st.Total.Retried != 1 || st.Hosts[0].Counts.Sent != 1 {
		t.Errorf("stats = %+v", st.Total)
	}
}

func TestCancelReturnsPromptly(t *testing.T) {
	arrived := make(chan struct{}, 1)
	tg := hang(t, arrived)
	h := newHandler(t, httptarget.Config{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.Work(ctx, newJob(t, post(tg.URL))) }()
	<-arrived
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Work did not return after cancel")
	}
	st := h.Stats()
	if st.Total.Canceled != 1 || st.Hosts[0].Breaker != "closed" {
		t.Errorf("stats = %+v, want one canceled and the breaker untouched", st)
	}
}

func TestBreakerOpensFailsFastAndCloses(t *testing.T) {
	var failing atomic.Bool
	failing.Store(true)
	tg := newTarget(t, func(w http.ResponseWriter, r *http.Request) {
		if failing.Load() {
			w.WriteHeader(http.StatusInternalServerError)
		}
	})
	h := newHandler(t, httptarget.Config{Breaker: httptarget.BreakerConfig{
		Failures: 3, Window: 3, Delay: 100 * time.Millisecond, JitterFactor: -1, Successes: 1,
	}})
	for i := range 3 {
		if err := h.Work(context.Background(), newJob(t, post(tg.URL))); err == nil || jobs.IsPermanent(err) {
			t.Fatalf("call %d: %v, want retryable", i, err)
		}
	}
	start := time.Now()
	err := h.Work(context.Background(), newJob(t, post(tg.URL)))
	var ra *httptarget.RetryAfterError
	if !errors.Is(err, httptarget.ErrCircuitOpen) || !errors.As(err, &ra) || ra.Delay <= 0 || ra.Delay > 100*time.Millisecond || !ra.NotAttempted() {
		t.Fatalf("err = %v, want ErrCircuitOpen with the breaker's remaining delay", err)
	}
	if time.Since(start) > time.Second {
		t.Errorf("open breaker took %v to refuse", time.Since(start))
	}
	if n := tg.calls.Load(); n != 3 {
		t.Fatalf("target called %d times, want 3: an open breaker must not call it", n)
	}
	if st := h.Stats(); st.Hosts[0].Breaker != "open" || st.Total.ShortCircuited != 1 {
		t.Errorf("stats = %+v", st)
	}

	failing.Store(false)
	time.Sleep(ra.Delay) // the breaker's delay itself, not a wait for a goroutine
	if err := h.Work(context.Background(), newJob(t, post(tg.URL))); err != nil {
		t.Fatalf("after the delay: %v, want the trial to succeed", err)
	}
	if n := tg.calls.Load(); n != 4 {
		t.Errorf("target called %d times, want 4", n)
	}
	if st := h.Stats(); st.Hosts[0].Breaker != "closed" {
		t.Errorf("breaker %s after a successful trial, want closed", st.Hosts[0].Breaker)
	}
}

func TestLimiterBoundsConcurrencyToASlowHost(t *testing.T) {
	var cur, peak atomic.Int64
	arrived := make(chan struct{}, 10)
	release := make(chan struct{})
	tg := newTarget(t, func(w http.ResponseWriter, r *http.Request) {
		n := cur.Add(1)
		for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
		}
		arrived <- struct{}{}
		<-release
		cur.Add(-1)
	})
	h := newHandler(t, httptarget.Config{Limiter: httptarget.LimiterConfig{Min: 1, Max: 2, Initial: 2, MaxWait: 20 * time.Millisecond}})
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	for range 2 {
		wg.Go(func() { errs <- h.Work(context.Background(), newJob(t, post(tg.URL))) })
	}
	<-arrived
	<-arrived
	for i := range 3 {
		start := time.Now()
		err := h.Work(context.Background(), newJob(t, post(tg.URL)))
		var ra *httptarget.RetryAfterError
		if !errors.Is(err, httptarget.ErrLimited) || !errors.As(err, &ra) || !ra.NotAttempted() || jobs.IsPermanent(err) {
			t.Fatalf("extra job %d: %v, want retryable ErrLimited", i, err)
		}
		if took := time.Since(start); took > 2*time.Second {
			t.Errorf("extra job %d held its worker %v", i, took)
		}
	}
	if st := h.Stats(); st.Hosts[0].Inflight != 2 || st.Hosts[0].Limit != 2 || st.Total.Limited != 3 {
		t.Errorf("stats = %+v", st)
	}
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("held job: %v", err)
		}
	}
	if p, n := peak.Load(), tg.calls.Load(); p != 2 || n != 2 {
		t.Errorf("peak concurrency %d over %d calls, want 2 and 2", p, n)
	}
}

func TestLoopbackRefusedByDefaultAtDialTime(t *testing.T) {
	tg := newTarget(t, func(http.ResponseWriter, *http.Request) {})
	port := tg.Listener.Addr().(interface{ AddrPort() netip.AddrPort }).AddrPort().Port()
	p := strconv.Itoa(int(port))
	h := httptarget.New(httptarget.Config{Logger: slog.New(slog.DiscardHandler)})
	t.Cleanup(func() { _ = h.Close() })
	for _, u := range []string{
		"http://localhost:" + p + "/", // a name: checked on what it resolves to
		"http://127.0.0.1:" + p + "/",
		"http://[::1]:" + p + "/",
		"http://[::ffff:127.0.0.1]:" + p + "/",
		"http://127.1.2.3:" + p + "/",
	} {
		err := h.Work(context.Background(), newJob(t, post(u)))
		var ae *httptarget.AddressError
		if !jobs.IsPermanent(err) || !errors.Is(err, httptarget.ErrForbiddenAddress) || !errors.As(err, &ae) || ae.Reason == "" {
			t.Errorf("%s: err = %v, want a permanent ErrForbiddenAddress", u, err)
		}
	}
	if n := tg.calls.Load(); n != 0 {
		t.Fatalf("target called %d times, want 0", n)
	}
	if st := h.Stats(); st.Total.Failed != 5 || st.Total.Sent != 0 {
		t.Errorf("stats = %+v", st.Total)
	}

	// The allow-lists let it through: by host name, or by address range.
	for _, cfg := range []httptarget.Config{
		{AllowHosts: []string{"LOCALHOST."}},
		{AllowPrefixes: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}},
		{AllowPrivate: true},
	} {
		cfg.Logger = slog.New(slog.DiscardHandler)
		h := httptarget.New(cfg)
		if err := h.Work(context.Background(), newJob(t, post("http://localhost:"+p+"/"))); err != nil {
			t.Errorf("%+v: %v, want allowed", cfg, err)
		}
		_ = h.Close()
	}
}

func TestBadPayloadFailsForGood(t *testing.T) {
	h := newHandler(t, httptarget.Config{})
	job := newJob(t, httptarget.Request{URL: "ftp://example.com/x"})
	err := h.Work(context.Background(), job)
	var ve *jobs.ValidationError
	if !jobs.IsPermanent(err) || !errors.As(err, &ve) || ve.Field != "payload.url" {
		t.Fatalf("err = %v, want a permanent *jobs.ValidationError on payload.url", err)
	}
}

func TestLargeErrorBodyIsBounded(t *testing.T) {
	tg := newTarget(t, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusBadRequest)
		_, _ = io.WriteString(w, strings.Repeat("x\x00", 1<<20))
	})
	h := newHandler(t, httptarget.Config{MaxResponseBody: 1 << 10})
	err := h.Work(context.Background(), newJob(t, post(tg.URL)))
	var se *httptarget.StatusError
	if !errors.As(err, &se) || len(se.Body) > 256 || strings.ContainsRune(se.Body, 0) {
		t.Fatalf("err = %v, want a short printable body", err)
	}
}
