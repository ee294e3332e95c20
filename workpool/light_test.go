package workpool

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// This file tests light tasks (see entry): tasks of Go/GoOpts with a
// background context in an untimed pool, which travel without a Task
// record, and their mixing with heavy tasks in the per-class rings.

// queuedKinds counts the light and heavy entries in each class's ring by
// walking the ring itself, so that a test can prove it exercises the light
// path (a submission that silently went heavy would not).
func queuedKinds(p *Pool) (light, heavy [numClasses]int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.queues {
		r := &p.queues[c]
		mask := uint64(len(r.buf) - 1)
		for s := r.head; s != r.tail; s++ {
			e := r.buf[s&mask]
			switch {
			case e.t != nil:
				heavy[c]++
			case e.fn != nil:
				light[c]++
			}
		}
	}
	return light, heavy
}

// checkBalance asserts the Stats identity for accepted tasks.
func checkBalance(t *testing.T, p *Pool) Stats {
	t.Helper()
	s := p.Stats()
	sum := s.Completed + s.Failed + s.Panicked + s.Shed + s.Expired + s.Returned + uint64(s.Running) + uint64(s.TotalQueued())
	if s.Submitted != sum {
		t.Fatalf("Submitted %d != Completed+Failed+Panicked+Shed+Expired+Returned+Running+Queued %d: %+v", s.Submitted, sum, s)
	}
	return s
}

// recorder records the names of tasks in the order they ran.
type recorder struct {
	mu    sync.Mutex
	order []string
}

func (r *recorder) task(name string) func(context.Context) error {
	return func(context.Context) error {
		r.mu.Lock()
		r.order = append(r.order, name)
		r.mu.Unlock()
		return nil
	}
}

func (r *recorder) got() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.order)
}

func mustGo(t *testing.T, p *Pool, o Options, fn func(context.Context) error) {
	t.Helper()
	if err := p.GoOpts(context.Background(), o, fn); err != nil {
		t.Fatalf("GoOpts: %v", err)
	}
}

// occupyLight is occupy with a light task (Go).
func occupyLight(t *testing.T, p *Pool) *gate {
	t.Helper()
	g := newGate()
	mustGo(t, p, Options{}, g.task)
	<-g.started
	return g
}

// isDone reports whether task has resolved, without blocking.
func isDone(task *Task) bool {
	select {
	case <-task.Done():
		return true
	default:
		return false
	}
}

// TestLightEligibility checks which submissions travel light: only Go with
// a background context, no tag, no queue-wait bound, in a pool with no
// timing hooks and no CoDel.
func TestLightEligibility(t *testing.T) {
	type sub struct {
		name  string
		ctx   context.Context
		o     Options
		light bool
	}
	valued := context.WithValue(context.Background(), ctxKey{}, 1)
	noCancel := context.WithoutCancel(valued)
	cases := []struct {
		name string
		cfg  Config
		subs []sub
	}{
		{"plain", Config{}, []sub{
			{"background", context.Background(), Options{}, true},
			{"todo", context.TODO(), Options{Priority: PriorityHigh}, true},
			{"tag", context.Background(), Options{Tag: "x"}, false},
			{"maxqueuewait", context.Background(), Options{MaxQueueWait: time.Hour}, false},
			{"values", valued, Options{}, false},
			{"withoutcancel", noCancel, Options{}, false},
		}},
		{"pool maxqueuewait", Config{MaxQueueWait: time.Hour}, []sub{
			{"inherits bound", context.Background(), Options{}, false},
			{"unbounded override", context.Background(), Options{MaxQueueWait: -1}, true},
		}},
		{"onpanic only", Config{Hooks: Hooks{OnPanic: func(Event) {}}}, []sub{
			{"background", context.Background(), Options{}, true},
		}},
		{"onstart", Config{Hooks: Hooks{OnStart: func(Event) {}}}, []sub{{"background", context.Background(), Options{}, false}}},
		{"onfinish", Config{Hooks: Hooks{OnFinish: func(Event) {}}}, []sub{{"background", context.Background(), Options{}, false}}},
		{"onreject", Config{Hooks: Hooks{OnReject: func(Event) {}}}, []sub{{"background", context.Background(), Options{}, false}}},
		{"codel", Config{CoDelTarget: time.Hour, CoDelInterval: time.Hour}, []sub{{"background", context.Background(), Options{}, false}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg
			cfg.Workers, cfg.QueueSize = 1, 100
			p := New(cfg)
			g := occupy(t, p)
			var want [numClasses]int
			for _, s := range tc.subs {
				if err := p.GoOpts(s.ctx, s.o, nop); err != nil {
					t.Fatalf("%s: %v", s.name, err)
				}
				if s.light {
					want[s.o.Priority.class()]++
				}
				if light, _ := queuedKinds(p); light != want {
					t.Fatalf("after %s: light entries %v, want %v", s.name, light, want)
				}
			}
			// Submit (with a handle) is never light.
			mustSubmit(t, p, Options{}, nop)
			if light, heavy := queuedKinds(p); light != want || sum(heavy[:])+sum(light[:]) != len(tc.subs)+1 {
				t.Fatalf("light %v heavy %v", light, heavy)
			}
			close(g.release)
			closeNow(t, p)
			if s := checkBalance(t, p); s.Completed != uint64(len(tc.subs)+2) {
				t.Fatalf("stats %+v", s)
			}
		})
	}
}

func sum(xs []int) int {
	n := 0
	for _, x := range xs {
		n += x
	}
	return n
}

// TestLightPriorityOrderMixedWithHeavy: highest class first, FIFO within a
// class, whether a task is light or heavy.
func TestLightPriorityOrderMixedWithHeavy(t *testing.T) {
	p := New(Config{Workers: 1, QueueSize: 100})
	g := occupy(t, p)
	var rec recorder
	subs := []struct {
		name  string
		prio  Priority
		light bool
	}{
		{"n1", PriorityNormal, true}, {"l1", PriorityLow, false}, {"c1", PriorityCritical, true},
		{"h1", PriorityHigh, false}, {"l2", PriorityLow, true}, {"n2", PriorityNormal, false},
		{"h2", PriorityHigh, true}, {"c2", PriorityCritical, false}, {"n3", PriorityNormal, true},
		{"l3", PriorityLow, true}, {"h3", PriorityHigh, false}, {"c3", PriorityCritical, true},
		{"n4", PriorityNormal, false}, {"h4", PriorityHigh, true}, {"l4", PriorityLow, false},
		{"c4", PriorityCritical, true},
	}
	var wantLight, wantHeavy [numClasses]int
	var handles []*Task
	for i, s := range subs {
		if s.light {
			ctx := context.Background()
			if i%2 == 0 {
				ctx = context.TODO()
			}
			if err := p.GoOpts(ctx, Options{Priority: s.prio}, rec.task(s.name)); err != nil {
				t.Fatal(err)
			}
			wantLight[s.prio.class()]++
		} else {
			handles = append(handles, mustSubmit(t, p, Options{Priority: s.prio}, rec.task(s.name)))
			wantHeavy[s.prio.class()]++
		}
	}
	if light, heavy := queuedKinds(p); light != wantLight || heavy != wantHeavy {
		t.Fatalf("ring contents light %v heavy %v, want %v %v", light, heavy, wantLight, wantHeavy)
	}
	if q := p.Stats().Queued; q != [numClasses]int{4, 4, 4, 4} {
		t.Fatalf("queued per class %v", q)
	}
	checkBalance(t, p)
	close(g.release)
	closeNow(t, p)
	want := []string{"c1", "c2", "c3", "c4", "h1", "h2", "h3", "h4", "n1", "n2", "n3", "n4", "l1", "l2", "l3", "l4"}
	if got := rec.got(); !slices.Equal(got, want) {
		t.Fatalf("order %v, want %v", got, want)
	}
	for _, h := range handles {
		if !isDone(h) || h.Err() != nil {
			t.Fatalf("heavy task %v: done %v err %v", h.Priority(), isDone(h), h.Err())
		}
	}
	if s := checkBalance(t, p); s.Completed != uint64(len(subs)+1) || s.Submitted != uint64(len(subs)+1) {
		t.Fatalf("stats %+v", s)
	}
}

