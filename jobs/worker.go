package jobs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"runtime/debug"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/sluicehq/sluice/workpool"
)

// WorkerConfig holds a Worker's optional settings. Zero values work.
type WorkerConfig struct {
	// ID names the worker in leases; it must differ between live workers.
	// Empty means "<hostname>-<pid>-<random>".
	ID string
	// Queues to work. Nil means DefaultQueue only.
	Queues []string
	// Lease is how long a fetched job belongs to this worker without a
	// heartbeat; a crashed worker's jobs are recovered this long after its
	// last heartbeat. Zero means 10s.
	Lease time.Duration
	// HeartbeatInterval: zero means Lease/3.
	HeartbeatInterval time.Duration
	// FetchBatch bounds the jobs claimed per fetch. Zero means 500.
	FetchBatch int
	// PollInterval is the first wait after an empty fetch; it doubles up
	// to MaxPollInterval while the queue stays empty. On a store that
	// implements Lookahead (both of Sluice's do), a later wait also ends
	// when the queue's next scheduled job (RunAt, or a retry's backoff)
	// comes due, so such a job starts at most PollInterval late. Zeros
	// mean 10ms and 500ms.
	PollInterval, MaxPollInterval time.Duration
	// MaintenanceInterval: how often lease recovery, deadline expiry,
	// retention and queue configuration reload run. Zero means 1s.
	MaintenanceInterval time.Duration
	// Retention is how long jobs in a terminal state stay readable (Get,
	// List, Group) before maintenance deletes them, in every queue of the
	// store, at most RetentionBatch×10 per pass and for at most one
	// MaintenanceInterval. A queue's jobs are kept at least its
	// IdempotencyWindow (24h by default), so that no bound key loses its
	// job. Zero means DefaultRetention; negative keeps them forever.
	Retention time.Duration
	// RetentionBatch bounds the jobs one DeleteFinished call deletes (and
	// so how long it holds the database). Zero means 1000.
	RetentionBatch int
	// CallTimeout bounds each store call. Zero means 5s.
	CallTimeout time.Duration
	// FlushDelay lets outcomes accumulate before they are written in one
	// transaction. Zero means 2ms.
	FlushDelay time.Duration
	// Logger: nil means slog.Default().
	Logger *slog.Logger
	// Now: nil means time.Now.
	Now func() time.Time
	// OnRecorded, if set, is called after each batch of outcomes was
	// written, with which ones applied (fencing may refuse stale ones).
	OnRecorded func(outcomes []Outcome, applied []bool)
	// OnAttempt, if set, is called on the job's goroutine after each
	// attempt's handler returned, with the outcome it will record and the
	// handler's run time (not called when the lease was lost, nor for an
	// attempt that ended before its handler started: see heldJob.stop).
	// job is the job as fetched, whatever the handler did to its own.
	OnAttempt func(job *Job, o Outcome, run time.Duration)
}

// Worker runs jobs: it fetches them in batches from its queues, runs their
// handlers on a bounded workpool per queue, heartbeats their leases, and
// records outcomes in batches. It is a lifecycle component: Start, then
// Quiesce (stop fetching), Drain (let running jobs finish until ctx ends,
// then cancel them: they go back to waiting without using an attempt) and
// Stop (write the last outcomes, stop every goroutine). Stop alone does all
// of it.
type Worker struct {
	store Store
	reg   *Registry
	cfg   WorkerConfig
	log   *slog.Logger

	fetchCtx   context.Context // canceled by Quiesce
	stopFetch  context.CancelFunc
	jobsCtx    context.Context // parent of every job's context; canceled with errShutdown at the drain deadline
	cancelJobs context.CancelCauseFunc
	bgCtx      context.Context // heartbeats, maintenance, completer; canceled by Stop
	stopBG     context.CancelFunc
	fetchers   sync.WaitGroup
	background sync.WaitGroup // heartbeats, maintenance, notifications
	completer  sync.WaitGroup
	// stopComplete is closed by Stop (once, in state 4) to end completeLoop.
	stopComplete chan struct{}
	flushSignal  chan struct{} // buffer 1; any goroutine may signal, nobody closes
	// listening is set by Start, before it starts the maintenance loop,
	// when the store's Listen succeeded; read-only after.
	listening bool

	beatMu    sync.Mutex // serializes beat
	mu        sync.Mutex
	state     int                     // guarded by mu: 0 new, 1 started, 2 quiesced, 3 drained, 4 stopped
	queues    map[string]*queueRunner // guarded by mu after Start
	held      map[int64]*heldJob      // guarded by mu; fetched jobs whose outcome is not yet written
	pending   []Outcome               // guarded by mu; outcomes not yet written
	stats     WorkerStats             // guarded by mu
	stopErr   error                   // guarded by mu
	stoppedCh chan struct{}           // closed when Stop finished

	// early holds, by job ID, when a cancellation request was seen for a
	// job this worker did not hold (yet): a notification or a slow fetch's
	// renewal can report one before dispatch registers the job. earlyOrder
	// lists the same notes oldest first, so that the ones older than a
	// lease are dropped in amortized constant time (see noteEarlyCancel).
	// Guarded by mu.
	early      map[int64]time.Time
	earlyOrder []earlyNote
}

// WorkerStats counts what a worker did.
type WorkerStats struct {
	Fetched  int
	Running  int
	Recorded map[OutcomeKind]int // outcomes written and applied
	Stale    int                 // outcomes refused by fencing
	// LostBeforeStart counts fetched jobs that were not run because their
	// lease was lost before they started: a slow fetch (a heartbeat
	// interval or longer) renews the leases it got, which count from
	// before the call, and drops the jobs that lease recovery (this
	// worker's or another node's) has taken back by then, or all of them
	// when the renewal fails after the lease has run out; and a job still
	// waiting to start (for its queue's rate limit) whose lease a
	// heartbeat reported lost, or ran out while heartbeats failed.
	LostBeforeStart int
	StoreErrs       int
	// Refused counts outcomes the store refused for their data (not for
	// being unavailable): the worker gave them up, and their jobs are
	// recovered when their leases expire.
	Refused int
	// Maintenance this worker ran: passes (as the leader, where the store
	// elects one), running jobs whose lease had expired, waiting jobs
	// ended expired by their deadline, and finished jobs deleted after
	// their retention.
	MaintenancePasses, Recovered, ExpiredWaiting, Deleted int
}

// earlyNote is an entry of Worker.earlyOrder.
type earlyNote struct {
	id int64
	at time.Time
}

type heldJob struct {
	job    *Job
	q      *queueRunner
	cancel context.CancelCauseFunc // nil until the handler starts
	// stopWait, while dispatch waits for the queue's rate limiter before
	// starting the job, ends that wait; stop calls it.
	stopWait context.CancelFunc
	// pending is a cancellation that came before the handler started
	// (errCancelRequested or errLeaseLost); runFunc applies it at start
	// and does not call the handler. cancelReq records that a
	// cancellation was requested, even while a lost lease outranks it.
	pending   error
	cancelReq bool
	// until is when the job's lease runs out as far as this worker knows:
	// the fetch's (or its renewal's) time plus Lease, moved by each
	// heartbeat that extends it.
	until time.Time
}

