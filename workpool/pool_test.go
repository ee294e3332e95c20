package workpool

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// closeNow closes p with a generous deadline and fails the test if it does
// not drain.
func closeNow(t *testing.T, p *Pool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if ret, err := p.Close(ctx); err != nil || len(ret) != 0 {
		t.Fatalf("Close = %d returned, %v; want 0, nil", len(ret), err)
	}
}

// gate is a task that blocks until released (or its context ends).
type gate struct {
	started chan struct{}
	release chan struct{}
}

func newGate() *gate { return &gate{started: make(chan struct{}), release: make(chan struct{})} }

// occupy submits a task (Submit) that holds a worker until the returned
// gate is released, and waits until it runs.
func occupy(t *testing.T, p *Pool) *gate {
	t.Helper()
	g := newGate()
	mustSubmit(t, p, Options{}, g.task)
	<-g.started
	return g
}

// submitGates queues n gated tasks: with Go when light is set (light
// tasks, where the pool allows them), else with Submit.
func submitGates(t *testing.T, p *Pool, n int, light bool) []*gate {
	t.Helper()
	gates := make([]*gate, n)
	for i := range gates {
		gates[i] = newGate()
		if light {
			mustGo(t, p, Options{}, gates[i].task)
		} else {
			mustSubmit(t, p, Options{}, gates[i].task)
		}
	}
	return gates
}

