package bench

import (
	"context"
	"errors"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alitto/pond/v2"
	"github.com/panjf2000/ants/v2"
	"github.com/sourcegraph/conc/pool"
	"golang.org/x/sync/errgroup"

	"github.com/sluicehq/sluice/workpool"
)

// sluiceQueueSize is the workpool queue bound of the "sluice" and
// "sluice-submit" subjects: large enough to hold the largest burst of the
// io workloads (20,000 tasks, which 256 workers clear in about 95 ms), the
// size an operator would give a pool that must absorb such bursts without
// pushing back. pond, the fastest peer there, queues without a bound by
// default, so with this size neither makes its submitters wait on the io
// workloads. The queue is still bounded, and the CPU workloads' submitters
// still wait on it now and then.
//
// What waiting costs is the "sluice-q4096" row: the same pool with the
// 4,096-slot queue that BenchmarkPeers used until the eighth session
// (chosen then over 256 and 1,024 by measurement). On io1ms/1ku-20t its
// 1,000 submitters block on the full queue some 3,900 times per run, and
// each refill wakes and re-parks them; on the CPU workloads it is the
// faster of the two, its queue fitting the cache. docs/benchmarks.md has
// the figures and the history.
const (
	sluiceQueueSize = 32768
	smallQueueSize  = 4096
)

// queueSize is sluiceQueueSize, or SLUICE_BENCH_QUEUE when set (for
// experiments; the recorded figures use the constant).
func queueSize() int {
	if v, err := strconv.Atoi(os.Getenv("SLUICE_BENCH_QUEUE")); err == nil && v >= 0 {
		return v
	}
	return sluiceQueueSize
}

// Sub-benchmarks run one after another, so the state the tasks touch is
// package-level: that way every task func is a static func value, and no
// subject pays for a per-task closure.
var (
	// ran counts the tasks that ran in the current iteration; each
	// iteration resets it and checks it against the workload's task count.
	ran atomic.Int64
	// sink receives a CPU task's result only when it is zero, which it
	// never is; the branch keeps the compiler from dropping the loop.
	sink atomic.Uint64
	// taskWG is used by the subjects that have no wait of their own
	// (ants, plain goroutines): one Add per task before submission, one
	// Done at the end of the task.
	taskWG sync.WaitGroup
)

// cpuWork spins about 200 xorshift rounds on a value seeded by the task
// counter, then counts the task.
func cpuWork() {
	x := uint64(ran.Add(1))*0x9E3779B97F4A7C15 | 1
	for range 200 {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
	}
	if x == 0 {
		sink.Store(x)
	}
}

// ioWork stands for a 1 ms call to a dependency.
func ioWork() {
	time.Sleep(time.Millisecond)
	ran.Add(1)
}

func cpuPlain()                    { cpuWork() }
func cpuErr() error                { cpuWork(); return nil }
func cpuCtx(context.Context) error { cpuWork(); return nil }
func cpuDone()                     { cpuWork(); taskWG.Done() }
func ioPlain()                     { ioWork() }
func ioErr() error                 { ioWork(); return nil }
func ioCtx(context.Context) error  { ioWork(); return nil }
func ioDone()                      { ioWork(); taskWG.Done() }

// taskSet is one workload's task in the shape each subject's API takes.
// All are static funcs: submitting one allocates nothing on our side.
type taskSet struct {
	plain    func()                      // pond, conc
	withErr  func() error                // errgroup
	withCtx  func(context.Context) error // sluice
	withDone func()                      // ants, goroutines: also taskWG.Done
}

var (
	cpuTasks = taskSet{cpuPlain, cpuErr, cpuCtx, cpuDone}
	ioTasks  = taskSet{ioPlain, ioErr, ioCtx, ioDone}
)

type workload struct {
	name    string
	users   int // submitter goroutines
	perUser int // tasks each submitter submits
	limit   int // concurrency bound given to the pools
	tasks   taskSet
}

func (w workload) total() int { return w.users * w.perUser }

// subject is one pool under test. start builds the pool for one iteration,
// submit hands it one task (from several goroutines at once), and stop
// waits until every submitted task ran and every goroutine the pool
// started has returned.
type subject interface {
	start(limit int, ts taskSet)
	submit() error
	stop() error
}