// stop cancels the job's attempt with cause: at once if its handler has
// started, else when it starts. A lost lease outranks a requested
// cancellation, because its outcome must not be written. The caller holds
// Worker.mu.
func (h *heldJob) stop(cause error) {
	if h.cancel != nil {
		h.cancel(cause)
		return
	}
	if errors.Is(cause, errCancelRequested) {
		h.cancelReq = true
	}
	if h.pending == nil || errors.Is(cause, errLeaseLost) {
		h.pending = cause
	}
	if h.stopWait != nil { // it need not wait for a start it will not make
		h.stopWait()
	}
}

// renewed records that a heartbeat extended the job's lease. A lost lease
// recorded for a job that has not started (an earlier heartbeat failed)
// is withdrawn: the job still may start, unless its cancellation was
// requested. The caller holds Worker.mu.
func (h *heldJob) renewed() {
	if h.cancel == nil && errors.Is(h.pending, errLeaseLost) {
		h.pending = nil
		if h.cancelReq {
			h.pending = errCancelRequested
		}
	}
}

// noteEarlyCancel records a cancellation request for job id, which this
// worker does not hold: dispatch applies it if a fetch in flight returns
// the job. Every worker hears every cancellation, so entries older than a
// lease (no fetch takes that long and still runs its jobs; see
// renewFetched) are dropped here. The caller holds mu.
func (w *Worker) noteEarlyCancel(id int64, now time.Time) {
	drop := 0
	for _, n := range w.earlyOrder {
		if now.Sub(n.at) <= w.cfg.Lease {
			break
		}
		if at, ok := w.early[n.id]; ok && at.Equal(n.at) {
			delete(w.early, n.id)
		}
		drop++
	}
	w.earlyOrder = append(w.earlyOrder[drop:], earlyNote{id, now})
	w.early[id] = now
}

type queueRunner struct {
	name    string
	cfg     QueueConfig // guarded by Worker.mu
	pool    *workpool.Pool
	limiter *rate.Limiter // nil without a rate limit; guarded by Worker.mu
	free    chan struct{} // buffer 1: a slot freed; signalled by job goroutines, nobody closes
	wake    chan struct{} // buffer 1: wakeFetch or wakeAt was set; nobody closes
	active  int           // guarded by Worker.mu: fetched, handler not yet returned
	// wakeFetch (jobs due now arrived) and wakeAt (the earliest RunAt of
	// jobs scheduled for later that arrived) are what a store notification
	// or a recorded retry told the fetch loop since it last fetched.
	// Guarded by Worker.mu.
	wakeFetch bool
	wakeAt    time.Time
}

// wakeLocked tells q's fetch loop that jobs became waiting, due at at (the
// zero time or a time not after now: due now). The caller holds Worker.mu.
func (q *queueRunner) wakeLocked(at, now time.Time) {
	if at.After(now) {
		if q.wakeAt.IsZero() || at.Before(q.wakeAt) {
			q.wakeAt = at
		}
	} else {
		q.wakeFetch = true
	}
	signal(q.wake)
}