// TestLightShedLowest: ShedLowest evicts the newest task of the lowest
// class whether it is light or heavy.
func TestLightShedLowest(t *testing.T) {
	p := New(Config{Workers: 1, QueueSize: 3, Policy: ShedLowest})
	g := occupy(t, p)
	var rec recorder
	mustGo(t, p, Options{Priority: PriorityLow}, rec.task("l1"))
	heavyLow := mustSubmit(t, p, Options{Priority: PriorityLow}, rec.task("L"))
	mustGo(t, p, Options{Priority: PriorityLow}, rec.task("l2"))
	if light, heavy := queuedKinds(p); light[0] != 2 || heavy[0] != 1 {
		t.Fatalf("light %v heavy %v", light, heavy)
	}

	// A light normal task evicts l2, the newest low (light: nobody to tell).
	mustGo(t, p, Options{}, rec.task("n1"))
	if s := checkBalance(t, p); s.Shed != 1 || s.Queued != [numClasses]int{2, 1, 0, 0} {
		t.Fatalf("after first shed: %+v", s)
	}
	if isDone(heavyLow) {
		t.Fatal("heavy low task resolved, but the newest low was l2")
	}
	// A heavy normal task evicts L, now the newest low: it resolves ErrShed.
	heavyNormal := mustSubmit(t, p, Options{}, rec.task("N"))
	if !isDone(heavyLow) {
		t.Fatal("shed heavy task not resolved")
	}
	var re *RejectError
	if err := heavyLow.Err(); !errors.As(err, &re) || re.Reason != ReasonShed || !errors.Is(err, ErrShed) {
		t.Fatalf("shed heavy task err = %v", err)
	}
	if s := checkBalance(t, p); s.Shed != 2 || s.Queued != [numClasses]int{1, 2, 0, 0} {
		t.Fatalf("after second shed: %+v", s)
	}
	// Nothing below low: refused, light or heavy; a per-task Reject
	// override never sheds.
	if err := p.GoOpts(context.Background(), Options{Priority: PriorityLow}, nop); !errors.Is(err, ErrQueueFull) {
		t.Fatalf("light low into full queue: %v", err)
	}
	if _, err := p.SubmitOpts(context.Background(), Options{Priority: PriorityLow}, nop); !errors.Is(err, ErrQueueFull) {
		t.Fatalf("heavy low into full queue: %v", err)
	}
	if err := p.GoOpts(context.Background(), Options{Priority: PriorityCritical, Policy: Reject}, nop); !errors.Is(err, ErrQueueFull) {
		t.Fatalf("light critical with Reject override: %v", err)
	}
	s := checkBalance(t, p)
	if s.Shed != 2 || s.Rejected[ReasonQueueFull] != 3 || s.Queued != [numClasses]int{1, 2, 0, 0} {
		t.Fatalf("before release: %+v", s)
	}
	close(g.release)
	closeNow(t, p)
	if err := heavyNormal.Err(); err != nil {
		t.Fatal(err)
	}
	// l1 survives: the victims were the newest lows, l2 then L.
	if got, want := rec.got(), []string{"n1", "N", "l1"}; !slices.Equal(got, want) {
		t.Fatalf("ran %v, want %v (shed tasks must never run)", got, want)
	}
	if s := checkBalance(t, p); s.Completed != 4 || s.Shed != 2 {
		t.Fatalf("stats %+v", s)
	}
}

// TestLightShedSkipsHoleAtTail: a heavy task that left the tail of the
// lowest class leaves a hole; shedding must skip it and evict the newest
// real entry.
func TestLightShedSkipsHoleAtTail(t *testing.T) {
	p := New(Config{Workers: 1, QueueSize: 3, Policy: ShedLowest})
	g := occupy(t, p)
	var rec recorder
	mustGo(t, p, Options{Priority: PriorityLow}, rec.task("l1"))
	mustGo(t, p, Options{Priority: PriorityLow}, rec.task("l2"))
	ctx, cancel := context.WithCancel(context.Background())
	h, err := p.SubmitOpts(ctx, Options{Priority: PriorityLow}, rec.task("H"))
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	<-h.Done()
	if !errors.Is(h.Err(), ErrExpired) {
		t.Fatalf("canceled err = %v", h.Err())
	}
	mustGo(t, p, Options{}, rec.task("n1")) // fits: the queue holds 2
	if s := checkBalance(t, p); s.Queued != [numClasses]int{2, 1, 0, 0} {
		t.Fatalf("stats %+v", s)
	}
	mustGo(t, p, Options{Priority: PriorityHigh}, rec.task("h1")) // sheds l2, not the hole
	if s := checkBalance(t, p); s.Shed != 1 || s.Queued != [numClasses]int{1, 1, 1, 0} {
		t.Fatalf("after shed: %+v", s)
	}
	close(g.release)
	closeNow(t, p)
	if got, want := rec.got(), []string{"h1", "n1", "l1"}; !slices.Equal(got, want) {
		t.Fatalf("ran %v, want %v", got, want)
	}
	if s := checkBalance(t, p); s.Completed != 4 || s.Expired != 1 || s.Shed != 1 {
		t.Fatalf("stats %+v", s)
	}
}

// checkReturned asserts that task was handed back by Close already
// resolved with ErrClosed.
func checkReturned(t *testing.T, task *Task, prio Priority) {
	t.Helper()
	if !isDone(task) {
		t.Fatalf("returned %v task not resolved", prio)
	}
	var re *RejectError
	if err := task.Err(); !errors.As(err, &re) || re.Reason != ReasonClosed || !errors.Is(err, ErrClosed) {
		t.Fatalf("returned %v task err = %v, want *RejectError closed", prio, err)
	}
	if task.Priority() != prio {
		t.Fatalf("returned task priority %v, want %v", task.Priority(), prio)
	}
	if err := task.Wait(context.Background()); !errors.Is(err, ErrClosed) {
		t.Fatalf("Wait = %v", err)
	}
}

// TestLightHardStopReturnsTasks: Close's hard stop hands back queued light
// tasks as resolved Tasks, in class order then FIFO, and never runs them.
func TestLightHardStopReturnsTasks(t *testing.T) {
	for _, mode := range []string{"ended", "deadline"} {
		t.Run(mode, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				p := New(Config{Workers: 1, QueueSize: 10})
				started := make(chan struct{})
				var gateCause atomic.Pointer[error]
				// The running task is light too: it ends at the hard stop.
				mustGo(t, p, Options{}, func(ctx context.Context) error {
					close(started)
					<-ctx.Done()
					cause := context.Cause(ctx)
					gateCause.Store(&cause)
					return ctx.Err()
				})
				<-started
				var ran atomic.Int32
				run := func(context.Context) error { ran.Add(1); return nil }
				mustGo(t, p, Options{Priority: PriorityLow}, run)
				mustGo(t, p, Options{Priority: PriorityHigh}, run)
				heavy := mustSubmit(t, p, Options{Tag: "N"}, run)
				mustGo(t, p, Options{}, run)
				mustGo(t, p, Options{Priority: PriorityHigh}, run)
				if light, _ := queuedKinds(p); light != [numClasses]int{1, 1, 2, 0} {
					t.Fatalf("light entries %v", light)
				}

				ctx, cancel := context.WithTimeout(context.Background(), time.Second)
				defer cancel()
				if mode == "ended" {
					cancel()
				}
				start := time.Now()
				ret, err := p.Close(ctx)
				wantWait := time.Duration(0)
				wantErr := context.Canceled
				if mode == "deadline" {
					wantWait, wantErr = time.Second, context.DeadlineExceeded
				}
				if d := time.Since(start); d != wantWait {
					t.Fatalf("Close took %v, want %v", d, wantWait)
				}
				if !errors.Is(err, wantErr) {
					t.Fatalf("Close err = %v, want %v", err, wantErr)
				}
				wantPrio := []Priority{PriorityHigh, PriorityHigh, PriorityNormal, PriorityNormal, PriorityLow}
				if len(ret) != len(wantPrio) {
					t.Fatalf("Close returned %d tasks, want %d", len(ret), len(wantPrio))
				}
				for i, task := range ret {
					checkReturned(t, task, wantPrio[i])
				}
				if ret[2] != heavy || ret[2].Tag() != "N" {
					t.Fatal("the heavy task was not handed back as its own handle, in FIFO place")
				}
				for i, task := range ret {
					if i != 2 && task.Tag() != nil {
						t.Fatalf("light task has tag %v", task.Tag())
					}
				}
				if n := ran.Load(); n != 0 {
					t.Fatalf("%d never-started tasks ran", n)
				}
				c := gateCause.Load()
				if c == nil || !errors.Is(*c, ErrClosed) {
					t.Fatalf("running light task's context cause = %v, want ErrClosed", c)
				}
				s := checkBalance(t, p)
				if s.Returned != 5 || s.Failed != 1 || s.Live != 0 || s.Running != 0 || s.TotalQueued() != 0 {
					t.Fatalf("stats %+v", s)
				}
				if err := p.Go(context.Background(), run); !errors.Is(err, ErrClosed) {
					t.Fatalf("Go after Close: %v", err)
				}
				if ret2, err := p.Close(context.Background()); err != nil || len(ret2) != 0 {
					t.Fatalf("second Close = %v, %v", ret2, err)
				}
			})
		})
	}
}

