package lifecycle

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

const (
	defaultShutdownTimeout = 25 * time.Second
	defaultMargin          = time.Second
)

// Config holds the optional knobs of a [Service]. The zero Config works: a
// 25s shutdown, no drain delay, SIGINT and SIGTERM, slog.Default().
//
// Shutdown budget: when shutdown is requested at T, everything ends by
// T+ShutdownTimeout (the overall deadline); phases 3 and 4 end by the overall
// deadline minus StopTimeout so that phase 5 keeps at least one StopTimeout.
// An operation still running Margin after its own deadline is abandoned, so
// Stop, Wait and Run return by T+ShutdownTimeout+Margin whatever the
// components do.
type Config struct {
	// ShutdownTimeout bounds the whole shutdown, from the request to the end
	// of phase 5. Zero or negative means 25s, which with the default Margin
	// fits Kubernetes' default terminationGracePeriodSeconds (30s).
	ShutdownTimeout time.Duration

	// DrainDelay is the length of phase 2: readiness is already false but
	// work is still served, so load balancers stop routing before listeners
	// close. Zero or negative means none. It counts against ShutdownTimeout
	// and is skipped when the service never became ready.
	DrainDelay time.Duration

	// QuiesceTimeout bounds phase 3 (Quiesce calls). Zero or negative means
	// no bound of its own (the phase 3-4 limit described above still holds).
	QuiesceTimeout time.Duration

	// DrainTimeout bounds phase 4: in-flight work gets this long, then
	// WorkContext and the contexts given to Drain are canceled. Zero or
	// negative means no bound of its own: up to the overall deadline minus
	// StopTimeout.
	DrainTimeout time.Duration

	// StopTimeout bounds each component's Stop in phase 5 (capped by the
	// overall deadline). Zero or negative means ShutdownTimeout/5 (5s by
	// default). Values above ShutdownTimeout are treated as ShutdownTimeout.
	StopTimeout time.Duration

	// StartTimeout bounds each component's Start. Zero or negative means no
	// bound (the context given to Start still applies).
	StartTimeout time.Duration

	// Margin is how long an operation or task may take to return after its
	// deadline passed (its context is done) before it is declared stuck and
	// abandoned. Zero or negative means 1s.
	Margin time.Duration

	// Logger receives one line per phase, start and stop, and an error line
	// with the stack of anything stuck. Nil means slog.Default().
	Logger *slog.Logger

	// Signals are the signals Run handles: the first starts a graceful
	// shutdown, the second makes Run return at once with ErrForced. Nil means
	// SIGINT and SIGTERM; an empty non-nil slice means none.
	Signals []os.Signal

	// OnPhase, if not nil, is called as each shutdown phase begins, with the
	// phase's deadline (the overall deadline for PhaseNotReady and PhaseStop,
	// zero for PhaseStopped), from the goroutine that runs the shutdown. It
	// must return quickly (its time counts against the phase) and must not
	// call Stop or Wait, which would never return.
	OnPhase func(p Phase, deadline time.Time)
}

type state int

const (
	stateNew     state = iota // not started; Add and queued Go allowed
	stateRunning              // Start called; the supervisor goroutine owns the sequence
	stateDone                 // shutdown finished (or stopped before Start)
)

// step is one goroutine the service started: a component operation or a
// task. err is written before done is closed.
type step struct {
	name string
	op   string
	seq  uint64        // start order, to report stuck steps in a stable order
	gid  atomic.Uint64 // goroutine id, set first thing by the goroutine
	done chan struct{} // closed by the step's goroutine as its last action
	err  error
}

type queuedTask struct {
	name string
	fn   func(context.Context) error
}

// errShutdownRequested is the cause given to the start context when
// shutdown is requested during startup: a Start that returns because of it
// is not reported as a failure.
var errShutdownRequested = errors.New("lifecycle: shutdown requested")