func (g *gate) task(ctx context.Context) error {
	close(g.started)
	select {
	case <-g.release:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func mustSubmit(t *testing.T, p *Pool, o Options, fn func(context.Context) error) *Task {
	t.Helper()
	task, err := p.SubmitOpts(context.Background(), o, fn)
	if err != nil {
		t.Fatalf("SubmitOpts: %v", err)
	}
	return task
}

func nop(context.Context) error { return nil }

func TestBoundedConcurrency(t *testing.T) {
	const workers, tasks = 3, 200
	p := New(Config{Workers: workers, QueueSize: tasks, Policy: Reject})
	var running, peak atomic.Int32
	var handles []*Task
	for range tasks {
		handles = append(handles, mustSubmit(t, p, Options{}, func(context.Context) error {
			n := running.Add(1)
			for {
				old := peak.Load()
				if n <= old || peak.CompareAndSwap(old, n) {
					break
				}
			}
			runtime.Gosched()
			running.Add(-1)
			return nil
		}))
	}
	for _, h := range handles {
		if err := h.Wait(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if got := peak.Load(); got > workers || got < 1 {
		t.Fatalf("peak concurrency %d, want 1..%d", got, workers)
	}
	s := p.Stats()
	if s.Completed != tasks || s.Submitted != tasks || s.Live > workers {
		t.Fatalf("stats %+v", s)
	}
	closeNow(t, p)
}

func TestNoBacklogRejectsAtOnce(t *testing.T) {
	p := New(Config{Workers: 1}) // QueueSize 0, Reject
	g := occupy(t, p)
	_, err := p.Submit(context.Background(), nop)
	var re *RejectError
	if !errors.As(err, &re) || !errors.Is(err, ErrQueueFull) || re.Reason != ReasonQueueFull {
		t.Fatalf("err = %v, want *RejectError queue_full", err)
	}
	if re.RetryAfter <= 0 {
		t.Fatalf("RetryAfter = %v, want > 0", re.RetryAfter)
	}
	if s := p.Stats(); s.Rejected[ReasonQueueFull] != 1 || s.Submitted != 1 {
		t.Fatalf("stats %+v", s)
	}
	close(g.release)
	closeNow(t, p)
}

func TestPriorityOrderFIFOWithinClass(t *testing.T) {
	p := New(Config{Workers: 1, QueueSize: 100})
	g := occupy(t, p)
	var mu sync.Mutex
	var order []string
	rec := func(name string) func(context.Context) error {
		return func(context.Context) error {
			mu.Lock()
			order = append(order, name)
			mu.Unlock()
			return nil
		}
	}
	subs := []struct {
		name string
		prio Priority
	}{{"n1", PriorityNormal}, {"l1", PriorityLow}, {"c1", PriorityCritical}, {"h1", PriorityHigh},
		{"n2", PriorityNormal}, {"l2", PriorityLow}, {"c2", PriorityCritical}, {"h2", PriorityHigh}}
	var last *Task
	for _, s := range subs {
		last = mustSubmit(t, p, Options{Priority: s.prio}, rec(s.name))
	}
	if q := p.Stats().Queued; q != [numClasses]int{2, 2, 2, 2} {
		t.Fatalf("queued per class %v", q)
	}
	close(g.release)
	if err := last.Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	closeNow(t, p)
	want := []string{"c1", "c2", "h1", "h2", "n1", "n2", "l1", "l2"}
	if !slices.Equal(order, want) {
		t.Fatalf("order %v, want %v", order, want)
	}
}

func TestInvalidPriority(t *testing.T) {
	p := New(Config{})
	defer closeNow(t, p)
	for _, prio := range []Priority{PriorityLow - 1, PriorityCritical + 1} {
		if _, err := p.SubmitOpts(context.Background(), Options{Priority: prio}, nop); !errors.Is(err, ErrInvalidPriority) {
			t.Fatalf("priority %d: err = %v", prio, err)
		}
	}
}

func TestWaitPolicyAdmitsWhenSlotFrees(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := New(Config{Workers: 1, QueueSize: 1, Policy: Wait})
		g := occupy(t, p)
		mustSubmit(t, p, Options{}, nop) // fills the queue
		admitted := make(chan *Task)
		go func() {
			task, err := p.Submit(context.Background(), nop)
			if err != nil {
				t.Errorf("waiting Submit: %v", err)
			}
			admitted <- task
		}()
		synctest.Wait()
		if s := p.Stats(); s.Waiting != 1 {
			t.Fatalf("waiting = %d, want 1", s.Waiting)
		}
		time.Sleep(time.Hour) // no max wait: still waiting
		synctest.Wait()
		if s := p.Stats(); s.Waiting != 1 {
			t.Fatalf("after an hour waiting = %d, want 1", s.Waiting)
		}
		close(g.release)
		task := <-admitted
		if err := task.Wait(context.Background()); err != nil {
			t.Fatal(err)
		}
		closeNow(t, p)
	})
}

func TestWaitPolicyMaxWaitAndContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := New(Config{Workers: 1, Policy: Wait, MaxWait: 2 * time.Second})
		g := occupy(t, p)

		start := time.Now()
		_, err := p.Submit(context.Background(), nop)
		if !errors.Is(err, ErrQueueFull) {
			t.Fatalf("err = %v, want ErrQueueFull", err)
		}
		if waited := time.Since(start); waited != 2*time.Second {
			t.Fatalf("waited %v, want exactly MaxWait 2s", waited)
		}

		// A per-task MaxWait overrides the pool's.
		start = time.Now()
		_, err = p.SubmitOpts(context.Background(), Options{MaxWait: 500 * time.Millisecond}, nop)
		if !errors.Is(err, ErrQueueFull) || time.Since(start) != 500*time.Millisecond {
			t.Fatalf("override: err = %v after %v", err, time.Since(start))
		}

		// The submitter's context ends the wait first, and is the cause.
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		start = time.Now()
		_, err = p.Submit(ctx, nop)
		if !errors.Is(err, ErrQueueFull) || !errors.Is(err, context.DeadlineExceeded) || time.Since(start) != 300*time.Millisecond {
			t.Fatalf("ctx: err = %v after %v", err, time.Since(start))
		}
		if s := p.Stats(); s.Rejected[ReasonQueueFull] != 3 || s.Waiting != 0 {
			t.Fatalf("stats %+v", s)
		}
		close(g.release)
		closeNow(t, p)
	})
}

func TestWaitPolicyNoBacklogStartsOnFreeWorker(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := New(Config{Workers: 1, Policy: Wait})
		g := occupy(t, p)
		ran := make(chan struct{})
		go func() {
			task, err := p.Submit(context.Background(), func(context.Context) error { close(ran); return nil })
			if err != nil {
				t.Errorf("Submit: %v", err)
				return
			}
			_ = task.Wait(context.Background())
		}()
		synctest.Wait()
		select {
		case <-ran:
			t.Fatal("ran while the only worker was busy")
		default:
		}
		close(g.release)
		<-ran
		closeNow(t, p)
	})
}

