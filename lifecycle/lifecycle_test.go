package lifecycle

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	if mode := os.Getenv(testServiceEnv); mode != "" {
		testServiceMain(mode) // the child process of process_test.go; exits
		return
	}
	goleak.VerifyTestMain(m)
}

func quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }

// recorder is a concurrency-safe event log.
type recorder struct {
	mu sync.Mutex
	ev []string
}

func (r *recorder) add(e string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ev = append(r.ev, e)
}

func (r *recorder) events() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.ev)
}

// full is a component that records every operation.
func full(r *recorder, name string) Hook {
	op := func(op string) func(context.Context) error {
		return func(context.Context) error { r.add(op + " " + name); return nil }
	}
	return Hook{OnStart: op("start"), OnQuiesce: op("quiesce"), OnDrain: op("drain"), OnStop: op("stop")}
}

// methodComponent implements Component, Quiescer and Drainer with methods.
type methodComponent struct {
	r    *recorder
	name string
}

func (c *methodComponent) Start(context.Context) error   { c.r.add("start " + c.name); return nil }
func (c *methodComponent) Quiesce(context.Context) error { c.r.add("quiesce " + c.name); return nil }
func (c *methodComponent) Drain(context.Context) error   { c.r.add("drain " + c.name); return nil }
func (c *methodComponent) Stop(context.Context) error    { c.r.add("stop " + c.name); return nil }

func startStop(r *recorder, name string) Hook {
	return Hook{
		OnStart: func(context.Context) error { r.add("start " + name); return nil },
		OnStop:  func(context.Context) error { r.add("stop " + name); return nil },
	}
}

func TestStartFailureRollsBackInReverseOrder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := &recorder{}
		boom := errors.New("boom")
		svc := New(Config{Logger: quiet()})
		svc.Add("a", startStop(r, "a"))
		svc.Add("b", startStop(r, "b"))
		svc.Add("c", Hook{
			OnStart: func(context.Context) error { r.add("start c"); return boom },
			OnStop:  func(context.Context) error { r.add("stop c"); return nil },
		})
		svc.Add("d", startStop(r, "d"))
		if err := svc.Go("queued", func(context.Context) error { r.add("task ran"); return nil }); err != nil {
			t.Fatal(err)
		}

		err := svc.Start(context.Background())
		if !errors.Is(err, boom) {
			t.Fatalf("Start = %v, want boom", err)
		}
		var ce *ComponentError
		if !errors.As(err, &ce) || ce.Name != "c" || ce.Op != OpStart {
			t.Fatalf("Start error = %#v, want ComponentError for start c", ce)
		}
		want := []string{"start a", "start b", "start c", "stop b", "stop a"}
		if got := r.events(); !slices.Equal(got, want) {
			t.Fatalf("events = %q, want %q", got, want)
		}
		if svc.Ready() {
			t.Fatal("Ready after failed start")
		}
		if err2 := svc.Stop(); !errors.Is(err2, boom) {
			t.Fatalf("Stop after failed start = %v, want the start error", err2)
		}
	})
}

func TestStopRunsPhasesInOrder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := &recorder{}
		var phases []Phase
		svc := New(Config{Logger: quiet(), OnPhase: func(p Phase, _ time.Time) { phases = append(phases, p) }})
		svc.Add("db", full(r, "db"))
		svc.Add("workers", &methodComponent{r, "workers"})
		svc.Add("http", full(r, "http"))
		svc.Add("plain", startStop(r, "plain"))
		if err := svc.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		if !svc.Ready() {
			t.Fatal("not Ready after Start")
		}
		if err := svc.Stop(); err != nil {
			t.Fatal(err)
		}
		ev := r.events()
		if want := []string{"start db", "start workers", "start http", "start plain"}; !slices.Equal(ev[:4], want) {
			t.Fatalf("start events = %q, want %q", ev[:4], want)
		}
		// Quiesce and Drain run concurrently within their phase.
		for i, want := range [][]string{
			{"quiesce db", "quiesce http", "quiesce workers"},
			{"drain db", "drain http", "drain workers"},
		} {
			got := slices.Sorted(slices.Values(ev[4+3*i : 7+3*i]))
			if !slices.Equal(got, want) {
				t.Fatalf("phase events = %q, want %q (all: %q)", got, want, ev)
			}
		}
		if want := []string{"stop plain", "stop http", "stop workers", "stop db"}; !slices.Equal(ev[10:], want) {
			t.Fatalf("stop events = %q, want %q", ev[10:], want)
		}
		wantPhases := []Phase{PhaseNotReady, PhaseDrainDelay, PhaseQuiesce, PhaseDrain, PhaseStop, PhaseStopped}
		if !slices.Equal(phases, wantPhases) {
			t.Fatalf("phases = %v, want %v", phases, wantPhases)
		}
	})
}