// takeWake returns and clears what q's fetch loop was told (see
// wakeLocked), and drains the signal.
func (w *Worker) takeWake(q *queueRunner) (fetch bool, at time.Time) {
	select {
	case <-q.wake:
	default:
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	fetch, at = q.wakeFetch, q.wakeAt
	q.wakeFetch, q.wakeAt = false, time.Time{}
	return fetch, at
}

// Causes of a job context's end, told apart when classifying the outcome.
var (
	errShutdown        = errors.New("jobs: worker stopping")
	errCancelRequested = errors.New("jobs: job canceled")
	errLeaseLost       = errors.New("jobs: lease lost")
	errJobDeadline     = errors.New("jobs: job deadline passed")
	errAttemptTimeout  = errors.New("jobs: attempt timeout")
)

// NewWorker returns a worker of store running the handlers in reg.
func NewWorker(store Store, reg *Registry, cfg WorkerConfig) *Worker {
	if cfg.ID == "" {
		host, _ := os.Hostname()
		cfg.ID = fmt.Sprintf("%s-%d-%06x", host, os.Getpid(), rand.N(1<<24))
	}
	if len(cfg.Queues) == 0 {
		cfg.Queues = []string{DefaultQueue}
	}
	if cfg.Lease <= 0 {
		cfg.Lease = 10 * time.Second
	}
	if cfg.HeartbeatInterval <= 0 {
		cfg.HeartbeatInterval = cfg.Lease / 3
	}
	if cfg.FetchBatch <= 0 {
		cfg.FetchBatch = 500
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = 10 * time.Millisecond
	}
	if cfg.MaxPollInterval <= 0 {
		cfg.MaxPollInterval = 500 * time.Millisecond
	}
	if cfg.MaintenanceInterval <= 0 {
		cfg.MaintenanceInterval = time.Second
	}
	if cfg.CallTimeout <= 0 {
		cfg.CallTimeout = 5 * time.Second
	}
	if cfg.Retention == 0 {
		cfg.Retention = DefaultRetention
	}
	if cfg.RetentionBatch <= 0 {
		cfg.RetentionBatch = 1000
	}
	if cfg.FlushDelay <= 0 {
		cfg.FlushDelay = 2 * time.Millisecond
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	w := &Worker{
		store:        store,
		reg:          reg,
		cfg:          cfg,
		log:          cfg.Logger,
		flushSignal:  make(chan struct{}, 1),
		stopComplete: make(chan struct{}),
		held:         make(map[int64]*heldJob),
		early:        make(map[int64]time.Time),
		queues:       make(map[string]*queueRunner),
		stoppedCh:    make(chan struct{}),
	}
	if w.log == nil {
		w.log = slog.Default()
	}
	w.stats.Recorded = make(map[OutcomeKind]int)
	w.fetchCtx, w.stopFetch = context.WithCancel(context.Background())
	w.jobsCtx, w.cancelJobs = context.WithCancelCause(context.Background())
	w.bgCtx, w.stopBG = context.WithCancel(context.Background())
	return w
}

// ID returns the worker's lease owner name.
func (w *Worker) ID() string { return w.cfg.ID }

// Stats returns a snapshot of the worker's counters.
func (w *Worker) Stats() WorkerStats {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := w.stats
	s.Recorded = make(map[OutcomeKind]int, len(w.stats.Recorded))
	for k, v := range w.stats.Recorded {
		s.Recorded[k] = v
	}
	s.Running = len(w.held)
	return s
}

// Start loads the queues' configurations, recovers expired leases, and
// starts fetching. It returns ErrClosed after Stop.
func (w *Worker) Start(ctx context.Context) error {
	w.mu.Lock()
	if w.state != 0 {
		w.mu.Unlock()
		if w.state >= 4 {
			return ErrClosed
		}
		return errors.New("jobs: worker already started")
	}
	w.state = 1
	w.mu.Unlock()

	runners := make(map[string]*queueRunner)
	for _, name := range w.cfg.Queues {
		qc, err := w.loadQueue(ctx, name)
		if err != nil {
			return fmt.Errorf("jobs: worker start: queue %q: %w", name, err)
		}
		q := &queueRunner{name: name, cfg: qc, free: make(chan struct{}, 1), wake: make(chan struct{}, 1)}
		// The queue buffer absorbs the moment between a job freeing its slot
		// and its pool worker becoming free; the fetch loop never claims
		// more jobs than the queue's concurrency.
		q.pool = workpool.New(workpool.Config{Workers: qc.Concurrency, QueueSize: qc.Concurrency, Policy: workpool.Wait})
		if qc.RateLimit > 0 {
			q.limiter = rate.NewLimiter(rate.Limit(qc.RateLimit), qc.RateBurst)
		}
		runners[name] = q
	}
	w.maintain(ctx) // a restarted worker recovers the jobs of its crashed predecessor at once

	w.mu.Lock()
	w.queues = runners
	w.mu.Unlock()
	for _, q := range runners {
		w.fetchers.Add(1)
		go func() {
			defer w.fetchers.Done()
			w.fetchLoop(q)
		}()
	}
	if n, ok := w.store.(Notifier); ok {
		events, err := n.Listen(w.bgCtx)
		if err != nil {
			w.log.Warn("jobs: store notifications unavailable, polling only", "err", err)
		} else {
			w.listening = true
			w.background.Add(1)
			go func() { defer w.background.Done(); w.notifyLoop(events) }()
		}
	}
	w.background.Add(2)
	go func() { defer w.background.Done(); w.heartbeatLoop() }()
	go func() { defer w.background.Done(); w.maintenanceLoop() }()
	w.completer.Add(1)
	go func() { defer w.completer.Done(); w.completeLoop() }()
	w.log.Info("jobs: worker started", "worker", w.cfg.ID, "queues", w.cfg.Queues)
	return nil
}

func (w *Worker) loadQueue(ctx context.Context, name string) (QueueConfig, error) {
	qc, err := call(ctx, w.cfg.CallTimeout, func(ctx context.Context) (QueueConfig, error) { return w.store.GetQueue(ctx, name) })
	if errors.Is(err, ErrNotFound) {
		qc, err = QueueConfig{Name: name}, nil
	}
	if err != nil {
		return qc, err
	}
	qc.ClampStored()
	return qc, qc.Normalize()
}

// Quiesce stops fetching new jobs and returns once no fetch is in flight.
// Running jobs go on.
func (w *Worker) Quiesce(ctx context.Context) error {
	w.mu.Lock()
	if w.state == 1 {
		w.state = 2
	}
	w.mu.Unlock()
	w.stopFetch()
	return waitCtx(ctx, &w.fetchers)
}

// Drain waits for running jobs to finish until ctx ends, then cancels
// them; a job whose handler returns because of that goes back to waiting
// without using an attempt. Drain returns once every handler returned. It
// quiesces first if Quiesce was not called.
func (w *Worker) Drain(ctx context.Context) error {
	if err := w.Quiesce(ctx); err != nil {
		w.cancelJobs(errShutdown)
		w.fetchers.Wait()
	}
	w.mu.Lock()
	if w.state < 3 {
		w.state = 3
	}
	runners := w.queues
	w.mu.Unlock()
	for _, q := range runners {
		// At ctx's end the pool cancels its tasks' contexts, which cancels
		// each job's context with errShutdown (see runFunc): the handlers
		// return and their jobs are released. Tasks that had not started
		// come back here and are released too.
		unstarted, _ := q.pool.Close(ctx)
		for _, t := range unstarted {
			w.finish(q, Outcome{Attempt: attemptOf(t.Tag().(*Job)), Kind: Released}, nil)
		}
	}
	return nil
}

// Stop drains (see Drain) until shortly before ctx ends (it keeps a
// quarter of the time left, at most 1s, for the last writes), writes every
// outcome it can before ctx ends, and stops the worker's goroutines. Outcomes it could
// not write are left to lease recovery: those jobs run again. Stop is
// idempotent and safe from several goroutines and before Start.
func (w *Worker) Stop(ctx context.Context) error {
	w.mu.Lock()
	switch w.state {
	case 0:
		w.state = 4
		w.mu.Unlock()
		close(w.stoppedCh)
		return nil
	case 4:
		w.mu.Unlock()
		<-w.stoppedCh
		w.mu.Lock()
		defer w.mu.Unlock()
		return w.stopErr
	}
	w.state = 4
	w.mu.Unlock()

	// Keep a quarter of the budget (at most 1s) to write the outcomes of
	// the jobs that the drain deadline interrupted.
	drainCtx := ctx
	if dl, ok := ctx.Deadline(); ok {
		var cancel context.CancelFunc
		drainCtx, cancel = context.WithDeadline(ctx, dl.Add(-min(time.Until(dl)/4, time.Second)))
		defer cancel()
	}
	_ = w.Drain(drainCtx)
	close(w.stopComplete)
	w.completer.Wait() // its last batch is written or back in pending
	flushErr := w.flush(ctx, true)
	if e, ok := w.store.(Elector); ok {
		rctx, cancel := context.WithTimeout(ctx, w.cfg.CallTimeout)
		if err := e.Resign(rctx, w.cfg.ID); err != nil {
			w.log.Warn("jobs: resigning leadership failed; it lapses by itself", "err", err)
		}
		cancel()
	}
	w.stopBG()
	w.background.Wait()
	w.cancelJobs(errShutdown)
	w.stopFetch()

	w.mu.Lock()
	left := len(w.pending)
	if flushErr != nil {
		w.stopErr = fmt.Errorf("jobs: worker stop: %d outcomes not written (their jobs will be recovered): %w", left, flushErr)
	}
	err := w.stopErr
	w.mu.Unlock()
	close(w.stoppedCh)
	w.log.Info("jobs: worker stopped", "worker", w.cfg.ID, "unwritten", left)
	return err
}

func waitCtx(ctx context.Context, wg *sync.WaitGroup) error {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// fetchLoop claims jobs for one queue whenever it has free slots.
func (w *Worker) fetchLoop(q *queueRunner) {
	idle := w.cfg.PollInterval
	errWait := w.cfg.PollInterval
	for w.fetchCtx.Err() == nil {
		w.mu.Lock()
		free := q.cfg.Concurrency - q.active
		lim := q.limiter
		w.mu.Unlock()
		if free <= 0 {
			select {
			case <-q.free:
			case <-w.fetchCtx.Done():
			}
			continue
		}
		n := min(free, w.cfg.FetchBatch)
		if lim != nil {
			n = min(n, max(lim.Burst(), 1))
		}
		// This fetch sees every job that a wake so far announced as due;
		// a scheduled one is found by the lookahead below.
		w.takeWake(q)
		now := w.cfg.Now()
		// A fetch in flight is not canceled by Quiesce (only bounded by
		// CallTimeout): a store may already have claimed the jobs, and they
		// must reach this worker so that it can release them.
		jobs, err := call(w.bgCtx, w.cfg.CallTimeout, func(ctx context.Context) ([]*Job, error) {
			return w.store.Fetch(ctx, now, q.name, w.cfg.ID, n, w.cfg.Lease)
		})
		leaseFrom := now
		if err == nil && len(jobs) > 0 && w.fetchCtx.Err() != nil {
			w.release(q, jobs, leaseFrom)
			return
		}
		if err == nil && len(jobs) > 0 && w.cfg.Now().Sub(now) >= w.renewAfter() {
			if jobs, leaseFrom = w.renewFetched(jobs, now); len(jobs) == 0 {
				continue // all lost: fetch again at once
			}
			if w.fetchCtx.Err() != nil { // quiesced during the renewal
				w.release(q, jobs, leaseFrom)
				return
			}
		}
		if err != nil {
			if w.fetchCtx.Err() != nil {
				return
			}
			w.countStoreErr()
			w.log.Warn("jobs: fetch failed, backing off", "queue", q.name, "wait", errWait, "err", err)
			sleepCtx(w.fetchCtx, errWait)
			errWait = min(2*errWait, 5*time.Second)
			continue
		}
		errWait = w.cfg.PollInterval
		if len(jobs) == 0 {
			w.idle(q, w.idleWait(q, idle, now))
			idle = min(2*idle, w.cfg.MaxPollInterval)
			continue
		}
		idle = w.cfg.PollInterval
		w.dispatch(q, jobs, lim, leaseFrom)
	}
}

// cancelsNotified reports whether the store's notifications carry every
// cancellation request, from any process, to this worker.
func (w *Worker) cancelsNotified() bool {
	n, ok := w.store.(Notifier)
	if !ok || !w.listening {
		return false
	}
	l, ok := n.(LocalNotifier)
	return !ok || !l.LocalOnly()
}

// idle waits up to d after an empty fetch, or until a wake says that jobs
// due now arrived. A wake for jobs scheduled for later only shortens the
// wait, to their RunAt (not under PollInterval): it needs no fetch now.
func (w *Worker) idle(q *queueRunner, d time.Duration) {
	end := time.Now().Add(d)
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			return
		case <-w.fetchCtx.Done():
			return
		case <-q.wake:
		}
		fetch, at := w.takeWake(q)
		if fetch {
			return
		}
		if at.IsZero() {
			continue
		}
		if left := max(at.Sub(w.cfg.Now()), w.cfg.PollInterval); time.Now().Add(left).Before(end) {
			end = time.Now().Add(left)
			t.Reset(left)
		}
	}
}

// idleWait is how long fetchLoop waits after an empty fetch at now: idle,
// or less if the store says (Lookahead) that a scheduled job of q comes due
// sooner, but never less than PollInterval, so that the loop does not spin
// (say, when WorkerConfig.Now lags behind real time). The first wait after
// work (idle = PollInterval) asks nothing, so that a busy queue that runs
// dry for a moment costs no extra call. Either way a job due during a wait
// is found at most PollInterval late.
func (w *Worker) idleWait(q *queueRunner, idle time.Duration, now time.Time) time.Duration {
	la, ok := w.store.(Lookahead)
	if !ok || idle <= w.cfg.PollInterval {
		return idle
	}
	type due struct {
		at    time.Time
		found bool
	}
	d, err := call(w.fetchCtx, w.cfg.CallTimeout, func(ctx context.Context) (due, error) {
		at, found, err := la.NextDue(ctx, now, q.name)
		return due{at, found}, err
	})
	if err != nil {
		if w.fetchCtx.Err() == nil {
			w.countStoreErr()
			w.log.Warn("jobs: looking up the next scheduled job failed", "queue", q.name, "err", err)
		}
		return idle
	}
	if !d.found {
		return idle
	}
	return min(idle, max(d.at.Sub(w.cfg.Now()), w.cfg.PollInterval))
}

// renewAfter is how long a fetch may take before renewFetched renews the
// leases it returned: long enough that the lease left (counted from before
// the call) may run out before the next heartbeat tick.
func (w *Worker) renewAfter() time.Duration {
	return min(w.cfg.HeartbeatInterval, w.cfg.Lease-w.cfg.HeartbeatInterval)
}

// renewFetched extends the leases of jobs from a slow fetch that started at
// fetchedAt (see renewAfter): their leases count from then, so without this
// they could expire before the next heartbeat, or have expired already. It
// returns the jobs still held; the others were lost by the time of the
// renewal (their lease expired and lease recovery, this worker's or another
// node's, took them back) and must not run. If the renewal fails, the jobs
// run and the heartbeat loop goes on trying, as for any held job, unless
// their lease has certainly expired: then none runs, and lease recovery
// takes them back. leaseFrom is when the leases of the jobs returned were
// last set: the renewal's time, or fetchedAt if it failed.
func (w *Worker) renewFetched(jobs []*Job, fetchedAt time.Time) (kept []*Job, leaseFrom time.Time) {
	held := make([]Attempt, len(jobs))
	for i, j := range jobs {
		held[i] = attemptOf(j)
	}
	now := w.cfg.Now()
	var lost, cancelReq []int64
	_, err := call(w.bgCtx, w.cfg.CallTimeout, func(ctx context.Context) (struct{}, error) {
		var err error
		lost, cancelReq, err = w.store.Heartbeat(ctx, now, w.cfg.ID, held, w.cfg.Lease)
		return struct{}{}, err
	})
	if len(cancelReq) > 0 { // cancellations requested during the fetch: dispatch applies them
		w.mu.Lock()
		for _, id := range cancelReq {
			w.noteEarlyCancel(id, time.Now())
		}
		w.mu.Unlock()
	}
	if err != nil {
		w.countStoreErr()
		if w.cfg.Now().Sub(fetchedAt) >= w.cfg.Lease {
			w.mu.Lock()
			w.stats.LostBeforeStart += len(jobs)
			w.mu.Unlock()
			w.log.Warn("jobs: renewing the leases of a slow fetch failed and they have expired; not running its jobs", "jobs", len(jobs), "err", err)
			return nil, fetchedAt
		}
		w.log.Warn("jobs: renewing the leases of a slow fetch failed", "jobs", len(jobs), "err", err)
		return jobs, fetchedAt
	}
	if len(lost) == 0 {
		return jobs, now
	}
	gone := make(map[int64]bool, len(lost))
	for _, id := range lost {
		gone[id] = true
	}
	kept = jobs[:0]
	for _, j := range jobs {
		if !gone[j.ID] {
			kept = append(kept, j)
		}
	}
	w.mu.Lock()
	w.stats.LostBeforeStart += len(jobs) - len(kept)
	w.mu.Unlock()
	w.log.Warn("jobs: a slow fetch returned jobs whose lease was already lost; not running them", "lost", len(jobs)-len(kept))
	return kept, now
}

// release hands back jobs fetched after Quiesce: back to waiting, no
// attempt used. Their leases were set at leaseFrom.
func (w *Worker) release(q *queueRunner, jobs []*Job, leaseFrom time.Time) {
	until := leaseFrom.Add(w.cfg.Lease)
	w.mu.Lock()
	w.stats.Fetched += len(jobs)
	for _, j := range jobs {
		w.replaceHoldLocked(j.ID, &heldJob{job: j, q: q, until: until})
		q.active++
	}
	w.mu.Unlock()
	for _, j := range jobs {
		w.finish(q, Outcome{Attempt: attemptOf(j), Kind: Released}, nil)
	}
}

// dispatch hands fetched jobs to the queue's pool, waiting for the rate
// limiter between them. Jobs left when fetching stops are released. Their
// leases were set at leaseFrom.
func (w *Worker) dispatch(q *queueRunner, jobs []*Job, lim *rate.Limiter, leaseFrom time.Time) {
	until := leaseFrom.Add(w.cfg.Lease)
	w.mu.Lock()
	w.stats.Fetched += len(jobs)
	holds := make([]*heldJob, len(jobs))
	for i, j := range jobs {
		h := &heldJob{job: j, q: q, until: until}
		if _, ok := w.early[j.ID]; ok {
			delete(w.early, j.ID)
			h.stop(errCancelRequested)
		}
		w.replaceHoldLocked(j.ID, h)
		holds[i] = h
		q.active++
	}
	w.mu.Unlock()
	for i, j := range jobs {
		if lim != nil && !w.waitTurn(j, lim) {
			for _, rest := range jobs[i:] {
				w.finish(q, Outcome{Attempt: attemptOf(rest), Kind: Released}, nil)
			}
			return
		}
		if err := q.pool.GoOpts(context.Background(), workpool.Options{Tag: j}, w.runFunc(q, j, holds[i])); err != nil {
			w.finish(q, Outcome{Attempt: attemptOf(j), Kind: Released}, nil)
		}
	}
}

// waitTurn waits for the rate limiter's permission to start job j. A job
// that is stopped meanwhile (see heldJob.stop), or whose deadline passes,
// does not wait longer, nor use the limiter's token: it goes to its start
// at once, which ends it. It reports false when fetching stopped.
func (w *Worker) waitTurn(j *Job, lim *rate.Limiter) bool {
	ctx, cancel := context.WithCancel(w.fetchCtx)
	defer cancel()
	if !j.Deadline.IsZero() {
		var c context.CancelFunc
		ctx, c = context.WithDeadline(ctx, j.Deadline)
		defer c()
	}
	w.mu.Lock()
	h := w.held[j.ID]
	stopped := h == nil || h.pending != nil
	if !stopped {
		h.stopWait = cancel
	}
	w.mu.Unlock()
	if stopped {
		return true
	}
	err := lim.Wait(ctx)
	if _, hasDeadline := ctx.Deadline(); err != nil && ctx.Err() == nil && hasDeadline {
		// The limiter answers at once when the turn would come after the
		// deadline: the job cannot start in time, so it waits for the
		// deadline (or a stop) and then ends at its start. Released
		// instead, it would be fetched again at once, over and over.
		<-ctx.Done()
	}
	w.mu.Lock()
	h.stopWait = nil
	w.mu.Unlock()
	if err == nil {
		return true
	}
	// The wait ended early: fetching stopped, or stop or the deadline
	// ended it (the job then goes to its start, which ends it).
	return w.fetchCtx.Err() == nil && ctx.Err() != nil
}

func attemptOf(j *Job) Attempt { return Attempt{ID: j.ID, Attempt: j.Attempt} }

// runFunc returns the pool task that runs one attempt of j, held as hold.
func (w *Worker) runFunc(q *queueRunner, j *Job, hold *heldJob) func(context.Context) error {
	return func(poolCtx context.Context) error {
		ctx, cancel := context.WithCancelCause(w.jobsCtx)
		defer cancel(nil)
		// The pool's context ends at its hard stop (Drain's deadline).
		stop := context.AfterFunc(poolCtx, func() { cancel(errShutdown) })
		defer stop()
		w.mu.Lock()
		hold.cancel = cancel
		if hold.pending != nil {
			cancel(hold.pending)
		}
		w.mu.Unlock()
		if !j.Deadline.IsZero() {
			var c context.CancelFunc
			ctx, c = context.WithDeadlineCause(ctx, j.Deadline, errJobDeadline)
			defer c()
		}
		if j.AttemptTimeout > 0 {
			var c context.CancelFunc
			ctx, c = context.WithTimeoutCause(ctx, j.AttemptTimeout, errAttemptTimeout)
			defer c()
		}
		start := time.Now()
		var err error
		started := ctx.Err() == nil
		// The outcome, the log and OnAttempt go by the job as fetched: a
		// handler that changes its *Job (MaxAttempts, Queue) cannot change
		// them.
		fetched := *j
		if started {
			err = w.callHandler(ctx, j)
		} else {
			// Ended before it started: a cancellation request or a lost
			// lease that came while the job waited (for the queue's rate
			// limit, say), a deadline already past, or shutdown. The
			// handler is not called.
			err = context.Cause(ctx)
		}
		o, ok := w.classify(&fetched, err, context.Cause(ctx))
		if !ok { // lease lost: whatever we write would be fenced off
			if !started {
				w.mu.Lock()
				w.stats.LostBeforeStart++
				w.mu.Unlock()
			}
			w.forget(q, j.ID, hold)
			return nil
		}
		if !started && o.Kind == Expired {
			o.Reason, o.Error = "deadline passed before the job could run", ""
		}
		run := time.Since(start)
		w.logAttempt(&fetched, o, run)
		if w.cfg.OnAttempt != nil && started {
			w.cfg.OnAttempt(&fetched, o, run)
		}
		w.finish(q, o, hold)
		return nil
	}
}

// logAttempt logs one attempt's outcome with the job's id, never its
// payload: Debug for a success or a release, Info for a retry, Warn for a
// job that ends failed, canceled or expired.
func (w *Worker) logAttempt(j *Job, o Outcome, run time.Duration) {
	level := slog.LevelWarn
	switch o.Kind {
	case Succeeded, Released:
		level = slog.LevelDebug
	case Retry:
		level = slog.LevelInfo
	}
	if !w.log.Enabled(context.Background(), level) {
		return // no attributes built: a quiet worker pays nothing per job
	}
	attrs := []any{"job", j.ID, "kind", j.Kind, "queue", j.Queue, "attempt", j.Attempt, "run", run}
	switch o.Kind {
	case Succeeded:
		w.log.Debug("jobs: succeeded", attrs...)
	case Released:
		w.log.Debug("jobs: released", append(attrs, "run_at", o.RunAt)...)
	case Retry:
		w.log.Info("jobs: attempt failed, will retry", append(attrs, "err", o.Error, "run_at", o.RunAt)...)
	case Failed:
		reason := o.Reason
		if reason == "" {
			reason = "no attempts left"
		}
		w.log.Warn("jobs: failed", append(attrs, "err", o.Error, "reason", reason)...)
	default:
		w.log.Warn("jobs: ended", append(attrs, "outcome", o.Kind.String(), "reason", o.Reason)...)
	}
}

func (w *Worker) callHandler(ctx context.Context, j *Job) (err error) {
	h := w.reg.handler(j.Kind)
	if h == nil {
		return Permanent(fmt.Errorf("%w %q", ErrNoHandler, j.Kind))
	}
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("handler panicked: %v\n%s", r, debug.Stack())
		}
	}()
	return h.Work(ctx, j)
}