func TestShedLowest(t *testing.T) {
	p := New(Config{Workers: 1, QueueSize: 2, Policy: ShedLowest})
	g := occupy(t, p)
	low1 := mustSubmit(t, p, Options{Priority: PriorityLow}, nop)
	low2 := mustSubmit(t, p, Options{Priority: PriorityLow}, nop)

	high := mustSubmit(t, p, Options{Priority: PriorityHigh}, nop) // evicts low2, the newest low
	<-low2.Done()
	var re *RejectError
	if err := low2.Err(); !errors.As(err, &re) || !errors.Is(err, ErrShed) {
		t.Fatalf("low2 err = %v, want ErrShed", err)
	}
	// Nothing lower than a low task: refused.
	if _, err := p.SubmitOpts(context.Background(), Options{Priority: PriorityLow}, nop); !errors.Is(err, ErrQueueFull) {
		t.Fatalf("low into full queue: %v", err)
	}
	// A normal task evicts low1; a second normal finds nothing lower.
	normal := mustSubmit(t, p, Options{}, nop)
	if err := low1.Wait(context.Background()); !errors.Is(err, ErrShed) {
		t.Fatalf("low1 err = %v", err)
	}
	if _, err := p.Submit(context.Background(), nop); !errors.Is(err, ErrQueueFull) {
		t.Fatalf("normal into queue of high+normal: %v", err)
	}
	// A per-task Reject override never sheds.
	if _, err := p.SubmitOpts(context.Background(), Options{Priority: PriorityCritical, Policy: Reject}, nop); !errors.Is(err, ErrQueueFull) {
		t.Fatalf("critical with Reject override: %v", err)
	}
	close(g.release)
	for _, h := range []*Task{high, normal} {
		if err := h.Wait(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	closeNow(t, p)
	if s := p.Stats(); s.Shed != 2 || s.Rejected[ReasonQueueFull] != 3 || s.Completed != 3 {
		t.Fatalf("stats %+v", s)
	}
}

func TestQueuedTaskExpiresPromptly(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := New(Config{Workers: 1, QueueSize: 10})
		g := occupy(t, p)

		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		var ran atomic.Bool
		start := time.Now()
		task, err := p.Submit(ctx, func(context.Context) error { ran.Store(true); return nil })
		if err != nil {
			t.Fatal(err)
		}
		cctx, ccancel := context.WithCancel(context.Background())
		canceled, err := p.Submit(cctx, func(context.Context) error { ran.Store(true); return nil })
		if err != nil {
			t.Fatal(err)
		}
		ccancel()
		if err := canceled.Wait(context.Background()); !errors.Is(err, ErrExpired) || !errors.Is(err, context.Canceled) {
			t.Fatalf("canceled task: %v", err)
		}
		<-task.Done()
		if d := time.Since(start); d != time.Second {
			t.Fatalf("expired after %v, want at its deadline (1s) while the worker is busy", d)
		}
		if err := task.Err(); !errors.Is(err, ErrExpired) || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err = %v", err)
		}
		if s := p.Stats(); s.TotalQueued() != 0 || s.Expired != 2 {
			t.Fatalf("stats %+v", s)
		}
		close(g.release)
		closeNow(t, p)
		if ran.Load() {
			t.Fatal("an expired task ran")
		}
	})
}

func TestSubmitWithEndedContext(t *testing.T) {
	p := New(Config{})
	defer closeNow(t, p)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := p.Submit(ctx, nop); !errors.Is(err, ErrExpired) || !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v", err)
	}
	if s := p.Stats(); s.Rejected[ReasonExpired] != 1 || s.Submitted != 0 {
		t.Fatalf("stats %+v", s)
	}
}

func TestMaxQueueWait(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := New(Config{Workers: 1, QueueSize: 10, MaxQueueWait: 3 * time.Second})
		g := occupy(t, p)
		start := time.Now()
		poolBound := mustSubmit(t, p, Options{}, nop)
		ownBound := mustSubmit(t, p, Options{MaxQueueWait: time.Second}, nop)
		unbounded := mustSubmit(t, p, Options{MaxQueueWait: -1}, nop)
		<-ownBound.Done()
		if d := time.Since(start); d != time.Second || !errors.Is(ownBound.Err(), ErrQueueTimeout) {
			t.Fatalf("own bound: %v after %v", ownBound.Err(), d)
		}
		<-poolBound.Done()
		if d := time.Since(start); d != 3*time.Second || !errors.Is(poolBound.Err(), ErrExpired) {
			t.Fatalf("pool bound: %v after %v", poolBound.Err(), d)
		}
		time.Sleep(time.Hour)
		close(g.release)
		if err := unbounded.Wait(context.Background()); err != nil {
			t.Fatalf("unbounded: %v", err)
		}
		closeNow(t, p)
	})
}

