package admit_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/goleak"

	"github.com/sluicehq/sluice/admit"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fixture is a Limiter in front of a handler whose /hold requests block
// until released one at a time (releaseOne) or all together (releaseAll),
// and whose other requests return at once.
type fixture struct {
	t       *testing.T
	l       *admit.Limiter
	h       http.Handler
	release chan struct{} // the test sends or closes
	served  atomic.Int64  // handler calls
	wg      sync.WaitGroup
}

func newFixture(t *testing.T, cfg admit.Config) *fixture {
	f := &fixture{t: t, l: admit.New(cfg), release: make(chan struct{})}
	f.h = f.l.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.served.Add(1)
		if r.URL.Path == "/hold" {
			<-f.release
		}
		io.WriteString(w, "ok")
	}))
	return f
}

// request builds a GET with the given priority ("" for none) and extra
// header pairs.
func request(path, class string, kv ...string) *http.Request {
	r := httptest.NewRequest("GET", path, nil)
	if class != "" {
		r.Header.Set("Sluice-Priority", class)
	}
	for i := 0; i+1 < len(kv); i += 2 {
		r.Header.Add(kv[i], kv[i+1])
	}
	return r
}

func (f *fixture) do(r *http.Request) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	f.h.ServeHTTP(rec, r)
	return rec
}

// async serves r on a new goroutine; the result arrives on the channel.
func (f *fixture) async(r *http.Request) <-chan *httptest.ResponseRecorder {
	ch := make(chan *httptest.ResponseRecorder, 1)
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		ch <- f.do(r)
	}()
	return ch
}

// hold starts n /hold requests of class and waits (in a synctest bubble)
// until they block in the handler or the queue.
func (f *fixture) hold(class string, n int) []<-chan *httptest.ResponseRecorder {
	var out []<-chan *httptest.ResponseRecorder
	for range n {
		out = append(out, f.async(request("/hold", class)))
	}
	synctest.Wait()
	return out
}

func (f *fixture) releaseAll() {
	close(f.release)
	f.wg.Wait()
}

// errorBody decodes a refusal body.
func errorBody(t *testing.T, rec *httptest.ResponseRecorder) (code, msg string) {
	t.Helper()
	var b struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &b); err != nil {
		t.Fatalf("body %q: %v", rec.Body.String(), err)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q", ct)
	}
	return b.Error.Code, b.Error.Message
}

func expectRefusal(t *testing.T, rec *httptest.ResponseRecorder, status int, code string, retry bool) {
	t.Helper()
	if rec.Code != status {
		t.Fatalf("status = %d, want %d (body %q)", rec.Code, status, rec.Body.String())
	}
	if got, _ := errorBody(t, rec); got != code {
		t.Errorf("code = %q, want %q", got, code)
	}
	if cc := rec.Header().Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control = %q, want no-store", cc)
	}
	ra := rec.Header().Get("Retry-After")
	if !retry {
		if ra != "" {
			t.Errorf("Retry-After = %q, want none", ra)
		}
		return
	}
	if n, err := strconv.Atoi(ra); err != nil || n < 1 {
		t.Errorf("Retry-After = %q, want whole seconds ≥ 1", ra)
	}
	if c := rec.Header().Get("Connection"); c != "" {
		t.Errorf("Connection = %q, want untouched", c)
	}
}