// Service owns a service's components and goroutines from start to exit:
// it starts components in order, runs tasks, handles signals, and shuts
// everything down in five observable, bounded phases (see [Phase]).
//
// All methods are safe for concurrent use. A Service runs once: it cannot be
// restarted after it stopped.
type Service struct {
	cfg Config
	log *slog.Logger

	// Signal hooks; signal.Notify and signal.Stop except in tests.
	notify     func(c chan<- os.Signal, sig ...os.Signal)
	stopNotify func(c chan<- os.Signal)

	workCtx     context.Context // canceled at the end of phase 4
	cancelWork  context.CancelFunc
	taskCtx     context.Context // child of workCtx, canceled at phase 3
	cancelTasks context.CancelFunc

	ready atomic.Bool

	trigger chan struct{} // closed by requestShutdown (once, under mu)
	started chan struct{} // closed by the supervisor when startup ended
	done    chan struct{} // closed by the supervisor, or by requestShutdown before Start

	startOK bool  // written by the supervisor before started is closed
	err     error // final result; written before done is closed

	mu          sync.Mutex
	state       state                   // guarded by mu
	entries     []*entry                // guarded by mu; frozen once Start is called
	queued      []queuedTask            // guarded by mu; tasks from Go before Start
	running     map[*step]struct{}      // guarded by mu; steps and tasks not yet returned
	ntasks      int                     // guarded by mu; running tasks
	tasksIdle   chan struct{}           // guarded by mu; closed by the last task to return after phase 3
	accepting   bool                    // guarded by mu; Go accepted until phase 3
	triggered   bool                    // guarded by mu; shutdown requested
	requestedAt time.Time               // guarded by mu
	cancelStart context.CancelCauseFunc // guarded by mu; non-nil during startup
	errs        []error                 // guarded by mu
	final       bool                    // guarded by mu; errs no longer read
	phase       Phase                   // guarded by mu
	seq         uint64                  // guarded by mu
}

// New returns a Service configured by cfg. Add components, then call Run (or
// Start and Stop).
func New(cfg Config) *Service {
	if cfg.ShutdownTimeout <= 0 {
		cfg.ShutdownTimeout = defaultShutdownTimeout
	}
	if cfg.DrainDelay < 0 {
		cfg.DrainDelay = 0
	}
	if cfg.StopTimeout <= 0 {
		cfg.StopTimeout = cfg.ShutdownTimeout / 5
	}
	cfg.StopTimeout = min(cfg.StopTimeout, cfg.ShutdownTimeout)
	if cfg.Margin <= 0 {
		cfg.Margin = defaultMargin
	}
	if cfg.Signals == nil {
		cfg.Signals = []os.Signal{os.Interrupt, syscall.SIGTERM}
	}
	s := &Service{
		cfg:        cfg,
		log:        cfg.Logger,
		notify:     signal.Notify,
		stopNotify: signal.Stop,
		trigger:    make(chan struct{}),
		started:    make(chan struct{}),
		done:       make(chan struct{}),
		running:    make(map[*step]struct{}),
		accepting:  true,
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	s.workCtx, s.cancelWork = context.WithCancel(context.Background())
	s.taskCtx, s.cancelTasks = context.WithCancel(s.workCtx)
	return s
}

// Add appends a component. Components start in the order they were added
// and stop in reverse order. name identifies it in logs and errors. Add
// panics if c is nil or if Start or Run has been called.
func (s *Service) Add(name string, c Component) {
	if c == nil {
		panic("lifecycle: Add with a nil Component")
	}
	s.addEntry(newEntry(name, c))
}

func (s *Service) addEntry(e *entry) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state == stateRunning {
		panic("lifecycle: Add after Start")
	}
	s.entries = append(s.entries, e)
}