func TestCoDelDropsOnlyWhenQueueStands(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const target, interval = 5 * time.Millisecond, 100 * time.Millisecond
		p := New(Config{Workers: 1, QueueSize: 1000, CoDelTarget: target, CoDelInterval: interval})
		// Each task takes 10ms, so a backlog of 50 stands for 500ms.
		slow := func(context.Context) error { time.Sleep(10 * time.Millisecond); return nil }
		var handles []*Task
		for range 50 {
			handles = append(handles, mustSubmit(t, p, Options{}, slow))
		}
		var ok, dropped int
		for _, h := range handles {
			switch err := h.Wait(context.Background()); {
			case err == nil:
				ok++
			case errors.Is(err, ErrStandingQueue) && errors.Is(err, ErrExpired):
				dropped++
			default:
				t.Fatalf("unexpected outcome %v", err)
			}
		}
		if dropped == 0 || ok == 0 {
			t.Fatalf("ok %d, dropped %d: want both > 0", ok, dropped)
		}
		// Tasks that run within the target are never dropped: an idle pool
		// handles a trickle.
		for range 5 {
			time.Sleep(time.Second)
			if err := mustSubmit(t, p, Options{}, slow).Wait(context.Background()); err != nil {
				t.Fatalf("trickle task: %v", err)
			}
		}
		closeNow(t, p)
	})
}

func TestRunningTaskCanceledWithSubmitter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := New(Config{Workers: 1})
		ctx, cancel := context.WithCancel(context.WithValue(context.Background(), ctxKey{}, "v"))
		g := newGate()
		var sawValue atomic.Bool
		task, err := p.Submit(ctx, func(ctx context.Context) error {
			sawValue.Store(ctx.Value(ctxKey{}) == "v")
			return g.task(ctx)
		})
		if err != nil {
			t.Fatal(err)
		}
		<-g.started
		cancel()
		if err := task.Wait(context.Background()); !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v", err)
		}
		if !sawValue.Load() {
			t.Fatal("task context lost the submitter's values")
		}
		closeNow(t, p)
	})
}

type ctxKey struct{}

func TestPanicRecoveredWithStackAndPoolKeepsSize(t *testing.T) {
	var hookErr atomic.Pointer[PanicError]
	p := New(Config{Workers: 2, QueueSize: 10, Hooks: Hooks{OnPanic: func(e Event) {
		var pe *PanicError
		if errors.As(e.Err, &pe) {
			hookErr.Store(pe)
		}
	}}})
	task := mustSubmit(t, p, Options{}, panicky)
	err := task.Wait(context.Background())
	var pe *PanicError
	if !errors.As(err, &pe) || pe.Value != "boom" {
		t.Fatalf("err = %v, want *PanicError boom", err)
	}
	if !strings.Contains(string(pe.Stack), "panicky") {
		t.Fatalf("stack does not name the panicking function:\n%s", pe.Stack)
	}
	if hookErr.Load() == nil {
		t.Fatal("OnPanic not called")
	}
	// The pool still runs two at once.
	g1, g2 := newGate(), newGate()
	mustSubmit(t, p, Options{}, g1.task)
	mustSubmit(t, p, Options{}, g2.task)
	<-g1.started
	<-g2.started
	if s := p.Stats(); s.Live != 2 || s.Panicked != 1 {
		t.Fatalf("stats %+v", s)
	}
	close(g1.release)
	close(g2.release)
	closeNow(t, p)
}

func panicky(context.Context) error { panic("boom") }

func TestGoexitReplacesWorker(t *testing.T) {
	p := New(Config{Workers: 1, QueueSize: 10})
	g := occupy(t, p)
	exits := mustSubmit(t, p, Options{}, func(context.Context) error { runtime.Goexit(); return nil })
	after := mustSubmit(t, p, Options{}, nop)
	close(g.release)
	if err := exits.Wait(context.Background()); !errors.Is(err, ErrGoexit) {
		t.Fatalf("err = %v, want ErrGoexit", err)
	}
	if err := after.Wait(context.Background()); err != nil {
		t.Fatalf("task after Goexit: %v", err)
	}
	if s := p.Stats(); s.Live != 1 || s.Failed != 1 || s.Completed != 2 {
		t.Fatalf("stats %+v", s)
	}
	closeNow(t, p)
}

func TestCloseDrainsQueue(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := New(Config{Workers: 2, QueueSize: 100})
		var done atomic.Int32
		for range 20 {
			mustSubmit(t, p, Options{}, func(context.Context) error {
				time.Sleep(100 * time.Millisecond)
				done.Add(1)
				return nil
			})
		}
		start := time.Now()
		ret, err := p.Close(context.Background())
		if err != nil || len(ret) != 0 || done.Load() != 20 {
			t.Fatalf("Close = %d, %v; done %d", len(ret), err, done.Load())
		}
		if d := time.Since(start); d != time.Second {
			t.Fatalf("drain took %v, want 1s (20 tasks x 100ms / 2 workers)", d)
		}
		if _, err := p.Submit(context.Background(), nop); !errors.Is(err, ErrClosed) {
			t.Fatalf("Submit after Close: %v", err)
		}
	})
}