// classify turns a handler's result and its context's cause into an
// outcome. ok is false when the lease was lost.
func (w *Worker) classify(j *Job, err, cause error) (Outcome, bool) {
	o := Outcome{Attempt: attemptOf(j)}
	switch {
	case errors.Is(cause, errLeaseLost):
		return o, false
	case err == nil:
		o.Kind = Succeeded
	case errors.Is(cause, errCancelRequested):
		o.Kind = Canceled // no Reason: the store keeps the one the request gave
	case errors.Is(cause, errShutdown):
		o.Kind = Released
	case errors.Is(cause, errJobDeadline):
		o.Kind, o.Reason, o.Error = Expired, "deadline passed while running", err.Error()
	case IsPermanent(err):
		o.Kind, o.Error, o.Reason = Failed, err.Error(), "permanent error"
	case notAttempted(err):
		// The handler withheld the work (its dependency's breaker is open,
		// or it is saturated): the job goes back without using an attempt,
		// at the dependency's Retry-After, else at its backoff. Its
		// deadline still bounds how long it can wait.
		o.Kind = Released
		d := Backoff(j.BackoffMin, j.BackoffMax, j.Attempt)
		var ra RetryAfterer
		if errors.As(err, &ra) && ra.RetryAfter() > 0 {
			d = min(ra.RetryAfter(), j.BackoffMax)
		}
		o.RunAt = w.cfg.Now().Add(d)
	default:
		o.Kind, o.Error = Retry, err.Error()
		if errors.Is(cause, errAttemptTimeout) {
			o.Error = "attempt timeout: " + o.Error
		}
		if j.Attempt >= j.MaxAttempts {
			// The last attempt: the job fails, and hooks, metrics and the
			// log say so. (The store would turn a Retry into a failure
			// too, but they would have counted a retry.) No Reason: the
			// job ran out of attempts.
			o.Kind = Failed
			return o, true
		}
		o.RunAt = w.cfg.Now().Add(Backoff(j.BackoffMin, j.BackoffMax, j.Attempt))
		var ra RetryAfterer
		if errors.As(err, &ra) && ra.RetryAfter() > 0 {
			// The dependency said when to come back: honour it, bounded
			// by the job's own maximum backoff.
			o.RunAt = w.cfg.Now().Add(min(ra.RetryAfter(), j.BackoffMax))
		}
	}
	return o, true
}

