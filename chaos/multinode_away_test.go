package chaos_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/jobs"
	"github.com/sluicehq/sluice/jobs/pgstore"
)

// tcpProxy forwards connections on 127.0.0.1 to a target address. Cut
// makes the database go away: it resets every open connection, and resets
// new ones as soon as they are accepted, until Restore.
type tcpProxy struct {
	target string
	ln     net.Listener
	wg     sync.WaitGroup // the accept loop and every link

	mu       sync.Mutex
	down     bool                  // guarded by mu
	conns    map[net.Conn]struct{} // guarded by mu: both ends of every open link
	accepted int                   // guarded by mu: connections accepted
	refused  int                   // guarded by mu: of those, reset at once because the proxy was cut
}

// newTCPProxy starts a proxy to target, closed at cleanup.
func newTCPProxy(t *testing.T, target string) *tcpProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &tcpProxy{target: target, ln: ln, conns: make(map[net.Conn]struct{})}
	p.wg.Add(1)
	go p.acceptLoop()
	t.Cleanup(p.close)
	return p
}

func (p *tcpProxy) addr() string { return p.ln.Addr().String() }

func (p *tcpProxy) acceptLoop() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return // closed
		}
		p.mu.Lock()
		p.accepted++
		if p.down {
			p.refused++
			p.mu.Unlock()
			reset(c)
			continue
		}
		p.conns[c] = struct{}{} // a cut while it dials resets it
		p.wg.Add(1)
		p.mu.Unlock()
		go p.link(c)
	}
}

// link dials the target for c and copies both ways until either side
// ends or the proxy is cut.
func (p *tcpProxy) link(c net.Conn) {
	defer p.wg.Done()
	d, err := net.DialTimeout("tcp", p.target, 2*time.Second)
	p.mu.Lock()
	_, live := p.conns[c]
	if err != nil || !live {
		delete(p.conns, c)
		p.mu.Unlock()
		reset(c)
		if d != nil {
			reset(d)
		}
		return
	}
	p.conns[d] = struct{}{}
	p.mu.Unlock()
	done := make(chan struct{}, 2) // one send per copy below
	go func() { _, _ = io.Copy(d, c); done <- struct{}{} }()
	go func() { _, _ = io.Copy(c, d); done <- struct{}{} }()
	<-done
	p.mu.Lock()
	delete(p.conns, c)
	delete(p.conns, d)
	p.mu.Unlock()
	c.Close()
	d.Close()
	<-done
}

// reset closes c with an RST, as a dead server or a broken network would.
func reset(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	c.Close()
}

// cut resets every open connection and refuses new ones until restore.
func (p *tcpProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = true
	for c := range p.conns {
		reset(c)
	}
	clear(p.conns)
}

func (p *tcpProxy) restore() {
	p.mu.Lock()
	p.down = false
	p.mu.Unlock()
}

// counts returns the connections accepted and refused so far.
func (p *tcpProxy) counts() (accepted, refused int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.accepted, p.refused
}

// close stops the proxy and waits for its goroutines.
func (p *tcpProxy) close() {
	p.ln.Close()
	p.cut()
	p.wg.Wait()
}

// viaProxy returns the postgres:// URL u pointed at proxy, and the
// address it pointed at (the proxy's target).
func viaProxy(t *testing.T, u string) (target string, rewrite func(proxy string) string) {
	t.Helper()
	p, err := url.Parse(u)
	if err != nil || (p.Scheme != "postgres" && p.Scheme != "postgresql") || p.Host == "" || p.Query().Has("host") {
		t.Skipf("this test needs SLUICE_TEST_PG as a postgres://host:port URL, not %q", u)
	}
	target = p.Host
	if p.Port() == "" {
		target = net.JoinHostPort(p.Hostname(), "5432")
	}
	return target, func(proxy string) string {
		q := *p
		q.Host = proxy
		return q.String()
	}
}

// syncBuffer is a bytes.Buffer safe for concurrent writers: the logs of
// the in-process worker and stores, shown when the test fails.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer // guarded by mu
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// count returns how many times sub occurs in what was written.
func (s *syncBuffer) count(sub string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return bytes.Count(s.b.Bytes(), []byte(sub))
}

func (s *syncBuffer) tail(limit int) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.b.Bytes()
	if len(b) > limit {
		b = b[len(b)-limit:]
	}
	return string(b)
}

// fetchFailed is the message the worker logs for each failed fetch.
const fetchFailed = "jobs: fetch failed"

// enqueueFailure is one failed EnqueueMany call.
type enqueueFailure struct {
	at   time.Time
	took time.Duration
	err  error
}

// awayEnqueuer's results.
type awayEnqueued struct {
	accepted   map[int64]time.Time // job ID -> when its enqueue returned
	failures   []enqueueFailure
	unexpected error // a failure that is not ErrUnavailable, or a job's own error
}