type sluiceSubject struct {
	queue int // the pool's QueueSize; zero means queueSize()
	p     *workpool.Pool
	fn    func(context.Context) error
}

func (s *sluiceSubject) start(limit int, ts taskSet) {
	s.fn = ts.withCtx
	q := s.queue
	if q == 0 {
		q = queueSize()
	}
	s.p = workpool.New(workpool.Config{Workers: limit, QueueSize: q, Policy: workpool.Wait})
}

func (s *sluiceSubject) submit() error {
	_, err := s.p.Submit(context.Background(), s.fn)
	return err
}

func (s *sluiceSubject) stop() error {
	// Close waits for every accepted task (the context never ends) and
	// for every worker to return.
	_, err := s.p.Close(context.Background())
	return err
}

// sluiceGoSubject ("sluice", "sluice-q4096") uses Pool.Go, workpool's
// entry point for callers that need no handle: the counterpart of pond's
// Go, errgroup's Go, conc's Go and ants' Submit used below, none of which
// returns a handle. With context.Background() the pool recycles the task's
// memory. The "sluice-submit" row (sluiceSubject) shows what the handle of
// Submit costs.
type sluiceGoSubject struct{ sluiceSubject }

func (s *sluiceGoSubject) submit() error {
	return s.p.Go(context.Background(), s.fn)
}

type pondSubject struct {
	p  pond.Pool
	fn func()
}

func (s *pondSubject) start(limit int, ts taskSet) {
	s.fn = ts.plain
	s.p = pond.NewPool(limit) // unbounded queue, the default
}

// submit uses Go, pond's cheapest entry point: it returns an error instead
// of allocating a future that nobody would wait on.
func (s *pondSubject) submit() error { return s.p.Go(s.fn) }

func (s *pondSubject) stop() error { s.p.StopAndWait(); return nil }

type antsSubject struct {
	p  *ants.Pool
	fn func()
}

func (s *antsSubject) start(limit int, ts taskSet) {
	s.fn = ts.withDone
	p, err := ants.NewPool(limit) // blocking Submit, the default
	if err != nil {
		panic(err)
	}
	s.p = p
}

func (s *antsSubject) submit() error {
	taskWG.Add(1)
	if err := s.p.Submit(s.fn); err != nil {
		taskWG.Done()
		return err
	}
	return nil
}

func (s *antsSubject) stop() error {
	taskWG.Wait()
	// ReleaseTimeout also waits for ants' workers and its purge and
	// ticktock goroutines to exit, like the other subjects' teardown.
	return s.p.ReleaseTimeout(10 * time.Second)
}

type errgroupSubject struct {
	g  *errgroup.Group
	fn func() error
}

func (s *errgroupSubject) start(limit int, ts taskSet) {
	s.fn = ts.withErr
	s.g = new(errgroup.Group)
	s.g.SetLimit(limit)
}

func (s *errgroupSubject) submit() error { s.g.Go(s.fn); return nil }
func (s *errgroupSubject) stop() error   { return s.g.Wait() }

// concSubject serializes its submitters with a mutex: conc's documentation
// does not promise that Pool.Go is safe to call from several goroutines at
// once, so the benchmark does not rely on it. This only matters for the
// multi-submitter workloads.
type concSubject struct {
	mu sync.Mutex
	p  *pool.Pool
	fn func()
}

func (s *concSubject) start(limit int, ts taskSet) {
	s.fn = ts.plain
	s.p = pool.New().WithMaxGoroutines(limit)
}

func (s *concSubject) submit() error {
	s.mu.Lock()
	s.p.Go(s.fn)
	s.mu.Unlock()
	return nil
}

func (s *concSubject) stop() error { s.p.Wait(); return nil }

// goroutineSubject starts one goroutine per task: no bound at all, so on
// the io workloads it is not held to the limit of 256 the pools obey.
type goroutineSubject struct{ fn func() }

func (s *goroutineSubject) start(_ int, ts taskSet) { s.fn = ts.withDone }