// NotAttempter is implemented by handler errors that can say the work was
// withheld without being attempted: a circuit breaker was open, or the
// dependency's concurrency limit was reached. Such a job goes back to
// waiting without using an attempt (see Released).
type NotAttempter interface {
	NotAttempted() bool
}

func notAttempted(err error) bool {
	var na NotAttempter
	return errors.As(err, &na) && na.NotAttempted()
}

// RetryAfterer is implemented by handler errors that know when a retry may
// succeed, such as an HTTP target's 429 or 503 with Retry-After. The
// worker schedules the retry then (capped at the job's BackoffMax) instead
// of at its exponential backoff.
type RetryAfterer interface {
	RetryAfter() time.Duration
}

// Backoff returns the wait before retrying after attempt n (1-based):
// exponential from min, capped at max, with jitter over its upper half.
func Backoff(minD, maxD time.Duration, n int) time.Duration {
	d := minD
	for i := 1; i < n && d < maxD; i++ {
		d *= 2
	}
	d = min(d, maxD)
	if d <= 1 {
		return d
	}
	return d/2 + rand.N(d/2+1)
}

// finish queues an outcome for writing and frees the job's slot. h is the
// hold of the attempt that produced o; nil means the job's hold now, for a
// job that never started (its hold is the one dispatch or release made).
func (w *Worker) finish(q *queueRunner, o Outcome, h *heldJob) {
	w.mu.Lock()
	if h == nil {
		h = w.held[o.ID]
	}
	o.hold = h
	w.pending = append(w.pending, o)
	q.active--
	w.mu.Unlock()
	signal(q.free)
	signal(w.flushSignal)
}