func TestDefaults(t *testing.T) {
	s := admit.New(admit.Config{}).Stats()
	if s.MaxInFlight != 256 || s.Limits != [3]int{128, 230, 256} || s.QueueSize != 0 || s.Draining {
		t.Fatalf("zero Config: %+v", s)
	}
	s = admit.New(admit.Config{MaxInFlight: 100, SheddableShare: 0.29, DefaultShare: 1, MaxQueueWait: time.Second}).Stats()
	if s.Limits != [3]int{29, 100, 100} || s.QueueSize != 50 {
		t.Fatalf("limits %v queue %d", s.Limits, s.QueueSize)
	}
	s = admit.New(admit.Config{MaxInFlight: 1}).Stats()
	if s.Limits != [3]int{1, 1, 1} {
		t.Fatalf("MaxInFlight 1: limits %v", s.Limits)
	}
	for _, cfg := range []admit.Config{
		{SheddableShare: 1.5},
		{DefaultShare: -0.1},
		{SheddableShare: 0.8, DefaultShare: 0.6},
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("New(%+v) did not panic", cfg)
				}
			}()
			admit.New(cfg)
		}()
	}
}

// The bound holds under concurrent load of every class, and every request
// is either served or refused with 429.
func TestBoundHoldsUnderLoad(t *testing.T) {
	const bound, workers, perWorker = 8, 32, 200
	var inside, peak atomic.Int64
	l := admit.New(admit.Config{MaxInFlight: bound})
	h := l.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := inside.Add(1)
		for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
		}
		runtime.Gosched()
		inside.Add(-1)
	}))
	classes := []string{"sheddable", "default", "critical", ""}
	var ok, refused atomic.Int64
	var wg sync.WaitGroup
	for i := range workers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(i), 1))
			for range perWorker {
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, request("/", classes[rng.IntN(len(classes))]))
				switch rec.Code {
				case http.StatusOK:
					ok.Add(1)
				case http.StatusTooManyRequests:
					refused.Add(1)
				default:
					t.Errorf("status %d", rec.Code)
				}
			}
		})
	}
	wg.Wait()
	if p := peak.Load(); p > bound || p < 1 {
		t.Fatalf("peak concurrency %d, bound %d", p, bound)
	}
	s := l.Stats()
	var admitted, refusedStats uint64
	for c := range 3 {
		admitted += s.Admitted[c]
		refusedStats += s.TotalRefused(admit.Class(c))
	}
	if s.TotalInFlight() != 0 || admitted != uint64(ok.Load()) || refusedStats != uint64(refused.Load()) ||
		s.Completed != admitted || ok.Load()+refused.Load() != workers*perWorker {
		t.Fatalf("stats %+v; ok %d refused %d", s, ok.Load(), refused.Load())
	}
	t.Logf("peak %d, served %d, refused %d", peak.Load(), ok.Load(), refused.Load())
}

// With 10 slots the limits are 5 (sheddable), 9 (default), 10 (critical):
// as slots fill, sheddable is refused first, then default, then critical.
func TestSheddableBeforeDefaultBeforeCritical(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t, admit.Config{MaxInFlight: 10})
		probe := func(class string) int { return f.do(request("/", class)).Code }
		expect := func(held int, want map[string]int) {
			t.Helper()
			for class, code := range want {
				if got := probe(class); got != code {
					t.Errorf("%d held: %s probe = %d, want %d", held, class, got, code)
				}
			}
		}
		f.hold("sheddable", 4)
		expect(4, map[string]int{"sheddable": 200, "default": 200, "": 200, "critical": 200})
		f.hold("sheddable", 2) // only one more sheddable fits
		expect(5, map[string]int{"sheddable": 429, "default": 200, "": 200, "critical": 200})
		f.hold("default", 4)
		expect(9, map[string]int{"sheddable": 429, "default": 429, "": 429, "critical": 200})
		f.hold("critical", 1)
		expect(10, map[string]int{"sheddable": 429, "default": 429, "critical": 429})

		s := f.l.Stats()
		if s.InFlight != [3]int{5, 4, 1} {
			t.Errorf("in flight %v", s.InFlight)
		}
		rec := f.do(request("/", "sheddable"))
		expectRefusal(t, rec, http.StatusTooManyRequests, "overloaded", true)
		f.releaseAll()
		if s := f.l.Stats(); s.TotalInFlight() != 0 || s.Refused[admit.ClassSheddable][admit.ReasonOverloaded] != 5 {
			t.Errorf("after: %+v", s)
		}
	})
}