func TestDrainDelayKeepsServingWhileNotReady(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		type seen struct {
			at    time.Duration
			ready bool
		}
		var t0 time.Time
		var mu sync.Mutex
		phases := map[Phase]seen{}
		var taskCanceledAt time.Duration
		var svc *Service
		svc = New(Config{
			Logger:     quiet(),
			DrainDelay: 5 * time.Second,
			OnPhase: func(p Phase, _ time.Time) {
				mu.Lock()
				defer mu.Unlock()
				phases[p] = seen{time.Since(t0), svc.Ready()}
			},
		})
		if err := svc.Go("worker", func(ctx context.Context) error {
			<-ctx.Done()
			mu.Lock()
			defer mu.Unlock()
			taskCanceledAt = time.Since(t0)
			return ctx.Err()
		}); err != nil {
			t.Fatal(err)
		}
		if err := svc.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		probe := func(h http.Handler) int {
			w := httptest.NewRecorder()
			h.ServeHTTP(w, httptest.NewRequest("GET", "/", nil))
			return w.Code
		}
		if c := probe(svc.ReadyzHandler()); c != http.StatusOK {
			t.Fatalf("readyz before shutdown = %d", c)
		}

		t0 = time.Now()
		svc.Shutdown(nil)
		// Readiness goes false at once, before any phase runs.
		if svc.Ready() || probe(svc.ReadyzHandler()) != http.StatusServiceUnavailable {
			t.Fatal("still ready right after Shutdown")
		}
		if c := probe(svc.HealthzHandler()); c != http.StatusOK {
			t.Fatalf("healthz during shutdown = %d, want 200", c)
		}
		time.Sleep(5*time.Second - time.Nanosecond) // fake clock
		if err := svc.Go("late", func(context.Context) error { return nil }); err != nil {
			t.Fatalf("Go during the drain delay = %v, want accepted", err)
		}
		synctest.Wait()
		mu.Lock()
		_, quiesced := phases[PhaseQuiesce]
		canceled := taskCanceledAt
		mu.Unlock()
		if quiesced || canceled != 0 {
			t.Fatal("stopped accepting before the drain delay ended")
		}
		if err := svc.Wait(); err != nil {
			t.Fatal(err)
		}
		if p := phases[PhaseNotReady]; p.at != 0 || p.ready {
			t.Fatalf("not-ready phase = %+v, want at 0 and not ready", p)
		}
		if p := phases[PhaseQuiesce]; p.at != 5*time.Second {
			t.Fatalf("quiesce began at %v, want exactly 5s", p.at)
		}
		if taskCanceledAt != 5*time.Second {
			t.Fatalf("task context canceled at %v, want 5s", taskCanceledAt)
		}
		if err := svc.Go("too late", func(context.Context) error { return nil }); !errors.Is(err, ErrShuttingDown) {
			t.Fatalf("Go after shutdown = %v, want ErrShuttingDown", err)
		}
	})
}

func TestStuckStopIsAbandonedAndNamed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		defer close(release) // lets the abandoned goroutine end with the bubble
		r := &recorder{}
		svc := New(Config{Logger: quiet(), ShutdownTimeout: 10 * time.Second, Margin: time.Second}) // StopTimeout: 2s
		svc.Add("db", startStop(r, "db"))
		svc.Add("stuck", Hook{OnStop: func(context.Context) error { <-release; return nil }})
		if err := svc.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		t0 := time.Now()
		err := svc.Stop()
		if d := time.Since(t0); d != 3*time.Second {
			t.Fatalf("Stop took %v, want StopTimeout+Margin = 3s", d)
		}
		var te *StopTimeoutError
		if !errors.As(err, &te) || len(te.Stuck) != 1 {
			t.Fatalf("Stop = %v, want StopTimeoutError with one entry", err)
		}
		if s := te.Stuck[0]; s.Name != "stuck" || s.Op != OpStop || !strings.Contains(s.Stack, "TestStuckStopIsAbandonedAndNamed") {
			t.Fatalf("stuck = %+v, want stop of \"stuck\" with its stack", s)
		}
		if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrForced) {
			t.Fatalf("errors.Is mismatch for %v", err)
		}
		if !strings.Contains(err.Error(), `stop "stuck"`) {
			t.Fatalf("error text %q does not name the component", err)
		}
		// The component before it still got its Stop.
		if got := r.events(); !slices.Equal(got, []string{"start db", "stop db"}) {
			t.Fatalf("events = %q", got)
		}
	})
}