func TestCloseHardStopHandsBackUnstarted(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := New(Config{Workers: 2, QueueSize: 10})
		g1, g2 := newGate(), newGate()
		r1 := mustSubmit(t, p, Options{Tag: "r1"}, g1.task)
		r2 := mustSubmit(t, p, Options{Tag: "r2"}, g2.task)
		<-g1.started
		<-g2.started
		var queued []*Task
		for i := range 5 {
			queued = append(queued, mustSubmit(t, p, Options{Tag: i}, nop))
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		// Three concurrent Close calls: the one with the deadline hands back
		// the unstarted tasks, the others get none.
		var wg sync.WaitGroup
		results := make([][]*Task, 3)
		errs := make([]error, 3)
		for i := range 3 {
			cctx := context.Background()
			if i == 0 {
				cctx = ctx
			}
			wg.Go(func() { results[i], errs[i] = p.Close(cctx) })
		}
		start := time.Now()
		wg.Wait()
		if d := time.Since(start); d != 2*time.Second {
			t.Fatalf("Close returned after %v, want at the 2s deadline", d)
		}
		if !errors.Is(errs[0], context.DeadlineExceeded) || errs[1] != nil || errs[2] != nil {
			t.Fatalf("errs %v", errs)
		}
		if len(results[1])+len(results[2]) != 0 || !slices.Equal(results[0], queued) {
			t.Fatalf("returned %v / %v / %v, want the 5 queued tasks once", results[0], results[1], results[2])
		}
		for _, q := range queued {
			if err := q.Err(); !errors.Is(err, ErrClosed) {
				t.Fatalf("unstarted task err = %v", err)
			}
		}
		for _, r := range []*Task{r1, r2} {
			if err := r.Err(); !errors.Is(err, context.Canceled) {
				t.Fatalf("running task %v err = %v, want canceled", r.Tag(), err)
			}
		}
		if s := p.Stats(); s.Returned != 5 || s.Failed != 2 || s.Live != 0 {
			t.Fatalf("stats %+v", s)
		}
	})
}

func TestCloseNeverUsedAndIdempotent(t *testing.T) {
	p := New(Config{})
	for range 3 {
		closeNow(t, p)
	}
	if s := p.Stats(); s.Live != 0 {
		t.Fatalf("stats %+v", s)
	}
}

func TestCloseRefusesWaitingSubmitters(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := New(Config{Workers: 1, Policy: Wait})
		g := occupy(t, p)
		errc := make(chan error)
		go func() {
			_, err := p.Submit(context.Background(), nop)
			errc <- err
		}()
		synctest.Wait()
		closed := make(chan struct{})
		go func() { closeNow(t, p); close(closed) }()
		if err := <-errc; !errors.Is(err, ErrClosed) {
			t.Fatalf("waiting submitter got %v, want ErrClosed", err)
		}
		close(g.release)
		<-closed
	})
}

// TestCloseUnderSubmitLoad checks that Close is atomic: every task is
// either refused with ErrClosed or accepted, and every accepted task either
// ran or was handed back, with the counters adding up.
func TestCloseUnderSubmitLoad(t *testing.T) {
	p := New(Config{Workers: 4, QueueSize: 64, Policy: Wait})
	var ran atomic.Int64
	var accepted, refused atomic.Int64
	var mu sync.Mutex
	var handles []*Task
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				task, err := p.Submit(context.Background(), func(ctx context.Context) error {
					ran.Add(1)
					runtime.Gosched()
					return nil
				})
				switch {
				case err == nil:
					accepted.Add(1)
					mu.Lock()
					handles = append(handles, task)
					mu.Unlock()
				case errors.Is(err, ErrClosed):
					refused.Add(1)
					return
				default:
					t.Errorf("Submit: %v", err)
					return
				}
			}
		})
	}
	for p.Stats().Completed < 1000 {
		runtime.Gosched()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Microsecond)
	defer cancel()
	returned, _ := p.Close(ctx)
	close(stop)
	wg.Wait()
	s := p.Stats()
	if got := uint64(ran.Load()) + uint64(len(returned)); got != uint64(accepted.Load()) || s.Submitted != uint64(accepted.Load()) {
		t.Fatalf("accepted %d, ran %d + returned %d; stats %+v", accepted.Load(), ran.Load(), len(returned), s)
	}
	if s.Completed+s.Returned != s.Submitted || s.Running != 0 || s.TotalQueued() != 0 {
		t.Fatalf("counters do not add up: %+v", s)
	}
	for _, h := range handles {
		select {
		case <-h.Done():
		default:
			t.Fatal("an accepted task never resolved")
		}
	}
	if refused.Load() == 0 {
		t.Log("no submitter was refused (Close won every race)")
	}
}