// Retry-After is the number of completions needed before a slot frees
// for the class, divided by the recent completion rate, rounded up.
func TestRetryAfterFromCompletionRate(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// Limits: sheddable 2, default 3, critical 4.
		l := admit.New(admit.Config{MaxInFlight: 4, MaxRetryAfter: 5 * time.Second})
		release := make(chan struct{})
		h := l.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/hold" {
				<-release
				return
			}
			time.Sleep(2 * time.Second)
		}))
		var wg sync.WaitGroup
		if got := l.Stats().CompletionRate; got != 0 {
			t.Fatalf("rate before any completion = %v", got)
		}
		// Four critical clients, each finishing a request every 2s: 2/s.
		for range 4 {
			wg.Go(func() {
				for range 10 {
					h.ServeHTTP(httptest.NewRecorder(), request("/", "critical"))
				}
			})
		}
		wg.Wait()
		if got := l.Stats().CompletionRate; got != 2 {
			t.Fatalf("completion rate = %v, want 2/s", got)
		}
		for range 4 {
			wg.Go(func() { h.ServeHTTP(httptest.NewRecorder(), request("/hold", "critical")) })
		}
		synctest.Wait()
		for class, want := range map[string]string{
			"sheddable": "2", // 4-2+1 = 3 completions at 2/s: 1.5s
			"default":   "1", // 2 completions: 1s
			"critical":  "1", // 1 completion: 0.5s, raised to the floor
		} {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, request("/", class))
			if got := rec.Header().Get("Retry-After"); rec.Code != 429 || got != want {
				t.Errorf("%s: %d Retry-After %q, want 429 %q", class, rec.Code, got, want)
			}
		}
		// Ten seconds without a completion: the rate is unknown, so the floor.
		time.Sleep(10 * time.Second)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, request("/", "sheddable"))
		if got := rec.Header().Get("Retry-After"); got != "1" {
			t.Errorf("unknown rate: Retry-After %q, want 1", got)
		}
		close(release)
		wg.Wait()
	})
}

func TestRetryAfterCapped(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := admit.New(admit.Config{MaxInFlight: 1, MaxRetryAfter: 3 * time.Second})
		for range 21 { // 21 completions over 100s: 0.21/s
			if err := l.Acquire(t.Context(), admit.ClassCritical); err != nil {
				t.Fatal(err)
			}
			time.Sleep(100 * time.Second / 21)
			l.Release(admit.ClassCritical)
		}
		l.Stats() // closes the window
		if err := l.Acquire(t.Context(), admit.ClassCritical); err != nil {
			t.Fatal(err)
		}
		err := l.Acquire(t.Context(), admit.ClassSheddable)
		var re *admit.RefusedError
		if !errors.As(err, &re) || re.RetryAfter != 3*time.Second || admit.RetryAfterSeconds(re.RetryAfter) != 3 {
			t.Fatalf("err = %v, want a RefusedError with RetryAfter 3s", err)
		}
		l.Release(admit.ClassCritical)
	})
}

// countingBody records every Read.
type countingBody struct{ reads atomic.Int32 }

func (b *countingBody) Read(p []byte) (int, error) {
	b.reads.Add(1)
	return 0, io.EOF
}
func (b *countingBody) Close() error { return nil }