func TestShutdownIsBoundedByDeadlinePlusMargin(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		defer close(release)
		r := &recorder{}
		svc := New(Config{Logger: quiet(), ShutdownTimeout: 10 * time.Second, StopTimeout: time.Hour, Margin: time.Second})
		svc.Add("db", startStop(r, "db"))
		svc.Add("stuck", Hook{OnStop: func(ctx context.Context) error {
			if dl, ok := ctx.Deadline(); !ok || time.Until(dl) != 10*time.Second {
				t.Errorf("stop deadline in %v, want the overall 10s", time.Until(dl))
			}
			<-release
			return nil
		}})
		if err := svc.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		t0 := time.Now()
		err := svc.Stop()
		if d := time.Since(t0); d != 11*time.Second {
			t.Fatalf("Stop took %v, want ShutdownTimeout+Margin = 11s", d)
		}
		var te *StopTimeoutError
		if !errors.As(err, &te) || len(te.Stuck) != 2 {
			t.Fatalf("Stop = %v, want 2 stuck", err)
		}
		if s := te.Stuck[1]; s.Name != "db" || s.Stack != "" {
			t.Fatalf("second stuck = %+v, want db never called", s)
		}
		if got := r.events(); !slices.Equal(got, []string{"start db"}) {
			t.Fatalf("events = %q", got)
		}
	})
}

func TestDrainDeadlineCancelsWorkAndNamesStuckTask(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		defer close(release)
		r := &recorder{}
		// Overall 10s, StopTimeout 2s: phase 4 ends at 8s.
		svc := New(Config{Logger: quiet(), ShutdownTimeout: 10 * time.Second, Margin: time.Second})
		svc.Add("db", startStop(r, "db"))
		var t0 time.Time
		var workCanceledAt time.Duration
		if err := svc.Go("worker", func(ctx context.Context) error {
			<-ctx.Done() // stop taking jobs; finish the one in hand under WorkContext
			<-svc.WorkContext().Done()
			workCanceledAt = time.Since(t0)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if err := svc.Go("sloppy", func(context.Context) error { <-release; return nil }); err != nil {
			t.Fatal(err)
		}
		if err := svc.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		t0 = time.Now()
		err := svc.Stop()
		if d := time.Since(t0); d != 9*time.Second {
			t.Fatalf("Stop took %v, want drain end 8s + Margin", d)
		}
		if workCanceledAt != 8*time.Second {
			t.Fatalf("WorkContext canceled at %v, want 8s", workCanceledAt)
		}
		var te *StopTimeoutError
		if !errors.As(err, &te) || len(te.Stuck) != 1 || te.Stuck[0].Name != "sloppy" || te.Stuck[0].Op != OpTask {
			t.Fatalf("Stop = %v, want the task \"sloppy\" named", err)
		}
		if !strings.Contains(te.Stuck[0].Stack, "TestDrainDeadlineCancelsWorkAndNamesStuckTask") {
			t.Fatalf("stack %q lacks the task's function", te.Stuck[0].Stack)
		}
		if got := r.events(); !slices.Equal(got, []string{"start db", "stop db"}) {
			t.Fatalf("events = %q", got)
		}
	})
}