// TestLightHardStopInHand: a worker has already taken a light task from the
// queue (its previous task's OnPanic hook is still running) when the hard
// stop comes. The task must not run; Close hands it back resolved.
func TestLightHardStopInHand(t *testing.T) {
	var p *Pool
	inHook := make(chan Event, 1)
	p = New(Config{Workers: 1, QueueSize: 10, Hooks: Hooks{OnPanic: func(e Event) {
		inHook <- e
		<-p.hard.Done()
	}}})
	g := occupyLight(t, p)
	var ran atomic.Int32
	run := func(context.Context) error { ran.Add(1); return nil }
	mustGo(t, p, Options{Priority: PriorityHigh}, panicky)
	mustGo(t, p, Options{}, run)                      // taken by the worker before the hook runs
	mustGo(t, p, Options{Priority: PriorityLow}, run) // still queued at the hard stop
	close(g.release)
	ev := <-inHook
	if ev.Priority != PriorityHigh {
		t.Fatalf("OnPanic priority %v", ev.Priority)
	}
	if s := checkBalance(t, p); s.Running != 1 || s.Queued != [numClasses]int{1, 0, 0, 0} || s.Panicked != 1 {
		t.Fatalf("while in hook: %+v", s)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	ret, err := p.Close(ctx)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Close err = %v", err)
	}
	if len(ret) != 2 {
		t.Fatalf("Close returned %d tasks, want 2 (queued low + in-hand normal)", len(ret))
	}
	checkReturned(t, ret[0], PriorityLow)
	checkReturned(t, ret[1], PriorityNormal)
	if n := ran.Load(); n != 0 {
		t.Fatalf("%d never-started tasks ran", n)
	}
	if s := checkBalance(t, p); s.Returned != 2 || s.Completed != 1 || s.Panicked != 1 || s.Live != 0 {
		t.Fatalf("stats %+v", s)
	}
}

// TestLightPanic: a light task's panic reaches OnPanic with its class; the
// pool keeps its workers and goes on.
func TestLightPanic(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		var events []Event
		p := New(Config{Workers: 2, QueueSize: 10, Hooks: Hooks{OnPanic: func(e Event) {
			mu.Lock()
			events = append(events, e)
			mu.Unlock()
		}}})
		g, g1 := newGate(), newGate()
		mustGo(t, p, Options{}, g.task)
		mustGo(t, p, Options{}, g1.task)
		<-g.started
		<-g1.started
		var rec recorder
		mustGo(t, p, Options{Priority: PriorityLow}, rec.task("after"))
		mustGo(t, p, Options{Priority: PriorityHigh}, func(context.Context) error { panic(errors.New("queued boom")) })
		mustGo(t, p, Options{Priority: PriorityCritical}, panicky)
		if light, _ := queuedKinds(p); light != [numClasses]int{1, 0, 1, 1} {
			t.Fatalf("light entries %v", light)
		}
		close(g1.release)
		synctest.Wait()
		mu.Lock()
		got := slices.Clone(events)
		mu.Unlock()
		if len(got) != 2 || got[0].Priority != PriorityCritical || got[1].Priority != PriorityHigh {
			t.Fatalf("OnPanic events %+v", got)
		}
		var pe *PanicError
		if !errors.As(got[0].Err, &pe) || pe.Value != "boom" || len(pe.Stack) == 0 {
			t.Fatalf("event err = %v", got[0].Err)
		}
		if !errors.As(got[1].Err, &pe) || pe.Unwrap() == nil || pe.Unwrap().Error() != "queued boom" {
			t.Fatalf("event err = %v", got[1].Err)
		}
		if got[0].Tag != nil || got[1].Tag != nil {
			t.Fatalf("light events carry tags: %+v", got)
		}
		if r := rec.got(); !slices.Equal(r, []string{"after"}) {
			t.Fatalf("ran %v", r)
		}
		s := checkBalance(t, p)
		if s.Panicked != 2 || s.Completed != 2 || s.Live != 2 || s.Running != 1 || s.Idle != 1 {
			t.Fatalf("stats %+v", s)
		}
		// Both workers still run at once.
		g2 := newGate()
		mustGo(t, p, Options{}, g2.task)
		<-g2.started
		if s := p.Stats(); s.Running != 2 || s.Live != 2 {
			t.Fatalf("stats %+v", s)
		}
		close(g.release)
		close(g2.release)
		closeNow(t, p)
	})
}

// TestLightGoexit: a light task that calls runtime.Goexit counts as failed;
// the pool replaces the worker, runs the tasks behind it in order, and its
// live count stays right.
func TestLightGoexit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := New(Config{Workers: 1, QueueSize: 10})
		g := occupyLight(t, p)
		var rec recorder
		var deferRan atomic.Bool
		mustGo(t, p, Options{Priority: PriorityHigh}, func(context.Context) error {
			defer deferRan.Store(true)
			runtime.Goexit()
			return nil
		})
		mustGo(t, p, Options{}, rec.task("a"))
		mustGo(t, p, Options{}, rec.task("b"))
		close(g.release)
		synctest.Wait()
		if got := rec.got(); !slices.Equal(got, []string{"a", "b"}) {
			t.Fatalf("ran %v, want [a b]", got)
		}
		if !deferRan.Load() {
			t.Fatal("Goexit task's defer did not run")
		}
		s := checkBalance(t, p)
		if s.Failed != 1 || s.Completed != 3 || s.Live != 1 || s.Idle != 1 || s.Running != 0 {
			t.Fatalf("stats %+v", s)
		}
		// The parked replacement takes new work.
		mustGo(t, p, Options{}, rec.task("c"))
		synctest.Wait()
		if got := rec.got(); !slices.Equal(got, []string{"a", "b", "c"}) {
			t.Fatalf("ran %v", got)
		}
		closeNow(t, p)
	})
}

// TestLightGoexitLastTask: a Goexit with nothing queued retires its worker
// (workers start on demand); the bound is still fully usable afterwards.
func TestLightGoexitLastTask(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := New(Config{Workers: 2})
		mustGo(t, p, Options{}, func(context.Context) error { runtime.Goexit(); return nil })
		synctest.Wait()
		if s := checkBalance(t, p); s.Failed != 1 || s.Live != 0 || s.Running != 0 {
			t.Fatalf("stats %+v", s)
		}
		g1, g2 := newGate(), newGate()
		mustGo(t, p, Options{}, g1.task)
		mustGo(t, p, Options{}, g2.task)
		<-g1.started
		<-g2.started
		if s := p.Stats(); s.Live != 2 || s.Running != 2 {
			t.Fatalf("stats %+v", s)
		}
		if err := p.Go(context.Background(), nop); !errors.Is(err, ErrQueueFull) {
			t.Fatalf("third task with 2 busy workers and no queue: %v", err)
		}
		close(g1.release)
		close(g2.release)
		closeNow(t, p)
	})
}