// No refusal reads the request body or calls the handler.
func TestRefusalDoesNotReadBody(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t, admit.Config{MaxInFlight: 2})
		f.hold("critical", 2)
		closed := newFixture(t, admit.Config{})
		closed.l.Close()
		cases := []struct {
			name   string
			f      *fixture
			hdr    []string
			status int
			code   string
		}{
			{"overloaded", f, []string{"Sluice-Priority", "default"}, 429, "overloaded"},
			{"draining", closed, nil, 503, "shutting_down"},
			{"bad priority", f, []string{"Sluice-Priority", "urgent"}, 400, "bad_priority"},
			{"bad deadline", f, []string{"Sluice-Deadline", "soon"}, 400, "bad_deadline"},
			{"expired", f, []string{"Sluice-Deadline", "-1s"}, 504, "deadline_exceeded"},
		}
		before := f.served.Load()
		for _, tc := range cases {
			body := &countingBody{}
			r := httptest.NewRequest("POST", "/", body)
			for i := 0; i < len(tc.hdr); i += 2 {
				r.Header.Set(tc.hdr[i], tc.hdr[i+1])
			}
			rec := tc.f.do(r)
			expectRefusal(t, rec, tc.status, tc.code, tc.status == 429 || tc.status == 503)
			if n := body.reads.Load(); n != 0 {
				t.Errorf("%s: body read %d times", tc.name, n)
			}
		}
		if f.served.Load() != before || closed.served.Load() != 0 {
			t.Error("a refused request reached the handler")
		}
		f.releaseAll()
	})
}