// Go runs fn in a goroutine owned by the service: a background task such as
// a queue poller. Called before Start, the task is held until every
// component has started; called later, it starts at once.
//
// fn's context is canceled when the service stops accepting work (phase 3);
// fn should then return soon, finishing the item it holds under
// [Service.WorkContext] if it must. Phase 4 waits for every task until the
// drain deadline plus Margin; a task still running then is abandoned and
// named in a [StopTimeoutError].
//
// A non-nil error returned before phase 3 is fatal: it starts a shutdown
// and is part of the error Run, Stop and Wait return (as a
// [ComponentError]), so the process exits non-zero. Later errors are
// returned too, except context.Canceled. A nil return just ends the task. A
// panic in fn is not recovered: it crashes the process, by design.
//
// Go returns [ErrShuttingDown], and does not run fn, once phase 3 has begun.
// Cost: one goroutine and about a microsecond.
func (s *Service) Go(name string, fn func(ctx context.Context) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case !s.accepting:
		return ErrShuttingDown
	case s.state == stateNew:
		s.queued = append(s.queued, queuedTask{name, fn})
		return nil
	}
	s.launchLocked(name, fn)
	return nil
}

func (s *Service) newStepLocked(name, op string) *step {
	st := &step{name: name, op: op, seq: s.seq, done: make(chan struct{})}
	s.seq++
	s.running[st] = struct{}{}
	return st
}

func (s *Service) launchLocked(name string, fn func(context.Context) error) {
	st := s.newStepLocked(name, OpTask)
	s.ntasks++
	go func() {
		st.gid.Store(goid())
		err := fn(s.taskCtx)
		s.taskReturned(st, err)
	}()
}

// taskReturned reports a task's result, then marks it returned: the last
// thing the task goroutine does is under mu, so that when phase 4 sees the
// tasks idle no task is still doing work.
func (s *Service) taskReturned(st *step, err error) {
	stopping := s.taskCtx.Err() != nil
	switch {
	case err == nil:
		s.log.Debug("lifecycle: task returned", "name", st.name)
	case stopping && errors.Is(err, context.Canceled):
		s.log.Debug("lifecycle: task returned", "name", st.name, "err", err)
	default:
		s.log.Error("lifecycle: task failed", "name", st.name, "err", err)
		s.requestShutdown(&ComponentError{Name: st.name, Op: OpTask, Err: err}, "task "+st.name+" failed")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.running, st)
	close(st.done)
	s.ntasks--
	if s.ntasks == 0 && s.tasksIdle != nil {
		close(s.tasksIdle)
		s.tasksIdle = nil
	}
}

// spawn runs fn(ctx) in a goroutine tracked as a step.
func (s *Service) spawn(ctx context.Context, name, op string, fn func(context.Context) error) *step {
	s.mu.Lock()
	st := s.newStepLocked(name, op)
	s.mu.Unlock()
	go func() {
		st.gid.Store(goid())
		st.err = fn(ctx)
		s.mu.Lock()
		defer s.mu.Unlock()
		delete(s.running, st)
		close(st.done)
	}()
	return st
}

// WorkContext returns the parent context for request-scoped work: jobs,
// handler calls, anything that should finish during a graceful shutdown but
// be canceled at the drain deadline. It is canceled at the end of phase 4.
// [HTTPServer] uses it as its BaseContext. Cheap; always the same context.
func (s *Service) WorkContext() context.Context { return s.workCtx }

// Ready reports whether every component has started and shutdown has not
// been requested. It goes false the moment shutdown is requested (phase 1).
// Cheap: one atomic load.
func (s *Service) Ready() bool { return s.ready.Load() }

// Shutdown requests a graceful shutdown and returns without waiting (use
// Wait or Stop for that). A non-nil cause is logged and becomes part of the
// error Run, Stop and Wait return, so the process exits non-zero; nil means
// a normal stop. Later calls only add their cause. Called before Start, the
// service is marked stopped: Start and Run will return ErrShuttingDown.
func (s *Service) Shutdown(cause error) {
	s.requestShutdown(cause, "Shutdown called")
}