func (s *goroutineSubject) submit() error {
	taskWG.Add(1)
	go s.fn()
	return nil
}

func (s *goroutineSubject) stop() error { taskWG.Wait(); return nil }

// The submitters read the iteration's subject and share from package-level
// variables, so starting them allocates no closures either.
var (
	curSubject subject
	curPerUser int
	submitters sync.WaitGroup
	submitErr  atomic.Pointer[error] // first submission error of the iteration
)

func submitLoop() {
	defer submitters.Done()
	s, n := curSubject, curPerUser
	for range n {
		if err := s.submit(); err != nil {
			recordSubmitErr(err)
			return
		}
	}
}

// recordSubmitErr keeps the first submission error. It is a separate
// function so that only a failing submission moves an error to the heap:
// taking &err inside submitLoop's loop would allocate on every task.
func recordSubmitErr(err error) {
	e := err
	submitErr.CompareAndSwap(nil, &e)
}

// BenchmarkPeers compares workpool with its peers, pond-benchmarks style:
// each iteration creates the pool, submits every task from the workload's
// submitters, waits for every task and tears the pool down, all timed.
// ns/task is the elapsed time divided by the number of tasks run.
func BenchmarkPeers(b *testing.B) {
	procs := runtime.GOMAXPROCS(0)
	workloads := []workload{
		{"cpu/1u-100kt", 1, 100_000, procs, cpuTasks},
		{"cpu/100u-1kt", 100, 1_000, procs, cpuTasks},
		{"io1ms/1u-20kt", 1, 20_000, 256, ioTasks},
		{"io1ms/1ku-20t", 1_000, 20, 256, ioTasks},
	}
	subjects := []struct {
		name string
		s    subject
	}{
		{"sluice", new(sluiceGoSubject)},
		{"sluice-submit", new(sluiceSubject)},
		{"sluice-q4096", &sluiceGoSubject{sluiceSubject{queue: smallQueueSize}}},
		{"pond", new(pondSubject)},
		{"ants", new(antsSubject)},
		{"errgroup", new(errgroupSubject)},
		{"conc", new(concSubject)},
		{"goroutines", new(goroutineSubject)},
	}
	for _, w := range workloads {
		b.Run(w.name, func(b *testing.B) {
			for _, sub := range subjects {
				b.Run(sub.name, func(b *testing.B) {
					runPeer(b, w, sub.s)
				})
			}
		})
	}
}

func runPeer(b *testing.B, w workload, s subject) {
	b.ReportAllocs()
	for b.Loop() {
		runIteration(b, s, w.users, w.perUser, w.limit, w.tasks, nil)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*w.total()), "ns/task")
}

// runIteration runs one iteration of a workload on s: it starts s, has
// users submitters submit perUser tasks each, calls beforeStop (if set)
// once every submitter has returned, stops s, and checks that exactly the
// workload's tasks ran.
func runIteration(b *testing.B, s subject, users, perUser, limit int, ts taskSet, beforeStop func()) {
	ran.Store(0)
	submitErr.Store(nil)
	curSubject, curPerUser = s, perUser

	s.start(limit, ts)
	submitters.Add(users)
	for range users {
		go submitLoop()
	}
	submitters.Wait()
	if beforeStop != nil {
		beforeStop()
	}
	stopErr := s.stop()

	if p := submitErr.Load(); p != nil {
		b.Fatalf("submit: %v", *p)
	}
	if stopErr != nil {
		b.Fatalf("stop: %v", stopErr)
	}
	if got := ran.Load(); got != int64(users*perUser) {
		b.Fatalf("%d tasks ran, want %d", got, users*perUser)
	}
}

// blockers hold a rejection benchmark's pool full: each takes one worker or
// queue slot and returns when release is closed.
var release chan struct{}

func blockCtx(context.Context) error { <-release; return nil }
func block()                         { <-release }