func TestPriorityHeader(t *testing.T) {
	f := newFixture(t, admit.Config{})
	for _, v := range []string{"critical", "default", "sheddable"} {
		if rec := f.do(request("/", v)); rec.Code != 200 {
			t.Errorf("%q: %d", v, rec.Code)
		}
	}
	if rec := f.do(request("/", "")); rec.Code != 200 {
		t.Errorf("missing header: %d", rec.Code)
	}
	if s := f.l.Stats(); s.Admitted != [3]uint64{1, 2, 1} {
		t.Errorf("admitted per class %v, want a missing header to count as default", s.Admitted)
	}
	for _, hdr := range [][]string{
		{"Sluice-Priority", "Critical"},
		{"Sluice-Priority", "high"},
		{"Sluice-Priority", ""},
		{"Sluice-Priority", "critical", "Sluice-Priority", "critical"},
	} {
		rec := f.do(request("/", "", hdr...))
		expectRefusal(t, rec, 400, "bad_priority", false)
		if _, msg := errorBody(t, rec); !strings.Contains(msg, "Sluice-Priority") {
			t.Errorf("message %q does not name the header", msg)
		}
	}
	if s := f.l.Stats(); s.Refused[admit.ClassDefault][admit.ReasonBadPriority] != 4 {
		t.Errorf("bad priority count %v", s.Refused)
	}

	// A custom header name, and Classify instead of any header.
	g := newFixture(t, admit.Config{PriorityHeader: "x-tier"})
	g.do(request("/", "", "X-Tier", "critical"))
	if s := g.l.Stats(); s.Admitted[admit.ClassCritical] != 1 {
		t.Errorf("custom header: %v", s.Admitted)
	}
	byPath := admit.New(admit.Config{Classify: func(r *http.Request) admit.Class {
		if strings.HasPrefix(r.URL.Path, "/admin/") {
			return admit.ClassCritical
		}
		return admit.ClassSheddable
	}})
	h := byPath.Middleware(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	h.ServeHTTP(httptest.NewRecorder(), request("/admin/x", "bogus")) // header ignored
	h.ServeHTTP(httptest.NewRecorder(), request("/x", "critical"))
	if s := byPath.Stats(); s.Admitted != [3]uint64{1, 0, 1} {
		t.Errorf("Classify: %v", s.Admitted)
	}

	if c, err := admit.ParseClass("sheddable"); c != admit.ClassSheddable || err != nil {
		t.Errorf("ParseClass: %v %v", c, err)
	}
	if _, err := admit.ParseClass("low"); !errors.Is(err, admit.ErrBadPriority) {
		t.Errorf("ParseClass(low) = %v", err)
	}
}

func TestDeadlineHeader(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var got time.Time
		var hasDeadline bool
		newHandler := func(cfg admit.Config) http.Handler {
			return admit.New(cfg).Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				got, hasDeadline = r.Context().Deadline()
			}))
		}
		h := newHandler(admit.Config{})
		serve := func(h http.Handler, r *http.Request) *httptest.ResponseRecorder {
			got, hasDeadline = time.Time{}, false
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, r)
			return rec
		}
		now := time.Now() // fake time: it does not move while nothing blocks
		abs := now.Add(1500 * time.Millisecond)
		for v, want := range map[string]time.Time{
			"250ms":                      now.Add(250 * time.Millisecond),
			"2s":                         now.Add(2 * time.Second),
			"1m30s":                      now.Add(90 * time.Second),
			abs.Format(time.RFC3339Nano): abs,
			abs.In(time.FixedZone("X", 5*3600)).Format(time.RFC3339Nano): abs,
		} {
			rec := serve(h, request("/", "", "Sluice-Deadline", v))
			if rec.Code != 200 || !hasDeadline || !got.Equal(want) {
				t.Errorf("%q: %d, deadline %v %v, want %v", v, rec.Code, got, hasDeadline, want)
			}
		}
		if serve(h, request("/", "")); hasDeadline {
			t.Error("no header, yet a deadline")
		}
		// An earlier deadline on the incoming context wins.
		ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
		serve(h, request("/", "", "Sluice-Deadline", "5s").WithContext(ctx))
		cancel()
		if !got.Equal(now.Add(100 * time.Millisecond)) {
			t.Errorf("outer deadline: got %v", got)
		}
		// MaxDeadline caps the header.
		serve(newHandler(admit.Config{MaxDeadline: time.Second}), request("/", "", "Sluice-Deadline", "1h"))
		if !got.Equal(now.Add(time.Second)) {
			t.Errorf("capped: got %v", got)
		}
		// "-" turns the header off.
		if rec := serve(newHandler(admit.Config{DeadlineHeader: "-"}), request("/", "", "Sluice-Deadline", "junk")); rec.Code != 200 || hasDeadline {
			t.Errorf("disabled header: %d %v", rec.Code, hasDeadline)
		}

		// A bare integer counts milliseconds, as httptarget sends it.
		for v, want := range map[string]time.Duration{"250": 250 * time.Millisecond, "29999": 29999 * time.Millisecond, "007": 7 * time.Millisecond} {
			if rec := serve(h, request("/", "", "Sluice-Deadline", v)); rec.Code != 200 || !hasDeadline || !got.Equal(now.Add(want)) {
				t.Errorf("%q: status %d, deadline %v, want %v", v, rec.Code, got, now.Add(want))
			}
		}

		for _, v := range []string{"", "soon", "+250", "1 s", "2s ", "1.5", "1234567890123", "2026-13-01T00:00:00Z", "2026-01-02 15:04:05Z", "2026-01-02T15:04:05"} {
			rec := serve(h, request("/", "", "Sluice-Deadline", v))
			expectRefusal(t, rec, 400, "bad_deadline", false)
			if hasDeadline {
				t.Errorf("%q reached the handler", v)
			}
		}
		rec := serve(h, request("/", "", "Sluice-Deadline", "1s", "Sluice-Deadline", "2s"))
		expectRefusal(t, rec, 400, "bad_deadline", false)

		for _, v := range []string{"0s", "0", "-250ms", now.Add(-time.Second).Format(time.RFC3339), now.Format(time.RFC3339Nano)} {
			rec := serve(h, request("/", "", "Sluice-Deadline", v))
			expectRefusal(t, rec, 504, "deadline_exceeded", false)
			if hasDeadline {
				t.Errorf("%q reached the handler", v)
			}
		}

		if _, err := admit.ParseDeadline("tomorrow", now); !errors.Is(err, admit.ErrBadDeadline) {
			t.Errorf("ParseDeadline: %v", err)
		}
	})
}