// TestLightAroundCanceledHeavy: heavy tasks in the same class as light ones
// leave holes (head, middle, tail) when their contexts end; they resolve at
// once, and the light ones keep their FIFO order.
func TestLightAroundCanceledHeavy(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := New(Config{Workers: 1, QueueSize: 20})
		g := occupy(t, p)
		var rec recorder
		type heavy struct {
			task   *Task
			cancel context.CancelFunc
		}
		submitHeavy := func(name string, prio Priority) heavy {
			ctx, cancel := context.WithCancel(context.Background())
			task, err := p.SubmitOpts(ctx, Options{Priority: prio}, rec.task(name))
			if err != nil {
				t.Fatal(err)
			}
			return heavy{task, cancel}
		}
		h0 := submitHeavy("H0", PriorityNormal) // head
		mustGo(t, p, Options{}, rec.task("l1"))
		h1 := submitHeavy("H1", PriorityNormal)
		mustGo(t, p, Options{}, rec.task("l2"))
		h2 := submitHeavy("H2", PriorityNormal) // kept
		mustGo(t, p, Options{}, rec.task("l3"))
		h3 := submitHeavy("H3", PriorityNormal)
		mustGo(t, p, Options{}, rec.task("l4"))
		h4 := submitHeavy("H4", PriorityNormal) // tail
		mustGo(t, p, Options{Priority: PriorityLow}, rec.task("ll1"))
		hl := submitHeavy("HL", PriorityLow) // tail of low
		defer h2.cancel()

		if s := checkBalance(t, p); s.Queued != [numClasses]int{2, 9, 0, 0} {
			t.Fatalf("queued %v", s.Queued)
		}
		start := time.Now()
		for _, h := range []heavy{h0, h1, h3, h4, hl} {
			h.cancel()
			<-h.task.Done()
			if err := h.task.Err(); !errors.Is(err, ErrExpired) || !errors.Is(err, context.Canceled) {
				t.Fatalf("canceled task err = %v", err)
			}
		}
		if d := time.Since(start); d != 0 {
			t.Fatalf("canceled tasks resolved after %v, want at once", d)
		}
		s := checkBalance(t, p)
		if s.Queued != [numClasses]int{1, 5, 0, 0} || s.Expired != 5 {
			t.Fatalf("after cancel: %+v", s)
		}
		if light, hv := queuedKinds(p); light != [numClasses]int{1, 4, 0, 0} || hv != [numClasses]int{0, 1, 0, 0} {
			t.Fatalf("ring contents light %v heavy %v", light, hv)
		}
		if isDone(h2.task) {
			t.Fatal("kept heavy task resolved early")
		}
		close(g.release)
		closeNow(t, p)
		if got, want := rec.got(), []string{"l1", "l2", "H2", "l3", "l4", "ll1"}; !slices.Equal(got, want) {
			t.Fatalf("ran %v, want %v", got, want)
		}
		if err := h2.task.Err(); err != nil {
			t.Fatal(err)
		}
		s = checkBalance(t, p)
		if s.TotalQueued() != 0 || s.Completed != 7 || s.Expired != 5 {
			t.Fatalf("after drain: %+v", s)
		}
	})
}

// TestLightRingChurn: a stalled queue whose heavy tasks keep being canceled
// must not grow its ring with the number of canceled tasks; heavy tasks that
// stay across compactions must still be removable by their (renumbered)
// sequence number, and light tasks run once each, in order.
func TestLightRingChurn(t *testing.T) {
	const rounds = 5000
	p := New(Config{Workers: 1, QueueSize: 1000})
	g := occupy(t, p)
	class := PriorityNormal.class()
	var lightRan []int
	var mu sync.Mutex
	var heavyRan [rounds]atomic.Int32
	type kept struct {
		i      int
		task   *Task
		cancel context.CancelFunc
	}
	var keep []kept
	defer func() {
		for _, k := range keep {
			k.cancel()
		}
	}()
	live, peak, lights := 0, 0, 0
	bufLen := func() int {
		p.mu.Lock()
		defer p.mu.Unlock()
		return len(p.queues[class].buf)
	}
	maxBuf := 0
	for i := range rounds {
		ctx, cancel := context.WithCancel(context.Background())
		h, err := p.Submit(ctx, func(context.Context) error { heavyRan[i].Add(1); return nil })
		if err != nil {
			t.Fatal(err)
		}
		peak = max(peak, live+1)
		switch {
		case i%97 == 5:
			keep = append(keep, kept{i, h, cancel})
			live++
		default:
			cancel()
			<-h.Done()
			if !errors.Is(h.Err(), ErrExpired) {
				t.Fatalf("round %d: err = %v", i, h.Err())
			}
		}
		if i%211 == 7 {
			n := lights
			mustGo(t, p, Options{}, func(context.Context) error {
				mu.Lock()
				lightRan = append(lightRan, n)
				mu.Unlock()
				return nil
			})
			lights++
			live++
			peak = max(peak, live)
		}
		n := bufLen()
		maxBuf = max(maxBuf, n)
		if n > max(16, 4*peak) {
			t.Fatalf("round %d: ring buffer %d slots for at most %d live entries", i, n, peak)
		}
	}
	t.Logf("%d rounds, %d kept heavy, %d light, peak %d live, largest buffer %d", rounds, len(keep), lights, peak, maxBuf)
	if s := checkBalance(t, p); s.Queued[class] != live || s.Expired != uint64(rounds-len(keep)) {
		t.Fatalf("queued %d, want %d; stats %+v", s.Queued[class], live, s)
	}
	// Every kept task's seq must point at itself after the compactions.
	p.mu.Lock()
	r := &p.queues[class]
	for _, k := range keep {
		if k.task.seq < r.head || k.task.seq >= r.tail || r.buf[k.task.seq&uint64(len(r.buf)-1)].t != k.task {
			p.mu.Unlock()
			t.Fatalf("kept task %d: seq %d does not point at it (head %d tail %d)", k.i, k.task.seq, r.head, r.tail)
		}
	}
	p.mu.Unlock()
	// Cancel every other kept task: each must remove itself, not a neighbor.
	canceled := map[int]bool{}
	for j, k := range keep {
		if j%2 == 0 {
			k.cancel()
			<-k.task.Done()
			if !errors.Is(k.task.Err(), ErrExpired) {
				t.Fatalf("kept task %d: err = %v", k.i, k.task.Err())
			}
			canceled[k.i] = true
			live--
		}
	}
	if s := checkBalance(t, p); s.Queued[class] != live {
		t.Fatalf("queued %d, want %d", s.Queued[class], live)
	}
	close(g.release)
	closeNow(t, p)
	want := make([]int, lights)
	for i := range want {
		want[i] = i
	}
	if !slices.Equal(lightRan, want) {
		t.Fatalf("light tasks ran %v, want %v", lightRan, want)
	}
	for i := range heavyRan {
		wantRuns := int32(0)
		if i%97 == 5 && !canceled[i] {
			wantRuns = 1
		}
		if n := heavyRan[i].Load(); n != wantRuns {
			t.Fatalf("heavy task %d ran %d times, want %d", i, n, wantRuns)
		}
	}
	for _, k := range keep {
		if !canceled[k.i] && k.task.Err() != nil {
			t.Fatalf("kept task %d: %v", k.i, k.task.Err())
		}
	}
	checkBalance(t, p)
}

// TestLightSetWorkersStartsQueued: raising the bound starts workers for
// queued light tasks at once.
func TestLightSetWorkersStartsQueued(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := New(Config{Workers: 1, QueueSize: 10})
		gates := submitGates(t, p, 4, true)
		synctest.Wait()
		if light, _ := queuedKinds(p); light[PriorityNormal.class()] != 3 {
			t.Fatalf("light entries %v", light)
		}
		if s := checkBalance(t, p); s.Running != 1 || s.TotalQueued() != 3 {
			t.Fatalf("stats %+v", s)
		}
		p.SetWorkers(3)
		synctest.Wait()
		for i, g := range gates[:3] {
			select {
			case <-g.started:
			default:
				t.Fatalf("gate %d not started after SetWorkers(3)", i)
			}
		}
		if s := checkBalance(t, p); s.Running != 3 || s.Live != 3 || s.TotalQueued() != 1 {
			t.Fatalf("after grow: %+v", s)
		}
		p.SetWorkers(4)
		<-gates[3].started
		if s := checkBalance(t, p); s.Running != 4 || s.Live != 4 || s.TotalQueued() != 0 {
			t.Fatalf("after second grow: %+v", s)
		}
		for _, g := range gates {
			close(g.release)
		}
		closeNow(t, p)
		if s := checkBalance(t, p); s.Completed != 4 {
			t.Fatalf("stats %+v", s)
		}
	})
}