// replaceHoldLocked makes h job id's hold. A hold it replaces is an
// earlier attempt's whose lease was lost (the job was recovered, and this
// worker fetched it again): its handler, if still running, is canceled as
// lost. The caller holds w.mu.
func (w *Worker) replaceHoldLocked(id int64, h *heldJob) {
	if old := w.held[id]; old != nil && old != h {
		old.stop(errLeaseLost)
	}
	w.held[id] = h
}

// dropHoldLocked deletes job id's hold h, unless the job is held anew
// (this worker fetched it again after h's outcome was written, or after h's
// lease was lost and the job recovered). The caller holds w.mu.
func (w *Worker) dropHoldLocked(id int64, h *heldJob) {
	if h != nil && w.held[id] == h {
		delete(w.held, id)
	}
}

// forget drops a job whose lease was lost; h is the attempt's hold.
func (w *Worker) forget(q *queueRunner, id int64, h *heldJob) {
	w.mu.Lock()
	w.dropHoldLocked(id, h)
	q.active--
	w.mu.Unlock()
	signal(q.free)
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

func (w *Worker) countStoreErr() {
	w.mu.Lock()
	w.stats.StoreErrs++
	w.mu.Unlock()
}

// completeLoop writes outcomes in batches.
//
// It returns when stopComplete is closed, after the batch it was writing
// (if any) is written or has failed back into pending: Stop then writes
// what is left itself, so no batch is ever in flight when Stop decides
// that everything was written.
func (w *Worker) completeLoop() {
	for {
		select {
		case <-w.flushSignal:
		case <-w.stopComplete:
			return
		}
		select { // let a batch gather
		case <-time.After(w.cfg.FlushDelay):
		case <-w.stopComplete:
			return
		}
		if err := w.flush(w.bgCtx, false); err != nil && w.bgCtx.Err() == nil {
			w.log.Warn("jobs: writing outcomes failed, will retry", "err", err)
			select {
			case <-time.After(100 * time.Millisecond):
			case <-w.stopComplete:
				return
			}
			signal(w.flushSignal)
		}
	}
}

// flush writes the pending outcomes. With all set it keeps going until
// none is left or ctx ends.
func (w *Worker) flush(ctx context.Context, all bool) error {
	for {
		w.mu.Lock()
		batch := w.pending
		w.pending = nil
		w.mu.Unlock()
		if len(batch) == 0 {
			return nil
		}
		applied, err := call(ctx, w.cfg.CallTimeout, func(cctx context.Context) ([]bool, error) {
			return w.store.Complete(cctx, w.cfg.Now(), w.cfg.ID, batch)
		})
		if err != nil && refusal(ctx, err) && len(batch) > 1 {
			// The store refused the batch's data, not for lack of the
			// database: find the outcomes it refuses, so that they do not
			// hold back the others for good.
			batch, applied, err = w.isolate(ctx, batch)
		}
		if err != nil && refusal(ctx, err) && len(batch) == 1 {
			w.drop(batch[0], err)
			batch, applied, err = nil, nil, nil
		}
		if err != nil {
			w.mu.Lock()
			w.pending = append(batch, w.pending...)
			w.stats.StoreErrs++
			w.mu.Unlock()
			if !all || ctx.Err() != nil {
				return err
			}
			sleepCtx(ctx, 50*time.Millisecond)
			continue
		}
		if len(batch) > 0 {
			w.record(batch, applied)
		}
		if !all {
			return nil
		}
	}
}

// record accounts for a written batch of outcomes.
func (w *Worker) record(batch []Outcome, applied []bool) {
	w.mu.Lock()
	for i, o := range batch {
		h := o.hold
		w.dropHoldLocked(o.ID, h)
		if applied[i] {
			w.stats.Recorded[o.Kind]++
			if h != nil && (o.Kind == Retry || o.Kind == Released) {
				// The job waits again, maybe due sooner than the fetch
				// loop's wait, which was set before: tell it when.
				h.q.wakeLocked(o.RunAt, w.cfg.Now())
			}
		} else {
			w.stats.Stale++
		}
	}
	w.mu.Unlock()
	for i := range batch {
		batch[i].hold = nil // the hook may keep the batch; let the holds go
	}
	if w.cfg.OnRecorded != nil {
		w.cfg.OnRecorded(batch, applied)
	}
}

// refusal reports whether err, from a store call under ctx, refuses the
// call's data rather than saying that the database is away or slow, the
// store closed, or ctx ended: trying the same call again would fail the
// same way.
func refusal(ctx context.Context, err error) bool {
	return ctx.Err() == nil && !errors.Is(err, ErrUnavailable) && !errors.Is(err, ErrClosed) &&
		!errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded)
}