// Stop requests a graceful shutdown like Shutdown(nil) and waits for it to
// finish, returning the same error as Wait. It is idempotent, safe from
// several goroutines (all wait and get the same error) and safe before
// Start (it returns nil at once and the service can no longer start). It
// returns by ShutdownTimeout+Margin after the request; see Config. From a
// task, a component or OnPhase, call Shutdown instead: Stop there would wait
// for itself until it is abandoned as stuck.
func (s *Service) Stop() error {
	s.requestShutdown(nil, "Stop called")
	return s.Wait()
}

// Wait blocks until the service has stopped and returns the joined errors:
// shutdown causes, failed or fatal operations ([ComponentError]) and, if
// anything did not stop in time, a [StopTimeoutError]. Nil means a clean
// stop. Once it returns, every goroutine the service started has returned
// except those named in a StopTimeoutError. Wait on a service that was never
// started nor stopped blocks until one of those happens.
func (s *Service) Wait() error {
	<-s.done
	return s.err
}

func (s *Service) requestShutdown(cause error, reason string) {
	s.mu.Lock()
	if cause != nil && !s.final {
		s.errs = append(s.errs, cause)
	}
	if s.triggered {
		s.mu.Unlock()
		return
	}
	s.triggered = true
	s.requestedAt = time.Now()
	s.ready.Store(false)
	close(s.trigger)
	if s.cancelStart != nil {
		s.cancelStart(errShutdownRequested)
	}
	neverStarted := s.state == stateNew
	if neverStarted {
		s.state = stateDone
		s.accepting = false
		s.final = true
		s.err = errors.Join(s.errs...)
		close(s.done)
	}
	s.mu.Unlock()
	if neverStarted {
		s.cancelTasks()
		s.cancelWork()
		s.log.Info("lifecycle: stopped before start", "reason", reason)
		return
	}
	if cause != nil {
		s.log.Info("lifecycle: shutdown requested", "reason", reason, "cause", cause)
	} else {
		s.log.Info("lifecycle: shutdown requested", "reason", reason)
	}
}

// Start starts the components one at a time in the order they were added,
// then the tasks queued by Go, and marks the service ready. It returns nil
// once all have started. If one fails (or shutdown is requested meanwhile),
// the components already started are shut down in reverse order through the
// normal phases, and Start returns only after that, with the joined errors
// (or ErrShuttingDown if nothing failed). ctx bounds startup only. Start
// does not handle signals: Run does. A second call returns
// ErrAlreadyStarted.
func (s *Service) Start(ctx context.Context) error {
	if err := s.begin(ctx); err != nil {
		return err
	}
	<-s.started
	if s.startOK {
		return nil
	}
	<-s.done
	if s.err != nil {
		return s.err
	}
	return ErrShuttingDown
}

func (s *Service) begin(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch s.state {
	case stateRunning:
		return ErrAlreadyStarted
	case stateDone:
		return ErrShuttingDown
	}
	s.state = stateRunning
	startCtx, cancel := context.WithCancelCause(ctx)
	s.cancelStart = cancel
	go s.supervise(startCtx, cancel, s.entries)
	return nil
}

// Run starts the service, waits until a signal (Config.Signals), the end of
// ctx, a Shutdown call or a fatal task error, shuts down and returns the
// error Wait returns: nil for a clean stop, whatever the cause. ctx's values
// reach Start; its end means a graceful shutdown, not an abrupt one.
//
// A second signal during shutdown makes Run return at once with an error
// matching ErrForced that lists what was still running with stacks; the
// shutdown goes on in the background, so the caller should exit the process
// (Main does). After Run returns the signals get their default action again.
func (s *Service) Run(ctx context.Context) error {
	s.mu.Lock()
	st := s.state
	s.mu.Unlock()
	switch st {
	case stateRunning:
		return ErrAlreadyStarted
	case stateDone:
		return ErrShuttingDown
	}
	var sigc chan os.Signal
	if len(s.cfg.Signals) > 0 {
		sigc = make(chan os.Signal, 2) // first and second signal; signal.Notify never blocks
		s.notify(sigc, s.cfg.Signals...)
		defer s.stopNotify(sigc)
	}
	if err := s.begin(context.WithoutCancel(ctx)); err != nil {
		return err
	}
	ctxDone := ctx.Done()
	var first os.Signal
	for {
		select {
		case <-s.done:
			return s.err
		case <-ctxDone:
			ctxDone = nil
			s.requestShutdown(nil, fmt.Sprintf("context done: %v", context.Cause(ctx)))
		case sig := <-sigc:
			if first == nil {
				first = sig
				s.requestShutdown(nil, "signal "+sig.String())
				continue
			}
			return s.forced(sig)
		}
	}
}