// TestLightWaitPolicy: Go submitters blocked on a full queue are admitted
// in FIFO order and their tasks run exactly once.
func TestLightWaitPolicy(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := New(Config{Workers: 1, QueueSize: 2, Policy: Wait})
		g := occupyLight(t, p)
		var rec recorder
		mustGo(t, p, Options{}, rec.task("q1"))
		mustGo(t, p, Options{}, rec.task("q2"))
		const waiters = 4
		errs := make(chan error, waiters)
		for i := range waiters {
			go func() { errs <- p.Go(context.Background(), rec.task(fmt.Sprintf("w%d", i))) }()
			synctest.Wait() // parked in order
			if s := p.Stats(); s.Waiting != i+1 {
				t.Fatalf("waiting %d, want %d", s.Waiting, i+1)
			}
		}
		if len(errs) != 0 {
			t.Fatal("a submitter returned while the queue was full")
		}
		close(g.release)
		for range waiters {
			if err := <-errs; err != nil {
				t.Fatalf("waiting Go: %v", err)
			}
		}
		closeNow(t, p)
		want := []string{"q1", "q2", "w0", "w1", "w2", "w3"}
		if got := rec.got(); !slices.Equal(got, want) {
			t.Fatalf("ran %v, want %v", got, want)
		}
		if s := checkBalance(t, p); s.Completed != 7 || s.Submitted != 7 || s.Waiting != 0 {
			t.Fatalf("stats %+v", s)
		}
	})
}

// TestLightWaitNoOvertake: while Wait submitters are parked, a light Go
// does not take a free queue slot ahead of them (the queue admits waiters
// only once it has drained to half), it parks behind them.
func TestLightWaitNoOvertake(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := New(Config{Workers: 1, QueueSize: 4, Policy: Wait})
		g1, g2 := newGate(), newGate()
		mustGo(t, p, Options{}, g1.task)
		<-g1.started
		var rec recorder
		mustGo(t, p, Options{}, g2.task)
		for _, name := range []string{"q1", "q2", "q3"} {
			mustGo(t, p, Options{}, rec.task(name))
		}
		errs := make(chan error, 2)
		go func() { errs <- p.Go(context.Background(), rec.task("w1")) }()
		synctest.Wait()
		close(g1.release)
		<-g2.started
		synctest.Wait()
		// One slot is free, but w1 waits for the queue to drain to half.
		if s := checkBalance(t, p); s.TotalQueued() != 3 || s.Waiting != 1 {
			t.Fatalf("stats %+v", s)
		}
		go func() { errs <- p.Go(context.Background(), rec.task("w2")) }()
		synctest.Wait()
		if s := p.Stats(); s.Waiting != 2 || s.TotalQueued() != 3 || len(errs) != 0 {
			t.Fatalf("a light Go overtook a waiting submitter: %+v", s)
		}
		close(g2.release)
		for range 2 {
			if err := <-errs; err != nil {
				t.Fatal(err)
			}
		}
		closeNow(t, p)
		if got, want := rec.got(), []string{"q1", "q2", "q3", "w1", "w2"}; !slices.Equal(got, want) {
			t.Fatalf("ran %v, want %v", got, want)
		}
		if s := checkBalance(t, p); s.Completed != 7 {
			t.Fatalf("stats %+v", s)
		}
	})
}

// TestWaitMixedLightAndHeavy: light (Go) and heavy (Submit) submitters
// parked by the Wait policy share one FIFO. A heavy one whose context ends
// leaves it from the middle; the rest are admitted in order, by a batch
// into the queue (QueueSize 2) or one at a time straight to the worker
// (QueueSize 0), and each heavy one gets a handle that resolves.
func TestWaitMixedLightAndHeavy(t *testing.T) {
	for _, qs := range []int{0, 2} {
		t.Run(fmt.Sprintf("queue=%d", qs), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				p := New(Config{Workers: 1, QueueSize: qs, Policy: Wait})
				g := occupyLight(t, p)
				var rec recorder
				var want []string
				for i := range qs {
					name := fmt.Sprintf("q%d", i)
					mustGo(t, p, Options{}, rec.task(name))
					want = append(want, name)
				}
				type result struct {
					name string
					task *Task
					err  error
				}
				results := make(chan result, 4)
				light := func(name string) {
					go func() { results <- result{name, nil, p.Go(context.Background(), rec.task(name))} }()
					synctest.Wait()
				}
				heavy := func(ctx context.Context, name string) {
					go func() {
						tk, err := p.Submit(ctx, rec.task(name))
						results <- result{name, tk, err}
					}()
					synctest.Wait()
				}
				leaveCtx, leave := context.WithCancel(context.Background())
				light("w0")
				heavy(leaveCtx, "w1")
				light("w2")
				heavy(context.Background(), "w3")
				if s := p.Stats(); s.Waiting != 4 {
					t.Fatalf("waiting %d, want 4", s.Waiting)
				}
				leave()
				if r := <-results; r.name != "w1" || !errors.Is(r.err, ErrQueueFull) || !errors.Is(r.err, context.Canceled) || r.task != nil {
					t.Fatalf("canceled waiter: %+v", r)
				}
				if s := p.Stats(); s.Waiting != 3 {
					t.Fatalf("waiting %d after one left, want 3", s.Waiting)
				}
				close(g.release)
				for range 3 {
					r := <-results
					if r.err != nil {
						t.Fatalf("%s: %v", r.name, r.err)
					}
					if (r.name == "w3") != (r.task != nil) {
						t.Fatalf("%s: handle %v", r.name, r.task)
					}
					if r.task != nil {
						if err := r.task.Wait(context.Background()); err != nil {
							t.Fatalf("%s: Wait: %v", r.name, err)
						}
					}
				}
				closeNow(t, p)
				want = append(want, "w0", "w2", "w3")
				if got := rec.got(); !slices.Equal(got, want) {
					t.Fatalf("ran %v, want %v", got, want)
				}
				s := checkBalance(t, p)
				if s.Completed != uint64(qs)+4 || s.Rejected[ReasonQueueFull] != 1 || s.Waiting != 0 || s.Waited != 4 {
					t.Fatalf("stats %+v", s)
				}
			})
		})
	}
}

// TestWaitAdmitsAtHalf: parked submitters are admitted when a worker's
// take leaves the queue at half its size, not before, and counted in
// Stats.Waited.
func TestWaitAdmitsAtHalf(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const size = 8
		p := New(Config{Workers: 1, QueueSize: size, Policy: Wait})
		g := occupyLight(t, p)
		gates := submitGates(t, p, size, true)
		errc := make(chan error, 1)
		go func() { errc <- p.Go(context.Background(), nop) }()
		synctest.Wait()
		if s := p.Stats(); s.Waiting != 1 || s.Waited != 1 {
			t.Fatalf("stats %+v, want one waiting", s)
		}
		close(g.release)
		for i := range gates {
			<-gates[i].started // the worker took task i: size-1-i are queued
			synctest.Wait()
			s := p.Stats()
			wantWaiting := 0
			if size-1-i > size/2 {
				wantWaiting = 1
			}
			if s.Waiting != wantWaiting {
				t.Fatalf("with %d queued after a take: waiting %d, want %d", size-1-i, s.Waiting, wantWaiting)
			}
			close(gates[i].release)
		}
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
		closeNow(t, p)
		if s := checkBalance(t, p); s.Completed != size+2 || s.Waited != 1 {
			t.Fatalf("stats %+v", s)
		}
	})
}