func TestFatalTaskErrorTriggersShutdown(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := &recorder{}
		boom := errors.New("poll failed")
		svc := New(Config{Logger: quiet(), Signals: []os.Signal{}})
		svc.Add("db", startStop(r, "db"))
		if err := svc.Go("poller", func(ctx context.Context) error {
			select {
			case <-time.After(3 * time.Second):
				return boom
			case <-ctx.Done():
				return nil
			}
		}); err != nil {
			t.Fatal(err)
		}
		t0 := time.Now()
		err := svc.Run(context.Background())
		if d := time.Since(t0); d != 3*time.Second {
			t.Fatalf("Run returned after %v, want 3s", d)
		}
		var ce *ComponentError
		if !errors.Is(err, boom) || !errors.As(err, &ce) || ce.Name != "poller" || ce.Op != OpTask {
			t.Fatalf("Run = %v, want the poller's error", err)
		}
		if ExitCode(err) != ExitError {
			t.Fatalf("ExitCode = %d", ExitCode(err))
		}
		if got := r.events(); !slices.Equal(got, []string{"start db", "stop db"}) {
			t.Fatalf("events = %q", got)
		}
	})
}

func TestConcurrentStopIsIdempotent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		boom := errors.New("close failed")
		var stops int
		svc := New(Config{Logger: quiet()})
		svc.Add("db", Hook{OnStop: func(context.Context) error {
			stops++
			time.Sleep(time.Second)
			return boom
		}})
		if err := svc.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		errs := make([]error, 4)
		for i := range errs {
			wg.Go(func() {
				if i == 0 {
					svc.Shutdown(nil)
					errs[i] = svc.Wait()
					return
				}
				errs[i] = svc.Stop()
			})
		}
		wg.Wait()
		for i, err := range errs {
			if !errors.Is(err, boom) || err != errs[0] {
				t.Fatalf("caller %d got %v, want the same error as the others", i, err)
			}
		}
		if stops != 1 {
			t.Fatalf("Stop hook ran %d times", stops)
		}
		if err := svc.Start(context.Background()); !errors.Is(err, ErrShuttingDown) {
			t.Fatalf("Start after Stop = %v", err)
		}
	})
}

func TestStopBeforeStart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := &recorder{}
		svc := New(Config{Logger: quiet()})
		svc.Add("db", startStop(r, "db"))
		if err := svc.Stop(); err != nil {
			t.Fatalf("Stop before Start = %v", err)
		}
		if err := svc.Stop(); err != nil {
			t.Fatalf("second Stop = %v", err)
		}
		if err := svc.Start(context.Background()); !errors.Is(err, ErrShuttingDown) {
			t.Fatalf("Start after Stop = %v", err)
		}
		if err := svc.Run(context.Background()); !errors.Is(err, ErrShuttingDown) {
			t.Fatalf("Run after Stop = %v", err)
		}
		if err := svc.Go("t", func(context.Context) error { return nil }); !errors.Is(err, ErrShuttingDown) {
			t.Fatalf("Go after Stop = %v", err)
		}
		if len(r.events()) != 0 || svc.WorkContext().Err() == nil {
			t.Fatal("stopped service started something or kept its work context")
		}

		cause := errors.New("bad config")
		svc2 := New(Config{Logger: quiet()})
		svc2.Shutdown(cause)
		if err := svc2.Wait(); !errors.Is(err, cause) {
			t.Fatalf("Wait after Shutdown(cause) before Start = %v", err)
		}
	})
}

func TestStuckStartIsAbandoned(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		defer close(release)
		r := &recorder{}
		svc := New(Config{Logger: quiet(), StartTimeout: time.Second, Margin: time.Second})
		svc.Add("db", startStop(r, "db"))
		svc.Add("hung", Hook{OnStart: func(context.Context) error { <-release; return nil }})
		t0 := time.Now()
		err := svc.Start(context.Background())
		if d := time.Since(t0); d != 2*time.Second {
			t.Fatalf("Start returned after %v, want StartTimeout+Margin", d)
		}
		var te *StopTimeoutError
		if !errors.As(err, &te) || len(te.Stuck) != 1 || te.Stuck[0].Name != "hung" || te.Stuck[0].Op != OpStart {
			t.Fatalf("Start = %v, want the start of \"hung\" named", err)
		}
		if got := r.events(); !slices.Equal(got, []string{"start db", "stop db"}) {
			t.Fatalf("events = %q", got)
		}
	})
}