// forced builds Run's result for a second signal: the errors so far and
// what is still running, with stacks.
func (s *Service) forced(sig os.Signal) error {
	s.mu.Lock()
	errs := slices.Clone(s.errs)
	phase := s.phase
	var steps []*step
	for st := range s.running {
		steps = append(steps, st)
	}
	s.mu.Unlock()
	e := &StopTimeoutError{Forced: true, Stuck: describe(steps)}
	s.log.Error("lifecycle: second signal, exiting now", "signal", sig.String(), "phase", phase.String(), "running", stuckNames(e.Stuck))
	for _, st := range e.Stuck {
		s.log.Error("lifecycle: still running at forced exit", "name", st.Name, "op", st.Op, "stack", st.Stack)
	}
	return errors.Join(append(errs, e)...)
}

// describe sorts steps by start order and attaches their stacks.
func describe(steps []*step) []Stuck {
	slices.SortFunc(steps, func(a, b *step) int { return cmp.Compare(a.seq, b.seq) })
	ids := make(map[uint64]bool, len(steps))
	for _, st := range steps {
		ids[st.gid.Load()] = true
	}
	stk := stacks(ids)
	out := make([]Stuck, 0, len(steps))
	for _, st := range steps {
		out = append(out, Stuck{Name: st.name, Op: st.op, Stack: stk[st.gid.Load()]})
	}
	return out
}

func stuckNames(ss []Stuck) []string {
	names := make([]string, len(ss))
	for i, s := range ss {
		names[i] = s.String()
	}
	return names
}

// supervise is the goroutine that owns the sequence: startup, waiting, and
// the five shutdown phases. It closes s.done as its last action.
func (s *Service) supervise(ctx context.Context, cancel context.CancelCauseFunc, entries []*entry) {
	var stuck []Stuck
	started := make([]*entry, 0, len(entries))
	ok := true
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			if context.Cause(ctx) != errShutdownRequested {
				s.addErr(&ComponentError{Name: e.name, Op: OpStart, Err: context.Cause(ctx)})
			}
			ok = false
			break
		}
		if e.start == nil {
			started = append(started, e)
			continue
		}
		st, err := s.startOne(ctx, e)
		if st != nil {
			stuck = append(stuck, s.abandon(st)...)
			ok = false
			break
		}
		if err != nil {
			if context.Cause(ctx) != errShutdownRequested || !isContextErr(err) {
				s.addErr(&ComponentError{Name: e.name, Op: OpStart, Err: err})
			}
			ok = false
			break
		}
		s.log.Debug("lifecycle: started", "name", e.name)
		started = append(started, e)
	}

	s.mu.Lock()
	s.cancelStart = nil
	ok = ok && !s.triggered
	if ok {
		for _, q := range s.queued {
			s.launchLocked(q.name, q.fn)
		}
		s.ready.Store(true)
	}
	s.queued = nil
	s.mu.Unlock()
	cancel(nil)
	s.startOK = ok
	close(s.started)

	if ok {
		s.log.Info("lifecycle: started", "components", len(started))
		<-s.trigger
	} else {
		s.requestShutdown(nil, "start failed")
	}
	stuck = append(stuck, s.shutdown(started, ok)...)

	s.mu.Lock()
	errs := s.errs
	summary := slices.Clone(errs)
	if len(stuck) > 0 {
		te := &StopTimeoutError{Stuck: stuck}
		errs = append(errs, te)
		summary = append(summary, errors.New(te.header())) // stacks were logged by abandon
	}
	s.err = errors.Join(errs...)
	s.final = true
	s.state = stateDone
	elapsed := time.Since(s.requestedAt)
	s.mu.Unlock()
	if s.err != nil {
		s.log.Error("lifecycle: stopped", "elapsed", elapsed, "err", errors.Join(summary...))
	} else {
		s.log.Info("lifecycle: stopped", "elapsed", elapsed)
	}
	s.enterPhase(PhaseStopped, time.Time{})
	close(s.done)
}