// TestWaitersNotOvertakenByOtherPolicies: while submitters wait, a Reject
// submitter that finds a free slot admits them first; it takes what they
// leave, or is refused. (A stream of Reject submitters used to keep the
// waiters out for as long as it kept the queue above half.)
func TestWaitersNotOvertakenByOtherPolicies(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const size = 4
		p := New(Config{Workers: 1, QueueSize: size, Policy: Wait})
		g := occupyLight(t, p)
		var rec recorder
		first := newGate()
		mustGo(t, p, Options{}, first.task)
		for i := 1; i < size; i++ {
			mustGo(t, p, Options{}, rec.task(fmt.Sprintf("q%d", i)))
		}
		errc := make(chan error, 1)
		go func() { errc <- p.Go(context.Background(), rec.task("waiter")) }()
		synctest.Wait()
		close(g.release)
		<-first.started // one slot free, three queued: above half, the waiter stays parked
		synctest.Wait()
		if s := p.Stats(); s.Waiting != 1 || s.TotalQueued() != size-1 {
			t.Fatalf("stats %+v", s)
		}
		// A Reject submitter finds the free slot: it goes to the waiter,
		// and the Reject submitter is refused.
		err := p.GoOpts(context.Background(), Options{Policy: Reject}, rec.task("reject"))
		if !errors.Is(err, ErrQueueFull) {
			t.Fatalf("Reject submitter: %v, want ErrQueueFull", err)
		}
		if err := <-errc; err != nil {
			t.Fatalf("waiter: %v", err)
		}
		close(first.release)
		closeNow(t, p)
		if got, want := rec.got(), []string{"q1", "q2", "q3", "waiter"}; !slices.Equal(got, want) {
			t.Fatalf("ran %v, want %v", got, want)
		}
	})
}

// TestRejectAdmitsWaitersBeforeItsHook: with hooks (heavy tasks), a Reject
// submitter refused after admitting a waiter wakes the waiter before its
// OnReject hook runs, which may be slow or never return; a ShedLowest
// submitter that finds a free slot takes it and sheds nothing.
func TestRejectAdmitsWaitersBeforeItsHook(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		hookEntered, hookRelease := make(chan struct{}), make(chan struct{})
		p := New(Config{Workers: 1, QueueSize: 4, Policy: Wait, Hooks: Hooks{OnReject: func(ev Event) {
			if ev.Tag == "reject" {
				close(hookEntered)
				<-hookRelease
			}
		}}})
		g := occupy(t, p)
		queued := submitGates(t, p, 4, false)
		admitted := make(chan error, 1)
		go func() {
			_, err := p.Submit(context.Background(), nop)
			admitted <- err
		}()
		synctest.Wait()
		close(g.release)
		<-queued[0].started // one slot free, three queued: the waiter stays parked
		synctest.Wait()
		// ShedLowest takes the free slot; nothing is shed, the waiter waits.
		if _, err := p.SubmitOpts(context.Background(), Options{Policy: ShedLowest}, nop); err != nil {
			t.Fatalf("ShedLowest with a free slot: %v", err)
		}
		if s := p.Stats(); s.Waiting != 1 || s.Shed != 0 || s.TotalQueued() != 4 {
			t.Fatalf("after ShedLowest: stats %+v", s)
		}
		close(queued[0].release)
		<-queued[1].started // a slot free again
		synctest.Wait()
		refused := make(chan error, 1)
		go func() {
			_, err := p.SubmitOpts(context.Background(), Options{Policy: Reject, Tag: "reject"}, nop)
			refused <- err
		}()
		<-hookEntered
		synctest.Wait()
		select {
		case err := <-admitted:
			if err != nil {
				t.Fatalf("waiter: %v", err)
			}
		default:
			t.Fatal("the admitted waiter was still blocked while the Reject submitter's hook ran")
		}
		close(hookRelease)
		if err := <-refused; !errors.Is(err, ErrQueueFull) {
			t.Fatalf("Reject submitter: %v, want ErrQueueFull", err)
		}
		for _, q := range queued[1:] {
			close(q.release)
		}
		closeNow(t, p)
		if s := checkBalance(t, p); s.Completed != 7 || s.Shed != 0 || s.Rejected[ReasonQueueFull] != 1 {
			t.Fatalf("stats %+v", s)
		}
	})
}

// TestSetQueueSizeAdmitsAtOnce: raising the bound admits parked submitters
// into the new slots at once, however full the queue still is, one per
// new slot, in FIFO order.
func TestSetQueueSizeAdmitsAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const size = 8
		p := New(Config{Workers: 1, QueueSize: size, Policy: Wait})
		g := occupyLight(t, p)
		var rec recorder
		for i := range size {
			mustGo(t, p, Options{}, rec.task(fmt.Sprintf("q%d", i)))
		}
		done := make(chan string, 2)
		for _, name := range []string{"w0", "w1"} {
			go func() {
				if err := p.Go(context.Background(), rec.task(name)); err != nil {
					t.Errorf("%s: %v", name, err)
				}
				done <- name
			}()
			synctest.Wait()
		}
		p.SetQueueSize(size + 1)
		synctest.Wait()
		if s := p.Stats(); s.Waiting != 1 || s.TotalQueued() != size+1 || len(done) != 1 || <-done != "w0" {
			t.Fatalf("after raising the bound by one: stats %+v", s)
		}
		p.SetQueueSize(size + 2)
		synctest.Wait()
		if s := p.Stats(); s.Waiting != 0 || s.TotalQueued() != size+2 || <-done != "w1" {
			t.Fatalf("after raising it by two: stats %+v", s)
		}
		close(g.release)
		closeNow(t, p)
		want := []string{"q0", "q1", "q2", "q3", "q4", "q5", "q6", "q7", "w0", "w1"}
		if got := rec.got(); !slices.Equal(got, want) {
			t.Fatalf("ran %v, want %v", got, want)
		}
	})
}

// TestLightWaitPolicyRefusals: a light Go blocked by the Wait policy is
// refused at its MaxWait and at Close, and its func never runs.
func TestLightWaitPolicyRefusals(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := New(Config{Workers: 1, QueueSize: 1, Policy: Wait})
		g := occupyLight(t, p)
		mustGo(t, p, Options{}, nop)
		var ran atomic.Int32
		run := func(context.Context) error { ran.Add(1); return nil }
		start := time.Now()
		err := p.GoOpts(context.Background(), Options{MaxWait: time.Second}, run)
		if !errors.Is(err, ErrQueueFull) || time.Since(start) != time.Second {
			t.Fatalf("GoOpts with MaxWait: %v after %v", err, time.Since(start))
		}
		errc := make(chan error, 1)
		go func() { errc <- p.Go(context.Background(), run) }()
		synctest.Wait()
		if s := p.Stats(); s.Waiting != 1 {
			t.Fatalf("waiting %d", s.Waiting)
		}
		closed := make(chan struct{})
		go func() { closeNow(t, p); close(closed) }()
		if err := <-errc; !errors.Is(err, ErrClosed) {
			t.Fatalf("waiting Go at Close: %v", err)
		}
		close(g.release)
		<-closed
		s := checkBalance(t, p)
		if ran.Load() != 0 || s.Rejected[ReasonQueueFull] != 1 || s.Rejected[ReasonClosed] != 1 || s.Completed != 2 {
			t.Fatalf("ran %d; stats %+v", ran.Load(), s)
		}
	})
}

// --- ring unit tests ---

// idErr identifies a light entry: its fn returns it.
type idErr int

func (e idErr) Error() string { return fmt.Sprintf("id %d", int(e)) }

func lightEntry(id int) entry {
	return entry{fn: func(context.Context) error { return idErr(id) }, prio: PriorityNormal}
}

// heavyEntry returns a heavy entry whose Task's tag is id.
func heavyEntry(id int) entry {
	t := &Task{tag: id}
	return entry{t: t}
}

// entryID returns the id of a light or heavy entry, -1 for the zero entry.
func entryID(e entry) int {
	switch {
	case e.t != nil:
		return e.t.tag.(int)
	case e.fn != nil:
		return int(e.fn(nil).(idErr))
	}
	return -1
}