func TestQueueAdmitsWhenSlotFrees(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t, admit.Config{MaxInFlight: 1, MaxQueueWait: time.Second})
		f.hold("critical", 1)
		start := time.Now()
		res := f.async(request("/", "default"))
		synctest.Wait()
		if s := f.l.Stats(); s.Queued != [3]int{0, 1, 0} {
			t.Errorf("queued %v", s.Queued)
		}
		time.Sleep(300 * time.Millisecond)
		f.release <- struct{}{}
		if rec := <-res; rec.Code != 200 {
			t.Errorf("queued request: %d", rec.Code)
		}
		if d := time.Since(start); d != 300*time.Millisecond {
			t.Errorf("admitted after %v, want 300ms", d)
		}
		f.releaseAll()
	})
}

func TestQueueTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var events []admit.Event
		var mu sync.Mutex
		f := newFixture(t, admit.Config{MaxInFlight: 1, MaxQueueWait: 100 * time.Millisecond, OnRefuse: func(e admit.Event) {
			mu.Lock()
			events = append(events, e)
			mu.Unlock()
		}})
		f.hold("critical", 1)
		start := time.Now()
		rec := f.do(request("/", "default"))
		if d := time.Since(start); d != 100*time.Millisecond {
			t.Errorf("refused after %v, want 100ms", d)
		}
		expectRefusal(t, rec, 429, "overloaded", true)
		if s := f.l.Stats(); s.Refused[admit.ClassDefault][admit.ReasonQueueTimeout] != 1 || s.TotalQueued() != 0 {
			t.Errorf("stats %+v", s)
		}
		if len(events) != 1 || events[0].Reason != admit.ReasonQueueTimeout || events[0].QueueWait != 100*time.Millisecond ||
			events[0].Class != admit.ClassDefault || events[0].Request == nil || events[0].RetryAfter < time.Second {
			t.Errorf("events %+v", events)
		}
		f.releaseAll()
	})
}

// A waiting request leaves at once when its context ends, and a deadline
// header nearer than MaxQueueWait bounds the wait.
func TestQueueLeavesOnContextAndDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t, admit.Config{MaxInFlight: 1, MaxQueueWait: time.Second})
		f.hold("critical", 1)

		ctx, cancel := context.WithCancel(t.Context())
		res := f.async(request("/", "default").WithContext(ctx))
		synctest.Wait()
		start := time.Now()
		cancel()
		expectRefusal(t, <-res, 503, "canceled", false)
		if d := time.Since(start); d != 0 {
			t.Errorf("left after %v", d)
		}

		start = time.Now()
		rec := f.do(request("/", "default", "Sluice-Deadline", "30ms"))
		expectRefusal(t, rec, 504, "deadline_exceeded", false)
		if d := time.Since(start); d != 30*time.Millisecond {
			t.Errorf("expired after %v, want 30ms", d)
		}

		ctx, cancel = context.WithTimeout(t.Context(), 50*time.Millisecond)
		rec = f.do(request("/", "default").WithContext(ctx))
		cancel()
		expectRefusal(t, rec, 504, "deadline_exceeded", false)

		s := f.l.Stats()
		if s.TotalQueued() != 0 || s.Refused[admit.ClassDefault][admit.ReasonCanceled] != 1 || s.Refused[admit.ClassDefault][admit.ReasonExpired] != 2 {
			t.Errorf("stats %+v", s)
		}
		f.releaseAll()
	})
}