func isContextErr(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

func (s *Service) addErr(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.final {
		s.errs = append(s.errs, err)
	}
}

// startOne runs e.start and waits for it; it returns the stuck step if Start
// ignored the end of its context for Margin.
func (s *Service) startOne(ctx context.Context, e *entry) (stuck *step, err error) {
	if s.cfg.StartTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, s.cfg.StartTimeout)
		defer cancel()
	}
	st := s.spawn(ctx, e.name, OpStart, e.start)
	select {
	case <-st.done:
		return nil, st.err
	case <-ctx.Done():
	}
	t := time.NewTimer(s.cfg.Margin)
	defer t.Stop()
	select {
	case <-st.done:
		return nil, st.err
	case <-t.C:
		return st, nil
	}
}

// abandon describes steps that did not return in time and logs each.
func (s *Service) abandon(steps ...*step) []Stuck {
	out := describe(steps)
	for _, st := range out {
		s.log.Error("lifecycle: did not return in time, abandoned", "name", st.Name, "op", st.Op, "stack", st.Stack)
	}
	return out
}

func (s *Service) enterPhase(p Phase, deadline time.Time) {
	s.mu.Lock()
	s.phase = p
	s.mu.Unlock()
	if p != PhaseStopped {
		s.log.Info("lifecycle: shutdown phase", "phase", p.String(), "budget", time.Until(deadline).Round(time.Millisecond))
	}
	if s.cfg.OnPhase != nil {
		s.cfg.OnPhase(p, deadline)
	}
}

// shutdown runs phases 1 to 5 for the started components and returns what
// got stuck.
func (s *Service) shutdown(started []*entry, wasReady bool) []Stuck {
	s.mu.Lock()
	t0 := s.requestedAt
	s.mu.Unlock()
	overall := t0.Add(s.cfg.ShutdownTimeout)
	hard := overall.Add(s.cfg.Margin) // nothing is waited for past this
	drainEnd := overall.Add(-s.cfg.StopTimeout)
	reversed := slices.Clone(started)
	slices.Reverse(reversed)
	var stuck []Stuck

	// Phase 1: readiness already went false in requestShutdown.
	s.enterPhase(PhaseNotReady, overall)

	// Phase 2: keep serving while load balancers notice.
	end := time.Now()
	if wasReady && s.cfg.DrainDelay > 0 {
		end = minTime(t0.Add(s.cfg.DrainDelay), drainEnd)
	}
	s.enterPhase(PhaseDrainDelay, end)
	if d := time.Until(end); d > 0 {
		t := time.NewTimer(d)
		<-t.C
	}

	// Phase 3: stop accepting.
	d3 := phaseEnd(s.cfg.QuiesceTimeout, drainEnd)
	s.enterPhase(PhaseQuiesce, d3)
	s.mu.Lock()
	s.accepting = false
	idle := make(chan struct{})
	if s.ntasks == 0 {
		close(idle)
	} else {
		s.tasksIdle = idle
	}
	s.mu.Unlock()
	s.cancelTasks()
	stuck = append(stuck, s.runOps(reversed, OpQuiesce, d3, hard, nil)...)

	// Phase 4: in-flight work finishes, then is canceled.
	d4 := phaseEnd(s.cfg.DrainTimeout, drainEnd)
	s.enterPhase(PhaseDrain, d4)
	stuck = append(stuck, s.runOps(reversed, OpDrain, d4, hard, idle)...)
	s.cancelWork()

	// Phase 5: release in reverse start order.
	s.enterPhase(PhaseStop, overall)
	for _, e := range reversed {
		if e.end == nil {
			continue
		}
		now := time.Now()
		if !now.Before(hard) {
			s.log.Error("lifecycle: stop not called, shutdown budget spent", "name", e.name)
			stuck = append(stuck, Stuck{Name: e.name, Op: OpStop})
			continue
		}
		stuck = append(stuck, s.runOps([]*entry{e}, OpStop, minTime(now.Add(s.cfg.StopTimeout), overall), hard, nil)...)
	}
	return stuck
}