func TestRetryAfterFollowsDrainRate(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// One worker, 100ms tasks: 10 tasks/s. A full queue of 10 drains in
		// about 1.1s counting the newcomer.
		p := New(Config{Workers: 1, QueueSize: 10})
		work := func(context.Context) error { time.Sleep(100 * time.Millisecond); return nil }
		var last *RejectError
		// Completions and this submitter's samples fall on the same fake
		// instants; synctest.Wait after each sleep lets every worker woken
		// at that instant finish first, so the drain-rate windows (and the
		// estimate) do not depend on the order goroutines run in, and the
		// bounds can be tight.
		for range 100 { // keep the queue full for 5 seconds
			for {
				_, err := p.Submit(context.Background(), work)
				if err == nil {
					continue
				}
				if !errors.As(err, &last) {
					t.Fatal(err)
				}
				break
			}
			time.Sleep(50 * time.Millisecond)
			synctest.Wait()
		}
		if last.RetryAfter < 1000*time.Millisecond || last.RetryAfter > 1200*time.Millisecond {
			t.Fatalf("RetryAfter = %v, want about 1.1s", last.RetryAfter)
		}
		p.SetWorkers(10) // drain rate rises tenfold
		for range 40 {
			for {
				_, err := p.Submit(context.Background(), work)
				if err == nil {
					continue
				}
				errors.As(err, &last)
				break
			}
			time.Sleep(50 * time.Millisecond)
			synctest.Wait()
		}
		if last.RetryAfter < 100*time.Millisecond || last.RetryAfter > 120*time.Millisecond {
			t.Fatalf("after SetWorkers(10) RetryAfter = %v, want about 110ms", last.RetryAfter)
		}
		closeNow(t, p)
	})
}

func TestSetWorkersAndQueueSize(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := New(Config{Workers: 1, QueueSize: 10})
		gates := submitGates(t, p, 4, false)
		synctest.Wait()
		if s := p.Stats(); s.Running != 1 || s.TotalQueued() != 3 {
			t.Fatalf("stats %+v", s)
		}
		p.SetWorkers(3)
		synctest.Wait()
		if s := p.Stats(); s.Running != 3 || s.Live != 3 || s.TotalQueued() != 1 {
			t.Fatalf("after grow: %+v", s)
		}
		p.SetWorkers(1)
		for _, g := range gates[:3] {
			close(g.release)
		}
		synctest.Wait()
		if s := p.Stats(); s.Live != 1 || s.Running != 1 || s.Completed != 3 {
			t.Fatalf("after shrink: %+v", s)
		}
		// Queue bound: lower below the backlog refuses new work; raising it admits.
		p.SetQueueSize(0)
		if _, err := p.Submit(context.Background(), nop); !errors.Is(err, ErrQueueFull) {
			t.Fatalf("Submit with QueueSize 0 and busy worker: %v", err)
		}
		p.SetQueueSize(1)
		task := mustSubmit(t, p, Options{}, nop)
		close(gates[3].release)
		if err := task.Wait(context.Background()); err != nil {
			t.Fatal(err)
		}
		closeNow(t, p)
	})
}

func TestHooksReportDurations(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		var events []string
		rec := func(kind string) func(Event) {
			return func(e Event) {
				mu.Lock()
				defer mu.Unlock()
				events = append(events, fmt.Sprintf("%s %v wait=%v run=%v reason=%v", kind, e.Tag, e.QueueWait, e.Run, e.Reason))
			}
		}
		p := New(Config{Workers: 1, QueueSize: 1, Hooks: Hooks{
			OnStart: rec("start"), OnFinish: rec("finish"), OnReject: rec("reject"),
		}})
		sleep := func(d time.Duration) func(context.Context) error {
			return func(context.Context) error { time.Sleep(d); return nil }
		}
		mustSubmit(t, p, Options{Tag: "a"}, sleep(time.Second))
		b := mustSubmit(t, p, Options{Tag: "b"}, sleep(2*time.Second))
		synctest.Wait() // a has started
		if _, err := p.SubmitOpts(context.Background(), Options{Tag: "c"}, nop); err == nil {
			t.Fatal("c accepted into a full queue")
		}
		_ = b.Wait(context.Background())
		closeNow(t, p)
		want := []string{
			"start a wait=0s run=0s reason=queue_full",
			"reject c wait=0s run=0s reason=queue_full",
			"finish a wait=0s run=1s reason=queue_full",
			"start b wait=1s run=0s reason=queue_full",
			"finish b wait=1s run=2s reason=queue_full",
		}
		if !slices.Equal(events, want) {
			t.Fatalf("events:\n%s\nwant:\n%s", strings.Join(events, "\n"), strings.Join(want, "\n"))
		}
	})
}