// Freed slots go to the most important waiter first, FIFO within a class;
// a full queue evicts the newest waiter of the least important class.
func TestQueuePriorityAndShedding(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var order []string
		var mu sync.Mutex
		l := admit.New(admit.Config{MaxInFlight: 1, MaxQueueWait: time.Minute, QueueSize: 4})
		release := make(chan struct{})
		h := l.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/hold" {
				<-release
				return
			}
			mu.Lock()
			order = append(order, r.URL.Path)
			mu.Unlock()
		}))
		var wg sync.WaitGroup
		codes := make(map[string]int)
		code := func(path string) int {
			mu.Lock()
			defer mu.Unlock()
			return codes[path]
		}
		send := func(path, class string) {
			wg.Go(func() {
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, request(path, class))
				mu.Lock()
				codes[path] = rec.Code
				mu.Unlock()
			})
			synctest.Wait() // fixes the arrival order
		}
		send("/hold", "critical")
		send("/s1", "sheddable")
		send("/d1", "default")
		send("/s2", "sheddable")
		send("/d2", "default")
		// The queue is full (4); a critical request evicts the newest sheddable.
		send("/c1", "critical")
		if code("/s2") != 429 {
			t.Errorf("s2 = %d, want 429 (shed)", code("/s2"))
		}
		// A default request evicts the remaining sheddable one.
		send("/d3", "default")
		// Full again, of requests at least as important: a default is refused.
		send("/d4", "default")
		if code("/s1") != 429 || code("/d4") != 429 {
			t.Errorf("s1 = %d, d4 = %d, want 429 (shed) and 429", code("/s1"), code("/d4"))
		}
		close(release)
		wg.Wait()
		if got := strings.Join(order, " "); got != "/c1 /d1 /d2 /d3" {
			t.Errorf("service order %q", got)
		}
		s := l.Stats()
		if s.Refused[admit.ClassSheddable][admit.ReasonShed] != 2 || s.Refused[admit.ClassDefault][admit.ReasonOverloaded] != 1 {
			t.Errorf("refused %v", s.Refused)
		}
	})
}

func TestSetMaxInFlightAdmitsWaiters(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t, admit.Config{MaxInFlight: 1, MaxQueueWait: time.Second})
		f.hold("critical", 1)
		res := f.async(request("/", "critical"))
		synctest.Wait()
		f.l.SetMaxInFlight(2)
		if rec := <-res; rec.Code != 200 {
			t.Errorf("waiter: %d", rec.Code)
		}
		f.l.SetMaxInFlight(1) // lowering interrupts nothing
		if s := f.l.Stats(); s.MaxInFlight != 1 || s.TotalInFlight() != 1 {
			t.Errorf("stats %+v", s)
		}
		f.releaseAll()
	})
}

// Close refuses new and queued requests with 503 while admitted ones
// finish; Wait returns once they have.
func TestClose(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t, admit.Config{MaxInFlight: 2, MaxQueueWait: time.Minute})
		held := f.hold("critical", 2)
		queued := f.async(request("/", "critical"))
		synctest.Wait()

		var wg sync.WaitGroup
		for range 3 {
			wg.Go(f.l.Close) // idempotent, concurrent
		}
		wg.Wait()
		expectRefusal(t, <-queued, 503, "shutting_down", true)
		rec := f.do(request("/", "critical"))
		expectRefusal(t, rec, 503, "shutting_down", true)
		if ra := rec.Header().Get("Retry-After"); ra != "1" {
			t.Errorf("Retry-After %q", ra)
		}

		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		if err := f.l.Wait(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Wait with requests in flight = %v", err)
		}
		cancel()
		if err := f.l.Quiesce(t.Context()); err != nil {
			t.Error(err)
		}
		f.releaseAll()
		for _, ch := range held {
			if rec := <-ch; rec.Code != 200 {
				t.Errorf("in-flight request: %d", rec.Code)
			}
		}
		if err := f.l.Wait(t.Context()); err != nil {
			t.Errorf("Wait = %v", err)
		}
		s := f.l.Stats()
		if !s.Draining || s.Refused[admit.ClassCritical][admit.ReasonDraining] != 2 {
			t.Errorf("stats %+v", s)
		}
	})
}

func TestWaitOnIdleClosedLimiter(t *testing.T) {
	l := admit.New(admit.Config{})
	l.Close()
	if err := l.Wait(t.Context()); err != nil {
		t.Fatal(err)
	}
}