// BenchmarkReject measures refusing a task when every worker is busy and
// the queue is full: the cost a caller pays to learn it must back off.
func BenchmarkReject(b *testing.B) {
	b.Run("sluice-submit", func(b *testing.B) {
		release = make(chan struct{})
		p := workpool.New(workpool.Config{Workers: 1, QueueSize: 1, Policy: workpool.Reject})
		ctx := context.Background()
		for range 2 { // one running, one queued
			if _, err := p.Submit(ctx, blockCtx); err != nil {
				b.Fatal(err)
			}
		}
		waitFor(b, func() bool { st := p.Stats(); return st.Running == 1 && st.TotalQueued() == 1 })
		// re is declared outside the loop: errors.As makes it escape, and a
		// per-iteration variable would charge the harness's allocation to
		// the pool.
		var re *workpool.RejectError
		b.ReportAllocs()
		for b.Loop() {
			re = nil
			_, err := p.Submit(ctx, blockCtx)
			if !errors.As(err, &re) || !errors.Is(err, workpool.ErrQueueFull) {
				b.Fatalf("Submit = %v, want a *RejectError matching ErrQueueFull", err)
			}
		}
		b.StopTimer()
		close(release)
		if _, err := p.Close(ctx); err != nil {
			b.Fatal(err)
		}
	})

	b.Run("sluice", func(b *testing.B) {
		release = make(chan struct{})
		p := workpool.New(workpool.Config{Workers: 1, QueueSize: 1, Policy: workpool.Reject})
		ctx := context.Background()
		for range 2 { // one running, one queued
			if err := p.Go(ctx, blockCtx); err != nil {
				b.Fatal(err)
			}
		}
		waitFor(b, func() bool { st := p.Stats(); return st.Running == 1 && st.TotalQueued() == 1 })
		var re *workpool.RejectError // outside the loop, as above
		b.ReportAllocs()
		for b.Loop() {
			re = nil
			err := p.Go(ctx, blockCtx)
			if !errors.As(err, &re) || !errors.Is(err, workpool.ErrQueueFull) {
				b.Fatalf("Go = %v, want a *RejectError matching ErrQueueFull", err)
			}
		}
		b.StopTimer()
		close(release)
		if _, err := p.Close(ctx); err != nil {
			b.Fatal(err)
		}
	})

	// pond: Go on a non-blocking pool returns ErrQueueFull without a future;
	// TrySubmit is the entry point that returns a future and a bool.
	for _, variant := range []string{"pond-go", "pond-trysubmit"} {
		b.Run(variant, func(b *testing.B) {
			release = make(chan struct{})
			p := pond.NewPool(1, pond.WithQueueSize(1), pond.WithNonBlocking(true))
			for range 2 {
				if err := p.Go(block); err != nil {
					b.Fatal(err)
				}
			}
			waitFor(b, func() bool { return p.RunningWorkers() == 1 && p.WaitingTasks() == 1 })
			b.ReportAllocs()
			for b.Loop() {
				if variant == "pond-go" {
					if err := p.Go(block); !errors.Is(err, pond.ErrQueueFull) {
						b.Fatalf("Go = %v, want ErrQueueFull", err)
					}
				} else {
					if _, ok := p.TrySubmit(block); ok {
						b.Fatal("TrySubmit accepted a task on a full pool")
					}
				}
			}
			b.StopTimer()
			close(release)
			p.StopAndWait()
		})
	}

	// ants has no queue: with Nonblocking a pool of 1 busy worker is full.
	b.Run("ants", func(b *testing.B) {
		release = make(chan struct{})
		p, err := ants.NewPool(1, ants.WithNonblocking(true))
		if err != nil {
			b.Fatal(err)
		}
		if err := p.Submit(block); err != nil {
			b.Fatal(err)
		}
		waitFor(b, func() bool { return p.Running() == 1 })
		b.ReportAllocs()
		for b.Loop() {
			if err := p.Submit(block); !errors.Is(err, ants.ErrPoolOverload) {
				b.Fatalf("Submit = %v, want ErrPoolOverload", err)
			}
		}
		b.StopTimer()
		close(release)
		if err := p.ReleaseTimeout(10 * time.Second); err != nil {
			b.Fatal(err)
		}
	})
}

// waitFor polls cond until it holds, for at most 5 seconds.
func waitFor(b *testing.B, cond func() bool) {
	b.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			b.Fatal("condition not reached within 5s")
		}
		time.Sleep(time.Millisecond)
	}
}