func TestSubmitResult(t *testing.T) {
	p := New(Config{})
	defer closeNow(t, p)
	r, err := SubmitResult(context.Background(), p, Options{}, func(context.Context) (int, error) { return 42, nil })
	if err != nil {
		t.Fatal(err)
	}
	if v, err := r.Wait(context.Background()); v != 42 || err != nil {
		t.Fatalf("Wait = %d, %v", v, err)
	}
	boom := errors.New("boom")
	rs, err := SubmitResult(context.Background(), p, Options{}, func(context.Context) (string, error) { return "partial", boom })
	if err != nil {
		t.Fatal(err)
	}
	if v, err := rs.Wait(context.Background()); v != "partial" || err != boom {
		t.Fatalf("Wait = %q, %v", v, err)
	}
}

func TestTaskWaitHonorsContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := New(Config{Workers: 1})
		g := newGate()
		task := mustSubmit(t, p, Options{}, g.task)
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if err := task.Wait(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Wait = %v", err)
		}
		close(g.release)
		if err := task.Wait(context.Background()); err != nil {
			t.Fatal(err)
		}
		closeNow(t, p)
	})
}

// TestWaitAdmittedAsContextEnds races a waiting submitter's admission with
// the end of its context: the test cancels the context, which wakes the
// submitter, and at once admits it (raising the queue bound, or the worker
// bound when there is no queue, both of which admit on the caller's
// goroutine), usually before the woken submitter has looked. Whichever comes
// first, the outcome must agree with the pool's accounting. Wait records are recycled, so the test also checks that the
// next submitter really waits: a stale wake-up left in a recycled record
// would let it through.
func TestWaitAdmittedAsContextEnds(t *testing.T) {
	const rounds = 64
	for _, queue := range []int{0, 1} {
		t.Run(fmt.Sprintf("queue=%d", queue), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				p := New(Config{Workers: 1, QueueSize: queue, Policy: Wait})
				// fill occupies the worker and the queue; release undoes it.
				fill := func() (release func()) {
					g := occupy(t, p)
					if queue > 0 {
						mustSubmit(t, p, Options{}, nop)
					}
					return func() { close(g.release) }
				}
				admit := func() {
					if queue > 0 {
						p.SetQueueSize(queue + 1)
					} else {
						p.SetWorkers(2)
					}
				}
				restore := func() {
					p.SetQueueSize(queue)
					p.SetWorkers(1)
				}
				var accepted, refused int
				for range rounds {
					release := fill()
					ctx, cancel := context.WithCancel(context.Background())
					type result struct {
						task *Task
						err  error
					}
					res := make(chan result, 1)
					go func() {
						task, err := p.Submit(ctx, nop)
						res <- result{task, err}
					}()
					synctest.Wait()
					if s := p.Stats(); s.Waiting != 1 {
						t.Fatalf("waiting = %d, want 1", s.Waiting)
					}
					cancel()
					admit()
					r := <-res
					switch {
					case r.err == nil:
						accepted++
						if err := r.task.Wait(context.Background()); err != nil && !errors.Is(err, ErrExpired) {
							t.Fatalf("admitted task: %v", err)
						}
					case errors.Is(r.err, ErrQueueFull) && errors.Is(r.err, context.Canceled):
						refused++
					default:
						t.Fatalf("Submit: %v", r.err)
					}
					release()
					synctest.Wait()
					restore()
					synctest.Wait()
					if s := p.Stats(); s.Waiting != 0 || s.Running != 0 || s.TotalQueued() != 0 {
						t.Fatalf("after the round: %+v", s)
					}
				}
				if s := p.Stats(); accepted+refused != rounds || s.Rejected[ReasonQueueFull] != uint64(refused) {
					t.Fatalf("accepted %d, refused %d of %d; stats %+v", accepted, refused, rounds, s)
				}

				// The rounds' wait records are recycled: the next wait must block.
				release := fill()
				done := make(chan error, 1)
				go func() {
					_, err := p.Submit(context.Background(), nop)
					done <- err
				}()
				synctest.Wait()
				select {
				case err := <-done:
					t.Fatalf("Submit returned %v while the pool was full", err)
				default:
				}
				release()
				if err := <-done; err != nil {
					t.Fatal(err)
				}
				closeNow(t, p)
			})
		})
	}
}