// isolate writes batch, whose whole the store refused, in halves, and
// halves of those, dropping each single outcome the store refuses (see
// drop). It returns the outcomes written with their applied flags; on a
// failure that is not a refusal, also the error, with the outcomes not yet
// written put back at the head of pending.
func (w *Worker) isolate(ctx context.Context, batch []Outcome) (written []Outcome, applied []bool, err error) {
	var todo [][]Outcome
	todo = append(todo, batch[:len(batch)/2], batch[len(batch)/2:])
	for len(todo) > 0 {
		part := todo[0]
		todo = todo[1:]
		a, err := call(ctx, w.cfg.CallTimeout, func(cctx context.Context) ([]bool, error) {
			return w.store.Complete(cctx, w.cfg.Now(), w.cfg.ID, part)
		})
		switch {
		case err == nil:
			written, applied = append(written, part...), append(applied, a...)
		case !refusal(ctx, err):
			w.mu.Lock()
			for _, p := range todo {
				part = append(part, p...)
			}
			w.pending = append(part, w.pending...)
			w.mu.Unlock()
			if len(written) > 0 {
				// Record what was written; the error reaches the caller
				// through the outcomes put back.
				w.record(written, applied)
			}
			return nil, nil, err
		case len(part) == 1:
			w.drop(part[0], err)
		default:
			todo = append([][]Outcome{part[:len(part)/2], part[len(part)/2:]}, todo...)
		}
	}
	return written, applied, nil
}

// drop gives up an outcome the store refuses: the worker forgets the job
// (stops heartbeating it), so that its lease expires and maintenance puts
// it back to waiting, or fails it once it has used all its attempts.
func (w *Worker) drop(o Outcome, err error) {
	w.mu.Lock()
	w.dropHoldLocked(o.ID, o.hold)
	w.stats.StoreErrs++
	w.stats.Refused++
	w.mu.Unlock()
	w.log.Error("jobs: the store refused an outcome; the job will be recovered when its lease expires",
		"job", o.ID, "attempt", o.Attempt.Attempt, "outcome", o.Kind, "err", err)
}

// heartbeatLoop extends the leases of every held job each
// HeartbeatInterval and cancels the ones that were lost or whose
// cancellation was requested. While heartbeats fail, each running job is
// canceled as lost once its own lease has run out: another worker may have
// it by now.
func (w *Worker) heartbeatLoop() {
	t := time.NewTicker(w.cfg.HeartbeatInterval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-w.bgCtx.Done():
			return
		}
		if err := w.beat(w.bgCtx, time.Time{}); err != nil && w.bgCtx.Err() == nil {
			w.log.Warn("jobs: heartbeat failed", "err", err)
		}
	}
}