// fakeSignals replaces signal.Notify so that a test can deliver signals
// inside a synctest bubble.
func fakeSignals(svc *Service) (send func(os.Signal)) {
	var c chan<- os.Signal
	registered := make(chan struct{})
	svc.notify = func(ch chan<- os.Signal, _ ...os.Signal) { c = ch; close(registered) }
	svc.stopNotify = func(chan<- os.Signal) {}
	return func(sig os.Signal) { <-registered; c <- sig }
}

func TestSignalDuringStartAbortsCleanly(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := &recorder{}
		svc := New(Config{Logger: quiet()})
		send := fakeSignals(svc)
		svc.Add("db", startStop(r, "db"))
		svc.Add("slow", Hook{OnStart: func(ctx context.Context) error {
			r.add("start slow")
			<-ctx.Done()
			return ctx.Err()
		}, OnStop: func(context.Context) error { r.add("stop slow"); return nil }})
		errc := make(chan error, 1)
		go func() { errc <- svc.Run(context.Background()) }()
		synctest.Wait()
		send(syscall.SIGTERM)
		if err := <-errc; err != nil {
			t.Fatalf("Run = %v, want nil for a signal during start", err)
		}
		if got := r.events(); !slices.Equal(got, []string{"start db", "start slow", "stop db"}) {
			t.Fatalf("events = %q", got)
		}
	})
}

func TestSecondSignalForcesExit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		svc := New(Config{Logger: quiet()})
		send := fakeSignals(svc)
		svc.Add("stuck", Hook{OnStop: func(context.Context) error { <-release; return nil }})
		errc := make(chan error, 1)
		go func() { errc <- svc.Run(context.Background()) }()
		synctest.Wait()
		send(syscall.SIGTERM)
		synctest.Wait() // shutdown is now blocked in the stuck Stop
		time.Sleep(time.Second)
		t0 := time.Now()
		send(syscall.SIGINT)
		err := <-errc
		if d := time.Since(t0); d != 0 {
			t.Fatalf("Run returned %v after the second signal, want at once", d)
		}
		var te *StopTimeoutError
		if !errors.Is(err, ErrForced) || !errors.As(err, &te) || !te.Forced {
			t.Fatalf("Run = %v, want a forced StopTimeoutError", err)
		}
		if len(te.Stuck) != 1 || te.Stuck[0].Name != "stuck" || te.Stuck[0].Op != OpStop || te.Stuck[0].Stack == "" {
			t.Fatalf("stuck = %+v, want the stop of \"stuck\" with a stack", te.Stuck)
		}
		if ExitCode(err) != ExitForced {
			t.Fatalf("ExitCode = %d, want %d", ExitCode(err), ExitForced)
		}
		close(release)
		if err := svc.Wait(); err != nil { // the abandoned shutdown finishes
			t.Fatalf("Wait = %v", err)
		}
	})
}

func TestContextEndIsGracefulShutdown(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := &recorder{}
		svc := New(Config{Logger: quiet(), Signals: []os.Signal{}})
		svc.Add("db", startStop(r, "db"))
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := svc.Run(ctx); err != nil {
			t.Fatalf("Run = %v", err)
		}
		if got := r.events(); !slices.Equal(got, []string{"start db", "stop db"}) {
			t.Fatalf("events = %q", got)
		}
	})
}

func TestAddAfterStartPanics(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		svc := New(Config{Logger: quiet()})
		if err := svc.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		defer func() {
			if recover() == nil {
				t.Error("Add after Start did not panic")
			}
			if err := svc.Stop(); err != nil {
				t.Error(err)
			}
		}()
		svc.Add("late", Hook{})
	})
}

func TestExitCode(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want int
	}{
		{nil, 0},
		{errors.New("x"), 1},
		{&StopTimeoutError{}, 1},
		{errors.Join(errors.New("x"), &StopTimeoutError{Forced: true}), 2},
	} {
		if got := ExitCode(tc.err); got != tc.want {
			t.Errorf("ExitCode(%v) = %d, want %d", tc.err, got, tc.want)
		}
	}
}

func TestParseGoid(t *testing.T) {
	if id := parseGoid([]byte("goroutine 42 [running]:\nmain.main()")); id != 42 {
		t.Fatalf("parseGoid = %d", id)
	}
	if id := parseGoid([]byte("garbage")); id != 0 {
		t.Fatalf("parseGoid(garbage) = %d", id)
	}
	if goid() == 0 {
		t.Fatal("goid() = 0")
	}
}