// ringIDs lists the ids in r from head to tail, holes skipped, and checks
// the ring's invariants.
func ringIDs(t *testing.T, r *ring) []int {
	t.Helper()
	n := len(r.buf)
	if n != 0 && n&(n-1) != 0 {
		t.Fatalf("buffer length %d not a power of two", n)
	}
	if int(r.tail-r.head) > n {
		t.Fatalf("span %d exceeds buffer %d", r.tail-r.head, n)
	}
	var ids []int
	holes := 0
	mask := uint64(n - 1)
	for s := r.head; s != r.tail; s++ {
		e := r.buf[s&mask]
		if e.none() {
			holes++
			continue
		}
		if e.t != nil && e.t.seq != s {
			t.Fatalf("heavy entry %d at seq %d records seq %d", entryID(e), s, e.t.seq)
		}
		ids = append(ids, entryID(e))
	}
	if holes != r.holes {
		t.Fatalf("holes field %d, counted %d", r.holes, holes)
	}
	if r.len() != len(ids) {
		t.Fatalf("len %d, counted %d", r.len(), len(ids))
	}
	// Slots outside [head, tail) must be empty (nothing retained).
	for s := r.tail; s != r.head+uint64(n); s++ {
		if !r.buf[s&mask].none() {
			t.Fatalf("slot for seq %d outside [%d,%d) not cleared", s, r.head, r.tail)
		}
	}
	return ids
}

func TestRingEmpty(t *testing.T) {
	var r ring
	if r.len() != 0 || !r.popFront().none() || !r.popBack().none() {
		t.Fatal("zero ring not empty")
	}
	r.push(lightEntry(1))
	if e := r.popFront(); entryID(e) != 1 {
		t.Fatalf("popFront = %d", entryID(e))
	}
	if r.len() != 0 || !r.popFront().none() || !r.popBack().none() {
		t.Fatal("drained ring not empty")
	}
	ringIDs(t, &r)
}

func TestRingFIFOAndGrowthPreservesOrder(t *testing.T) {
	var r ring
	var want []int
	for i := range 40 { // 16 -> 32 -> 64
		e := lightEntry(i)
		if i%3 == 0 {
			e = heavyEntry(i)
		}
		seq := r.push(e)
		if seq != uint64(i) {
			t.Fatalf("push %d returned seq %d", i, seq)
		}
		if e.t != nil && e.t.seq != seq {
			t.Fatalf("heavy seq %d, returned %d", e.t.seq, seq)
		}
		want = append(want, i)
		if got := ringIDs(t, &r); !slices.Equal(got, want) {
			t.Fatalf("after push %d: %v", i, got)
		}
	}
	if len(r.buf) != 64 {
		t.Fatalf("buffer %d, want 64", len(r.buf))
	}
	for i := range 40 {
		if id := entryID(r.popFront()); id != i {
			t.Fatalf("popFront = %d, want %d", id, i)
		}
	}
	if r.len() != 0 {
		t.Fatalf("len %d", r.len())
	}
}

// TestRingGrowthWrapped grows a ring whose live span wraps around the end of
// the buffer, with no holes: sequence numbers stay, order is kept.
func TestRingGrowthWrapped(t *testing.T) {
	var r ring
	var heavies []entry
	id := 0
	push := func() {
		e := lightEntry(id)
		if id%2 == 1 {
			e = heavyEntry(id)
			heavies = append(heavies, e)
		}
		r.push(e)
		id++
	}
	for range 10 {
		push()
	}
	for i := range 6 {
		if got := entryID(r.popFront()); got != i {
			t.Fatalf("popFront = %d", got)
		}
	}
	for range 12 { // span 16, wrapping: head at slot 6
		push()
	}
	if len(r.buf) != 16 || r.head != 6 || r.tail != 22 {
		t.Fatalf("buf %d head %d tail %d", len(r.buf), r.head, r.tail)
	}
	seqs := map[*Task]uint64{}
	for _, e := range heavies {
		seqs[e.t] = e.t.seq
	}
	push() // grows to 32
	if len(r.buf) != 32 || r.head != 6 {
		t.Fatalf("buf %d head %d", len(r.buf), r.head)
	}
	for task, s := range seqs {
		if task.seq != s {
			t.Fatalf("growth without holes renumbered seq %d -> %d", s, task.seq)
		}
	}
	var want []int
	for i := 6; i < id; i++ {
		want = append(want, i)
	}
	if got := ringIDs(t, &r); !slices.Equal(got, want) {
		t.Fatalf("after growth %v, want %v", got, want)
	}
}

func TestRingHolesAtBothEnds(t *testing.T) {
	var r ring
	es := make([]entry, 8)
	for i := range es {
		if i == 0 || i == 3 || i == 6 || i == 7 {
			es[i] = heavyEntry(i)
		} else {
			es[i] = lightEntry(i)
		}
		r.push(es[i])
	}
	r.remove(es[0].t.seq) // head
	r.remove(es[7].t.seq) // tail
	r.remove(es[6].t.seq) // next to the tail
	r.remove(es[3].t.seq) // middle
	if got := ringIDs(t, &r); !slices.Equal(got, []int{1, 2, 4, 5}) || r.len() != 4 || r.holes != 4 {
		t.Fatalf("ids %v len %d holes %d", got, r.len(), r.holes)
	}
	if id := entryID(r.popBack()); id != 5 {
		t.Fatalf("popBack = %d, want 5", id)
	}
	if r.holes != 2 || r.tail != 5 {
		t.Fatalf("after popBack holes %d tail %d, want 2, 5", r.holes, r.tail)
	}
	if id := entryID(r.popFront()); id != 1 {
		t.Fatalf("popFront = %d, want 1", id)
	}
	if r.holes != 1 || r.head != 2 {
		t.Fatalf("after popFront holes %d head %d", r.holes, r.head)
	}
	if got := ringIDs(t, &r); !slices.Equal(got, []int{2, 4}) {
		t.Fatalf("ids %v", got)
	}
	// Remove everything: a ring of only holes is empty.
	if id := entryID(r.popBack()); id != 4 {
		t.Fatalf("popBack = %d", id)
	}
	if id := entryID(r.popFront()); id != 2 {
		t.Fatalf("popFront = %d", id)
	}
	// The hole of 3 was left: popping the last entry reclaimed it.
	if r.len() != 0 || r.holes != 0 || r.head != r.tail {
		t.Fatalf("len %d holes %d head %d tail %d", r.len(), r.holes, r.head, r.tail)
	}
	if !r.popFront().none() || r.holes != 0 || r.head != r.tail {
		t.Fatalf("len %d holes %d head %d tail %d", r.len(), r.holes, r.head, r.tail)
	}
	// All holes: pops return none and clear them.
	a, b := heavyEntry(10), heavyEntry(11)
	r.push(a)
	r.push(b)
	r.remove(a.t.seq)
	r.remove(b.t.seq)
	if r.len() != 0 {
		t.Fatalf("len %d", r.len())
	}
	if !r.popFront().none() || r.holes != 0 || r.head != r.tail {
		t.Fatalf("holes %d head %d tail %d", r.holes, r.head, r.tail)
	}
	c, d := heavyEntry(12), heavyEntry(13)
	r.push(c)
	r.push(d)
	r.remove(c.t.seq)
	r.remove(d.t.seq)
	if !r.popBack().none() || r.holes != 0 || r.head != r.tail {
		t.Fatalf("holes %d head %d tail %d", r.holes, r.head, r.tail)
	}
	ringIDs(t, &r)
}

// TestRingReleasesLargeBuffer: a ring that drains lets go of a buffer
// larger than keepBuf and keeps a small one; either way it works on.
func TestRingReleasesLargeBuffer(t *testing.T) {
	for _, n := range []int{20, keepBuf + 100} {
		var r ring
		for i := range n {
			e := lightEntry(i)
			if i%5 == 0 {
				e = heavyEntry(i)
			}
			r.push(e)
		}
		grown := len(r.buf)
		for i := range n {
			if id := entryID(r.popFront()); id != i {
				t.Fatalf("n=%d: popFront = %d, want %d", n, id, i)
			}
		}
		if n > keepBuf && r.buf != nil {
			t.Fatalf("n=%d: drained ring keeps %d slots", n, len(r.buf))
		}
		if n <= keepBuf && len(r.buf) != grown {
			t.Fatalf("n=%d: drained ring buffer %d, want %d kept", n, len(r.buf), grown)
		}
		h := heavyEntry(1000000)
		r.push(lightEntry(999999))
		r.push(h)
		r.push(lightEntry(1000001))
		r.remove(h.t.seq)
		if got := ringIDs(t, &r); !slices.Equal(got, []int{999999, 1000001}) {
			t.Fatalf("n=%d: after reuse %v", n, got)
		}
	}
}