// beat extends the leases of the held jobs whose lease runs out before
// due (of every held job if due is zero), and cancels the ones that were
// lost or whose cancellation was requested. If the store cannot be
// reached, the jobs whose lease has run out by then are canceled as lost:
// another worker may have them by now. Heartbeats (every held job) and
// maintenance (only jobs whose lease is about to run out) both call it;
// beatMu keeps them from racing each other.
func (w *Worker) beat(ctx context.Context, due time.Time) error {
	w.beatMu.Lock()
	defer w.beatMu.Unlock()
	w.mu.Lock()
	held := make([]Attempt, 0, len(w.held))
	// The answers concern the holds sent. By the time they come back, a
	// job whose outcome was written meanwhile may be held again, for its
	// next attempt or (Released gives the attempt back) the same one: a
	// new hold, which they must not touch.
	sent := make(map[int64]*heldJob, len(w.held))
	for id, h := range w.held {
		if due.IsZero() || h.until.Before(due) {
			held = append(held, attemptOf(h.job))
			sent[id] = h
		}
	}
	w.mu.Unlock()
	if len(held) == 0 {
		return nil
	}
	now := w.cfg.Now()
	var lost, cancel []int64
	_, err := call(ctx, w.cfg.CallTimeout, func(ctx context.Context) (struct{}, error) {
		var err error
		lost, cancel, err = w.store.Heartbeat(ctx, now, w.cfg.ID, held, w.cfg.Lease)
		return struct{}{}, err
	})
	w.mu.Lock()
	defer w.mu.Unlock()
	if err != nil {
		w.stats.StoreErrs++
		expired := w.cfg.Now()
		for _, h := range w.held {
			if !h.until.After(expired) {
				h.stop(errLeaseLost)
			}
		}
		return err
	}
	current := func(id int64) *heldJob {
		if h := w.held[id]; h != nil && h == sent[id] {
			return h
		}
		return nil
	}
	for _, id := range lost {
		if h := current(id); h != nil {
			h.stop(errLeaseLost)
		}
		delete(sent, id)
	}
	until := now.Add(w.cfg.Lease)
	for id := range sent {
		if h := current(id); h != nil {
			h.until = until
			h.renewed()
		}
	}
	for _, id := range cancel {
		if h := current(id); h != nil {
			h.stop(errCancelRequested)
		}
	}
	return nil
}

// notifyLoop wakes idle fetch loops and cancels jobs as the store's
// notifications arrive. The store closes events when bgCtx ends.
func (w *Worker) notifyLoop(events <-chan Notification) {
	for ev := range events {
		w.mu.Lock()
		if q := w.queues[ev.Queue]; ev.Queue != "" && q != nil {
			q.wakeLocked(ev.At, w.cfg.Now())
		}
		if ev.CancelID != 0 {
			if h := w.held[ev.CancelID]; h != nil {
				h.stop(errCancelRequested)
			} else {
				w.noteEarlyCancel(ev.CancelID, time.Now())
			}
		}
		w.mu.Unlock()
	}
}

// maintenanceLoop recovers expired leases, expires jobs past their
// deadline and reloads queue configurations.
func (w *Worker) maintenanceLoop() {
	t := time.NewTicker(w.cfg.MaintenanceInterval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-w.bgCtx.Done():
			return
		}
		w.maintain(w.bgCtx)
		w.reloadQueues()
	}
}

func (w *Worker) maintain(ctx context.Context) {
	// Extend this worker's own leases that run out within a heartbeat
	// interval first (normally none: the heartbeat loop keeps every lease
	// at least Lease-HeartbeatInterval ahead), and recover only leases
	// that expired before that extension began: when the database or the
	// heartbeat loop is slow (another process holding the write lock), the
	// recovery below must not find the jobs this live worker holds expired
	// and run them again. If even the extension fails, skip recovery this
	// round.
	//
	// On a store without notifications, or whose notifications cover only
	// its calls in this process (SQLite: see LocalNotifier), the heartbeat
	// is also how cancellation requests reach running jobs, so maintenance
	// passes extend every lease, as the heartbeat loop does, to bring them
	// within a pass.
	now := w.cfg.Now()
	due := now.Add(w.cfg.HeartbeatInterval)
	if !w.cancelsNotified() {
		due = time.Time{}
	}
	if err := w.beat(ctx, due); err != nil {
		return
	}
	if e, ok := w.store.(Elector); ok {
		lead, err := call(ctx, w.cfg.CallTimeout, func(ctx context.Context) (bool, error) {
			return e.Lead(ctx, now, w.cfg.ID, 3*w.cfg.MaintenanceInterval)
		})
		if err != nil {
			w.countStoreErr()
			return
		}
		if !lead {
			return
		}
	}
	if n, err := call(ctx, w.cfg.CallTimeout, func(ctx context.Context) (int, error) { return w.store.RecoverLeases(ctx, now) }); err != nil {
		w.countStoreErr()
	} else if n > 0 {
		w.mu.Lock()
		w.stats.Recovered += n
		w.mu.Unlock()
		w.log.Info("jobs: recovered jobs with expired leases", "count", n)
	}
	if n, err := call(ctx, w.cfg.CallTimeout, func(ctx context.Context) (int, error) { return w.store.ExpireDue(ctx, now) }); err != nil {
		w.countStoreErr()
	} else if n > 0 {
		w.mu.Lock()
		w.stats.ExpiredWaiting += n
		w.mu.Unlock()
	}
	w.deleteFinished(ctx, now)
	w.mu.Lock()
	w.stats.MaintenancePasses++
	w.mu.Unlock()
}

// retentionRounds bounds the DeleteFinished calls of one maintenance pass,
// so that a backlog (a first start with retention on an old database) is
// worked off over several passes instead of holding the database.
const retentionRounds = 10

// deleteFinished deletes the jobs that finished more than Retention
// before now, in batches, for at most one MaintenanceInterval (so that a
// pass stays well inside a maintenance leadership term).
func (w *Worker) deleteFinished(ctx context.Context, now time.Time) {
	if w.cfg.Retention < 0 {
		return
	}
	before := now.Add(-w.cfg.Retention)
	total := 0
	start := time.Now()
	for range retentionRounds {
		n, err := call(ctx, w.cfg.CallTimeout, func(ctx context.Context) (int, error) {
			return w.store.DeleteFinished(ctx, now, before, w.cfg.RetentionBatch)
		})
		if err != nil {
			w.countStoreErr()
			break
		}
		total += n
		if n < w.cfg.RetentionBatch || time.Since(start) > w.cfg.MaintenanceInterval {
			break
		}
	}
	if total > 0 {
		w.mu.Lock()
		w.stats.Deleted += total
		w.mu.Unlock()
		w.log.Debug("jobs: deleted finished jobs past their retention", "count", total, "finished_before", before)
	}
}

func (w *Worker) reloadQueues() {
	w.mu.Lock()
	runners := w.queues
	w.mu.Unlock()
	for name, q := range runners {
		qc, err := w.loadQueue(w.bgCtx, name)
		if err != nil {
			if w.bgCtx.Err() == nil {
				w.log.Warn("jobs: reloading a queue's configuration failed; keeping the one in use", "queue", name, "err", err)
			}
			continue
		}
		w.mu.Lock()
		if qc.Concurrency != q.cfg.Concurrency {
			q.pool.SetWorkers(qc.Concurrency)
			q.pool.SetQueueSize(qc.Concurrency)
		}
		switch {
		case qc.RateLimit <= 0:
			q.limiter = nil
		case q.limiter == nil:
			q.limiter = rate.NewLimiter(rate.Limit(qc.RateLimit), qc.RateBurst)
		default:
			q.limiter.SetLimit(rate.Limit(qc.RateLimit))
			q.limiter.SetBurst(qc.RateBurst)
		}
		q.cfg = qc
		w.mu.Unlock()
		signal(q.free)
	}
}