// TestGoWaitPolicyUnderLoad hammers Go with many submitters blocked by the
// Wait policy. Go's tasks are recycled as soon as they finish, which must
// never confuse a submitter still waking from its wait: every task runs
// exactly once and none is refused.
func TestGoWaitPolicyUnderLoad(t *testing.T) {
	const users, each = 50, 400
	p := New(Config{Workers: 4, QueueSize: 8, Policy: Wait})
	var ran atomic.Int64
	var wg sync.WaitGroup
	for range users {
		wg.Go(func() {
			for range each {
				if err := p.Go(context.Background(), func(context.Context) error { ran.Add(1); return nil }); err != nil {
					t.Errorf("Go: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
	closeNow(t, p)
	s := p.Stats()
	if ran.Load() != users*each || s.Submitted != users*each || s.Completed != users*each {
		t.Fatalf("ran %d; stats %+v; want %d each", ran.Load(), s, users*each)
	}
}

func TestGoReportsOutcomesToHooksAndStats(t *testing.T) {
	var panics atomic.Int32
	p := New(Config{Workers: 2, QueueSize: 10, Hooks: Hooks{OnPanic: func(Event) { panics.Add(1) }}})
	if err := p.Go(context.Background(), nop); err != nil {
		t.Fatal(err)
	}
	if err := p.GoOpts(context.Background(), Options{Priority: PriorityHigh}, func(context.Context) error { return errors.New("x") }); err != nil {
		t.Fatal(err)
	}
	if err := p.Go(context.WithValue(context.Background(), ctxKey{}, 1), panicky); err != nil {
		t.Fatal(err)
	}
	closeNow(t, p)
	if s := p.Stats(); s.Completed != 1 || s.Failed != 1 || s.Panicked != 1 || panics.Load() != 1 {
		t.Fatalf("stats %+v, panics %d", s, panics.Load())
	}
	if err := p.Go(context.Background(), nop); !errors.Is(err, ErrClosed) {
		t.Fatalf("Go after Close: %v", err)
	}
}

func TestCloseWithEndedContextOnIdlePool(t *testing.T) {
	p := New(Config{})
	if err := mustSubmit(t, p, Options{}, nop).Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for range 20 { // the drained pool must win over the ended context every time
		if ret, err := p.Close(ctx); err != nil || len(ret) != 0 {
			t.Fatalf("Close = %v, %v", ret, err)
		}
	}
}

// TestAdmittedSubmitterNotHeldByRejectHook: a worker that admits blocked
// submitters and then drops a task (here by CoDel) must wake them before it
// runs the OnReject hook, which may be slow or never return.
func TestAdmittedSubmitterNotHeldByRejectHook(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		hookEntered := make(chan struct{})
		hookRelease := make(chan struct{})
		var once sync.Once
		p := New(Config{
			Workers: 1, QueueSize: 1, Policy: Wait,
			CoDelTarget: time.Millisecond, CoDelInterval: time.Millisecond,
			Hooks: Hooks{OnReject: func(ev Event) {
				if ev.Reason == ReasonExpired {
					once.Do(func() {
						close(hookEntered)
						<-hookRelease
					})
				}
			}},
		})
		g := occupy(t, p)
		mustSubmit(t, p, Options{}, nop) // the queue is full
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		submitted := make(chan error, 1)
		go func() {
			_, err := p.Submit(ctx, nop)
			submitted <- err
		}()
		synctest.Wait()
		if got := p.Stats().Waiting; got != 1 {
			t.Fatalf("Waiting = %d, want 1", got)
		}
		time.Sleep(10 * time.Millisecond) // the queue now stands
		close(g.release)
		<-hookEntered // the worker admitted the waiter, dropped the queued task and sits in the hook
		synctest.Wait()
		select {
		case err := <-submitted:
			if err != nil {
				t.Errorf("Submit = %v, want admitted", err)
			}
		default:
			t.Error("admitted submitter still blocked while the worker runs OnReject")
		}
		close(hookRelease)
		closeNow(t, p)
	})
}