// A panicking handler's panic reaches the outer handler unchanged, and
// its slot is released.
func TestPanicPropagatesAndReleasesSlot(t *testing.T) {
	l := admit.New(admit.Config{MaxInFlight: 1})
	inner := l.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/abort" {
			panic(http.ErrAbortHandler)
		}
		if r.URL.Path == "/panic" {
			panic("boom")
		}
	}))
	var recovered any
	outer := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() { recovered = recover() }()
		inner.ServeHTTP(w, r)
	})
	for path, want := range map[string]any{"/panic": "boom", "/abort": http.ErrAbortHandler} {
		recovered = nil
		outer.ServeHTTP(httptest.NewRecorder(), request(path, "critical"))
		if recovered != want {
			t.Errorf("%s: recovered %v, want %v", path, recovered, want)
		}
		if n := l.Stats().TotalInFlight(); n != 0 {
			t.Fatalf("%s: %d in flight after the panic", path, n)
		}
	}
	rec := httptest.NewRecorder()
	outer.ServeHTTP(rec, request("/", "critical"))
	if rec.Code != 200 || recovered != nil {
		t.Errorf("after panics: %d %v", rec.Code, recovered)
	}
}

func TestAcquireRelease(t *testing.T) {
	l := admit.New(admit.Config{MaxInFlight: 2})
	ctx := t.Context()
	if err := l.Acquire(ctx, admit.ClassDefault); err != nil {
		t.Fatal(err)
	}
	err := l.Acquire(ctx, admit.ClassSheddable) // limit 1
	var re *admit.RefusedError
	if !errors.Is(err, admit.ErrOverloaded) || !errors.As(err, &re) || re.Reason != admit.ReasonOverloaded ||
		re.Class != admit.ClassSheddable || re.RetryAfter < time.Second {
		t.Fatalf("err = %v", err)
	}
	if !strings.Contains(err.Error(), "sheddable") {
		t.Errorf("message %q", err)
	}
	if err := l.Acquire(ctx, admit.ClassCritical); err != nil {
		t.Fatal(err)
	}
	l.Release(admit.ClassCritical)
	l.Release(admit.ClassDefault)
	func() {
		defer func() {
			if recover() == nil {
				t.Error("Release without Acquire did not panic")
			}
		}()
		l.Release(admit.ClassDefault)
	}()
	l.Close()
	if err := l.Acquire(ctx, admit.ClassCritical); !errors.Is(err, admit.ErrDraining) {
		t.Errorf("after Close: %v", err)
	}
}

func TestReasonTable(t *testing.T) {
	want := map[admit.Reason]struct {
		status int
		code   string
		err    error
	}{
		admit.ReasonOverloaded:   {429, "overloaded", admit.ErrOverloaded},
		admit.ReasonQueueTimeout: {429, "overloaded", admit.ErrOverloaded},
		admit.ReasonShed:         {429, "overloaded", admit.ErrOverloaded},
		admit.ReasonDraining:     {503, "shutting_down", admit.ErrDraining},
		admit.ReasonExpired:      {504, "deadline_exceeded", admit.ErrExpired},
		admit.ReasonCanceled:     {503, "canceled", admit.ErrCanceled},
		admit.ReasonBadPriority:  {400, "bad_priority", admit.ErrBadPriority},
		admit.ReasonBadDeadline:  {400, "bad_deadline", admit.ErrBadDeadline},
	}
	for r, w := range want {
		if r.Status() != w.status || r.Code() != w.code || r.Err() != w.err || r.String() == "" {
			t.Errorf("%v: %d %q %v", r, r.Status(), r.Code(), r.Err())
		}
	}
	err := &admit.RefusedError{Reason: admit.ReasonExpired, Cause: context.DeadlineExceeded}
	if !errors.Is(err, admit.ErrExpired) || !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, admit.ErrOverloaded) {
		t.Error("RefusedError.Is")
	}
}