// TestDatabaseAwayDuringLoad runs an in-process jobs.Worker and a
// jobs.Client, each on its own pgstore.Store that reaches PostgreSQL
// through its own TCP proxy, under load; then cuts both proxies for about
// 2s (open connections reset, new ones refused) and restores them. While
// the database is away, enqueues must fail fast with errors wrapping
// jobs.ErrUnavailable and the worker must back off rather than spin; once
// it is back, every job accepted before, during (none) and after the cut
// must complete, each run once.
func TestDatabaseAwayDuringLoad(t *testing.T) {
	u := pgURL(t)
	target, rewrite := viaProxy(t, u)
	schema := pgSchema(t, u)
	direct := openPG(t, u, schema, pgstore.Config{}) // the test's view, never cut

	logs := &syncBuffer{}
	logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("worker and store logs (tail):\n%s", logs.tail(6000))
		}
	})
	const storeTimeout = 2 * time.Second
	wp := newTCPProxy(t, target) // the worker's way to the database
	cp := newTCPProxy(t, target) // the client's
	wst := openPG(t, rewrite(wp.addr()), schema, pgstore.Config{Timeout: storeTimeout, Logger: logger})
	cst := openPG(t, rewrite(cp.addr()), schema, pgstore.Config{Timeout: storeTimeout, Logger: logger})
	cli := jobs.NewClient(cst, jobs.ClientConfig{CallTimeout: storeTimeout})

	var (
		runsMu sync.Mutex
		runs   = make(map[int64]int) // guarded by runsMu: completed runs per job
	)
	reg := jobs.NewRegistry()
	reg.Handle(effectKind, jobs.HandlerFunc(func(ctx context.Context, j *jobs.Job) error {
		tm := time.NewTimer(time.Duration(1+rand.IntN(10)) * time.Millisecond)
		defer tm.Stop()
		select {
		case <-tm.C:
		case <-ctx.Done():
			return context.Cause(ctx)
		}
		runsMu.Lock()
		runs[j.ID]++
		runsMu.Unlock()
		return nil
	}))
	w := jobs.NewWorker(wst, reg, jobs.WorkerConfig{
		ID: "away-worker",
		// Longer than the outage plus a heartbeat interval: the jobs held
		// through the cut keep their leases and their outcomes are written
		// once the database is back.
		Lease:               4 * time.Second,
		PollInterval:        5 * time.Millisecond,
		MaxPollInterval:     50 * time.Millisecond,
		MaintenanceInterval: 200 * time.Millisecond,
		CallTimeout:         storeTimeout,
		Logger:              logger,
	})
	startCtx, startCancel := context.WithTimeout(context.Background(), 10*time.Second)
	err := w.Start(startCtx)
	startCancel()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := w.Stop(ctx); err != nil {
			t.Errorf("worker stop: %v", err)
		}
	})

	before, outage, after := 1500*time.Millisecond, 2*time.Second, 1500*time.Millisecond
	if testing.Short() {
		before, after = time.Second, time.Second
	}

	// The enqueuer: batches of 1 to 4 jobs, a short pause between them;
	// a failed batch is retried with the same idempotency keys, so that a
	// commit whose answer was lost in the cut is acknowledged by the retry.
	stop := make(chan struct{}) // closed by the test to end the enqueuer
	enq := make(chan awayEnqueued, 1)
	go func() {
		res := awayEnqueued{accepted: make(map[int64]time.Time)}
		defer func() { enq <- res }()
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		key := 0
		var batch []jobs.NewJob
		for {
			select {
			case <-stop:
				return
			default:
			}
			if batch == nil {
				batch = make([]jobs.NewJob, 1+rand.IntN(4))
				for i := range batch {
					batch[i] = jobs.NewJob{Kind: effectKind, IdempotencyKey: fmt.Sprintf("away-%d", key), MaxAttempts: 25}
					key++
				}
			}
			began := time.Now()
			out, err := cli.EnqueueMany(ctx, jobs.DefaultQueue, batch)
			if err != nil {
				res.failures = append(res.failures, enqueueFailure{at: began, took: time.Since(began), err: err})
				if !errors.Is(err, jobs.ErrUnavailable) {
					res.unexpected = err
					return
				}
				time.Sleep(20 * time.Millisecond)
				continue
			}
			for _, r := range out {
				if r.Err != nil {
					res.unexpected = r.Err
					return
				}
				res.accepted[r.Job.ID] = time.Now()
			}
			batch = nil
			time.Sleep(time.Duration(rand.IntN(10)) * time.Millisecond)
		}
	}()
	ended := false
	endEnqueuer := func() awayEnqueued {
		if !ended {
			ended = true
			close(stop)
		}
		select {
		case r := <-enq:
			return r
		case <-time.After(30 * time.Second):
			t.Fatal("enqueuer not done 30s after it was told to stop")
			return awayEnqueued{}
		}
	}
	defer func() { // after a Fatal: stop the enqueuer
		if !ended {
			endEnqueuer()
		}
	}()

	time.Sleep(before)
	errs0 := w.Stats().StoreErrs
	acc0, ref0 := wp.counts()
	cutAt := time.Now()
	wp.cut()
	cp.cut()
	time.Sleep(outage)
	restoreAt := time.Now()
	errs1 := w.Stats().StoreErrs
	acc1, ref1 := wp.counts()
	fetchFails := logs.count(fetchFailed)
	wp.restore()
	cp.restore()
	time.Sleep(after)
	res := endEnqueuer()
	if res.unexpected != nil {
		t.Fatalf("enqueue: %v", res.unexpected)
	}

	// Every accepted job must end succeeded (jobs claimed by a fetch whose
	// answer the cut lost come back when their lease expires).
	waitCtx, waitCancel := context.WithTimeout(context.Background(), 30*time.Second)
	err = waitQueueIdle(waitCtx, direct)
	waitCancel()
	if err != nil {
		t.Fatalf("after the database came back: %v", err)
	}
	snapCtx, snapCancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer snapCancel()
	final, err := direct.List(snapCtx, jobs.ListFilter{Limit: 1_000_000})
	if err != nil {
		t.Fatal(err)
	}
	byID := make(map[int64]*jobs.Job, len(final))
	for _, j := range final {
		byID[j.ID] = j
	}
	var acceptedBefore, acceptedAfter, lost, retried int
	runsMu.Lock()
	doneRuns := make(map[int64]int, len(runs))
	for id, n := range runs {
		doneRuns[id] = n
	}
	runsMu.Unlock()
	for id, at := range res.accepted {
		switch {
		case at.Before(cutAt):
			acceptedBefore++
		case at.After(restoreAt):
			acceptedAfter++
		}
		j := byID[id]
		if j == nil || j.State != jobs.StateSucceeded {
			lost++
			if lost <= 10 {
				t.Errorf("job %d accepted at %v, now %+v, want succeeded", id, at.Sub(cutAt), j)
			}
			continue
		}
		if j.Attempt > 1 {
			retried++
		}
		if n := doneRuns[id]; n != 1 {
			t.Errorf("job %d: %d completed runs, want 1", id, n)
		}
	}
	var during, slow, outside int
	var longest time.Duration
	for _, f := range res.failures {
		longest = max(longest, f.took)
		if f.took > storeTimeout+time.Second {
			slow++
			t.Errorf("enqueue failed after %v (> store timeout %v + 1s): %v", f.took, storeTimeout, f.err)
		}
		if !f.at.Before(cutAt) && f.at.Before(restoreAt) {
			during++
		} else {
			outside++
		}
	}
	t.Logf("database away for %v; enqueue: %d jobs accepted (%d before the cut, %d after it came back); "+
		"%d calls failed with ErrUnavailable (%d during the cut, %d outside it), the slowest after %v",
		restoreAt.Sub(cutAt).Round(time.Millisecond), len(res.accepted), acceptedBefore, acceptedAfter,
		len(res.failures), during, outside, longest.Round(time.Microsecond))
	t.Logf("worker during the cut: %d failed fetches, %d store errors in all, %d connection attempts refused; "+
		"jobs run %d, needed more than one attempt %d, lost %d; stats %+v",
		fetchFails, errs1-errs0, ref1-ref0, len(doneRuns), retried, lost, w.Stats())
	if len(res.failures) == 0 || during == 0 {
		t.Errorf("no enqueue failed while the database was away")
	}
	if acceptedBefore == 0 || acceptedAfter == 0 {
		t.Errorf("accepted %d jobs before the cut and %d after it: the load did not span it", acceptedBefore, acceptedAfter)
	}
	// No hot loop: fetch backs off from PollInterval doubling up to 5s
	// (about 9 failures in 2s); heartbeats come every lease/3, maintenance
	// every 200ms, the completer's retries every 100ms plus the store's own
	// retries: about 30 store errors in 2s (measured: 28), each call up to
	// 4 connection attempts (measured: about 250 in all). A fetch loop
	// without backoff would fail thousands of times.
	if fetchFails == 0 || fetchFails > 20 {
		t.Errorf("failed fetches during the %v cut: %d, want 1..20", outage, fetchFails)
	}
	if d := errs1 - errs0; d == 0 || d > 100 {
		t.Errorf("worker store errors during the %v cut: %d, want 1..100", outage, d)
	}
	if d := ref1 - ref0; d > 400 {
		t.Errorf("worker connection attempts during the %v cut: %d, want at most 400 (accepted overall %d -> %d)", outage, d, acc0, acc1)
	}
}