// phaseEnd is the deadline of a phase bounded by timeout (if positive) and
// by limit.
func phaseEnd(timeout time.Duration, limit time.Time) time.Time {
	if timeout > 0 {
		return minTime(time.Now().Add(timeout), limit)
	}
	return limit
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// runOps runs op for entries concurrently with a context ending at deadline,
// and waits for them (and for idle, if not nil: the tasks) until deadline.
// At the deadline of phase 4 it cancels WorkContext. Then it waits up to
// Margin more (never past hard) and abandons what is left.
func (s *Service) runOps(entries []*entry, op string, deadline, hard time.Time, idle chan struct{}) []Stuck {
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	var steps []*step
	var waits []<-chan struct{}
	for _, e := range entries {
		fn := e.op(op)
		if fn == nil {
			continue
		}
		st := s.spawn(ctx, e.name, op, fn)
		steps = append(steps, st)
		waits = append(waits, st.done)
	}
	if idle != nil {
		waits = append(waits, idle)
	}
	var onDeadline func()
	if op == OpDrain {
		onDeadline = s.cancelWork
	}
	waitAll(waits, deadline, minTime(deadline.Add(s.cfg.Margin), hard), onDeadline)

	var late []*step
	for _, st := range steps {
		select {
		case <-st.done:
			if st.err != nil {
				s.log.Error("lifecycle: "+op+" failed", "name", st.name, "err", st.err)
				s.addErr(&ComponentError{Name: st.name, Op: op, Err: st.err})
			} else {
				s.log.Debug("lifecycle: "+op+" done", "name", st.name)
			}
		default:
			late = append(late, st)
		}
	}
	if idle != nil {
		select {
		case <-idle:
		default:
			s.mu.Lock()
			for st := range s.running {
				if st.op == OpTask {
					late = append(late, st)
				}
			}
			s.mu.Unlock()
		}
	}
	if len(late) == 0 {
		return nil
	}
	return s.abandon(late...)
}

func (e *entry) op(op string) func(context.Context) error {
	switch op {
	case OpQuiesce:
		return e.quiesce
	case OpDrain:
		return e.drain
	case OpStop:
		return e.end
	}
	return nil
}

// waitAll waits for every channel to be closed, or until hard. When soft
// passes first it calls onSoft (if not nil) and keeps waiting until hard. It
// reports whether every channel was closed.
func waitAll(chans []<-chan struct{}, soft, hard time.Time, onSoft func()) bool {
	softT := time.NewTimer(time.Until(soft))
	defer softT.Stop()
	softC := softT.C
	var hardT *time.Timer
	var hardC <-chan time.Time
	defer func() {
		if hardT != nil {
			hardT.Stop()
		}
	}()
	for _, ch := range chans {
	wait:
		for {
			select {
			case <-ch:
				break wait
			case <-softC:
				softC = nil
				if onSoft != nil {
					onSoft()
				}
				hardT = time.NewTimer(time.Until(hard))
				hardC = hardT.C
			case <-hardC:
				return false
			}
		}
	}
	return true
}