// TestRingCompaction: a full buffer that is at least half holes is
// compacted in place (same size), renumbering heavy entries so that
// remove(t.seq) still removes the right one.
func TestRingCompaction(t *testing.T) {
	var r ring
	// Start away from seq 0 so that the live span wraps.
	for i := range 5 {
		r.push(lightEntry(100 + i))
		r.popFront()
	}
	es := make([]entry, 16)
	for i := range es {
		if i%2 == 0 || i == 5 || i == 9 || i == 11 {
			es[i] = heavyEntry(i)
		} else {
			es[i] = lightEntry(i)
		}
		r.push(es[i])
	}
	if len(r.buf) != 16 {
		t.Fatalf("buf %d", len(r.buf))
	}
	// Remove 9 heavy entries, keeping 6 and 12.
	for _, i := range []int{0, 2, 4, 5, 8, 9, 10, 11, 14} {
		r.remove(es[i].t.seq)
	}
	// Two light ones go from the ends: popFront takes 1 after a hole, popBack 15.
	if id := entryID(r.popFront()); id != 1 {
		t.Fatalf("popFront = %d", id)
	}
	if id := entryID(r.popBack()); id != 15 {
		t.Fatalf("popBack = %d", id)
	}
	// Refill until full: span 16 again.
	next := 16
	for int(r.tail-r.head) < len(r.buf) {
		r.push(lightEntry(next))
		next++
	}
	before := ringIDs(t, &r)
	holes := r.holes
	if holes*2 < len(r.buf) {
		t.Fatalf("setup: %d holes of %d", holes, len(r.buf))
	}
	oldSeq6, oldSeq12 := es[6].t.seq, es[12].t.seq
	h := heavyEntry(99)
	r.push(h) // compacts
	if len(r.buf) != 16 {
		t.Fatalf("compaction resized the buffer to %d", len(r.buf))
	}
	after := ringIDs(t, &r) // checks every heavy seq points at itself
	if want := append(slices.Clone(before), 99); !slices.Equal(after, want) {
		t.Fatalf("after compaction %v, want %v", after, want)
	}
	if r.holes != 0 {
		t.Fatalf("holes %d after compaction", r.holes)
	}
	if es[6].t.seq == oldSeq6 && es[12].t.seq == oldSeq12 {
		t.Fatal("compaction did not renumber (test setup too weak)")
	}
	// remove by the new seq removes exactly that entry.
	r.remove(es[12].t.seq)
	want := slices.DeleteFunc(slices.Clone(after), func(id int) bool { return id == 12 })
	if got := ringIDs(t, &r); !slices.Equal(got, want) {
		t.Fatalf("after remove(12) %v, want %v", got, want)
	}
	r.remove(h.t.seq)
	r.remove(es[6].t.seq)
	want = slices.DeleteFunc(want, func(id int) bool { return id == 99 || id == 6 })
	if got := ringIDs(t, &r); !slices.Equal(got, want) {
		t.Fatalf("after remove(99, 6) %v, want %v", got, want)
	}
	var popped []int
	for e := r.popFront(); !e.none(); e = r.popFront() {
		popped = append(popped, entryID(e))
	}
	if !slices.Equal(popped, want) {
		t.Fatalf("popped %v, want %v", popped, want)
	}
}

// TestRingGrowthWithHoles: a full buffer with fewer holes than half grows,
// dropping the holes and renumbering.
func TestRingGrowthWithHoles(t *testing.T) {
	var r ring
	es := make([]entry, 16)
	for i := range es {
		es[i] = heavyEntry(i)
		r.push(es[i])
	}
	r.remove(es[3].t.seq)
	r.remove(es[9].t.seq)
	r.push(lightEntry(16))
	if len(r.buf) != 32 || r.holes != 0 {
		t.Fatalf("buf %d holes %d", len(r.buf), r.holes)
	}
	want := []int{0, 1, 2, 4, 5, 6, 7, 8, 10, 11, 12, 13, 14, 15, 16}
	if got := ringIDs(t, &r); !slices.Equal(got, want) {
		t.Fatalf("ids %v", got)
	}
	r.remove(es[10].t.seq)
	want = slices.DeleteFunc(want, func(id int) bool { return id == 10 })
	if got := ringIDs(t, &r); !slices.Equal(got, want) {
		t.Fatalf("after remove(10) %v", got)
	}
}

// TestRingModel runs random operations against a slice model.
func TestRingModel(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var r ring
	var model []entry
	id := 0
	peak := 0
	for op := range 6000 {
		// Alternate phases that grow the ring and phases that drain it.
		pushes := 3
		if op/600%2 == 0 {
			pushes = 6
		}
		k := rng.IntN(10)
		if k >= pushes {
			k = 4 + rng.IntN(6) // one of the other operations
		} else {
			k = 0
		}
		switch {
		case k < 4: // push
			e := lightEntry(id)
			if rng.IntN(2) == 0 {
				e = heavyEntry(id)
			}
			id++
			r.push(e)
			model = append(model, e)
		case k < 6: // remove a random heavy entry
			var hs []int
			for i, e := range model {
				if e.t != nil {
					hs = append(hs, i)
				}
			}
			if len(hs) == 0 {
				continue
			}
			i := hs[rng.IntN(len(hs))]
			r.remove(model[i].t.seq)
			model = slices.Delete(model, i, i+1)
		case k < 8: // popFront
			e := r.popFront()
			if len(model) == 0 {
				if !e.none() {
					t.Fatalf("op %d: popFront of empty = %d", op, entryID(e))
				}
				continue
			}
			if entryID(e) != entryID(model[0]) {
				t.Fatalf("op %d: popFront = %d, want %d", op, entryID(e), entryID(model[0]))
			}
			model = model[1:]
		default: // popBack
			e := r.popBack()
			if len(model) == 0 {
				if !e.none() {
					t.Fatalf("op %d: popBack of empty = %d", op, entryID(e))
				}
				continue
			}
			if entryID(e) != entryID(model[len(model)-1]) {
				t.Fatalf("op %d: popBack = %d, want %d", op, entryID(e), entryID(model[len(model)-1]))
			}
			model = model[:len(model)-1]
		}
		peak = max(peak, len(model))
		got := ringIDs(t, &r)
		want := make([]int, len(model))
		for i, e := range model {
			want[i] = entryID(e)
		}
		if !slices.Equal(got, want) {
			t.Fatalf("op %d: ring %v, model %v", op, got, want)
		}
		if len(r.buf) > max(16, 4*peak) {
			t.Fatalf("op %d: buffer %d for peak %d", op, len(r.buf), peak)
		}
	}
}

// TestRingReleasesBufferBehindTrailingHole: a large ring whose newest slot
// is a hole still releases its buffer once its last entry is popped, from
// either end, and a removal that leaves only holes settles it too.
func TestRingReleasesBufferBehindTrailingHole(t *testing.T) {
	for _, back := range []bool{false, true} {
		var r ring
		for i := range keepBuf + 500 {
			r.push(lightEntry(i))
		}
		h := heavyEntry(-2)
		r.push(h)
		r.remove(h.t.seq)
		for r.len() > 0 {
			if back {
				r.popBack()
			} else {
				r.popFront()
			}
		}
		if r.buf != nil || r.holes != 0 || r.head != r.tail {
			t.Fatalf("back=%v: len(buf) %d holes %d head %d tail %d", back, len(r.buf), r.holes, r.head, r.tail)
		}
	}
	var r ring
	for i := range keepBuf + 1 {
		r.push(heavyEntry(i))
	}
	for s := r.head; s != r.tail; s++ {
		r.remove(s)
	}
	if r.buf != nil || r.holes != 0 || r.head != r.tail || r.len() != 0 {
		t.Fatalf("after removing all: len(buf) %d holes %d head %d tail %d", len(r.buf), r.holes, r.head, r.tail)
	}
}
