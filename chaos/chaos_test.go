package chaos_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/sluicehq/sluice/chaos"
	"github.com/sluicehq/sluice/jobs"
	"github.com/sluicehq/sluice/jobs/pgstore"
	"github.com/sluicehq/sluice/jobs/sqlitestore"
	"github.com/sluicehq/sluice/lifecycle"
)

// The test binary doubles as the engine: with engineEnv set, TestMain runs
// engineMain instead of the tests.
const (
	engineEnv     = "CHAOS_TEST_ENGINE" // "1" in the engine process
	engineDBEnv   = "CHAOS_TEST_DB"
	engineLogEnv  = "CHAOS_TEST_LOG"
	engineIncEnv  = "CHAOS_TEST_INCARNATION"
	engineSeedEnv = "CHAOS_TEST_SEED"
	// enginePGSchemaEnv, when set, makes the engine open a PostgreSQL store
	// (jobs/pgstore) in that schema, with engineDBEnv its URL, instead of
	// a SQLite file (the multi-node tests).
	enginePGSchemaEnv = "CHAOS_TEST_PG_SCHEMA"
)

func TestMain(m *testing.M) {
	if os.Getenv(engineEnv) == "1" {
		os.Exit(engineMain())
	}
	goleak.VerifyTestMain(m)
}

// Engine settings: short leases so that a killed incarnation's jobs come
// back within a second, fast polls, frequent maintenance, and a drain
// deadline far above the handlers' 20ms.
const (
	engineLease = time.Second
	effectKind  = "effect"
)

// engineMain runs one incarnation of the engine: a jobs.Worker inside a
// lifecycle.Service on the SQLite file (or the PostgreSQL schema, see
// enginePGSchemaEnv), with a handler "effect" that records start and done
// lines around a random 1-20ms sleep. It prints
// "ready" once the worker has started and exits through the service's exit
// code (0 after a clean SIGTERM).
func engineMain() int {
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	inc, err := strconv.Atoi(os.Getenv(engineIncEnv))
	if err != nil {
		logger.Error("engine: bad incarnation", "err", err)
		return 1
	}
	seed, _ := strconv.ParseUint(os.Getenv(engineSeedEnv), 10, 64)
	st, err := openEngineStore(os.Getenv(engineDBEnv), os.Getenv(enginePGSchemaEnv), logger)
	if err != nil {
		logger.Error("engine: open store", "err", err)
		return 1
	}
	elog, err := chaos.OpenEffectLog(os.Getenv(engineLogEnv))
	if err != nil {
		st.Close()
		logger.Error("engine: open effect log", "err", err)
		return 1
	}
	reg := jobs.NewRegistry()
	reg.Handle(effectKind, &chaos.EffectHandler{
		Log:         elog,
		Incarnation: inc,
		Do:          chaos.RandomSleep(time.Millisecond, 20*time.Millisecond, seed+uint64(inc)),
	})
	w := jobs.NewWorker(st, reg, jobs.WorkerConfig{
		ID:                  fmt.Sprintf("chaos-engine-%d", inc),
		Lease:               engineLease,
		PollInterval:        2 * time.Millisecond,
		MaxPollInterval:     20 * time.Millisecond,
		MaintenanceInterval: 100 * time.Millisecond,
		Logger:              logger,
	})
	svc := lifecycle.New(lifecycle.Config{
		ShutdownTimeout: 10 * time.Second,
		DrainTimeout:    3 * time.Second,
		StopTimeout:     3 * time.Second,
		Logger:          logger,
	})
	svc.Add("store", lifecycle.Hook{OnStop: func(context.Context) error { return st.Close() }})
	svc.Add("effects", lifecycle.Hook{OnStop: func(context.Context) error { return elog.Close() }})
	svc.Add("worker", w)
	svc.Add("ready", lifecycle.Hook{OnStart: func(context.Context) error {
		_, err := fmt.Fprintln(os.Stdout, "ready")
		return err
	}})
	return lifecycle.ExitCode(svc.Run(context.Background()))
}

// engineStore is what the engine needs of its store.
type engineStore interface {
	jobs.Store
	Close() error
}

// openEngineStore opens the SQLite file db, or, with a schema, the
// PostgreSQL database at the URL db in that schema.
func openEngineStore(db, schema string, logger *slog.Logger) (engineStore, error) {
	if schema != "" {
		st, err := pgstore.Open(context.Background(), db, pgstore.Config{Schema: schema, Logger: logger})
		if err != nil {
			return nil, err
		}
		return st, nil
	}
	st, err := sqlitestore.Open(context.Background(), db, sqlitestore.Config{})
	if err != nil {
		return nil, err
	}
	return st, nil
}

// engine is one running incarnation.
type engine struct {
	inc    int
	cmd    *exec.Cmd
	stderr string        // file holding the process's stderr
	ready  chan struct{} // closed when the process printed "ready"
	exited chan struct{} // closed when cmd.Wait returned
	err    error         // cmd.Wait's result, valid after exited
}

// loop is one chaos run: a SQLite file, an effect log, and the processes
// that work on them.
type loop struct {
	t    *testing.T
	dir  string
	db   string
	log  string
	seed uint64
	rng  *rand.Rand // the schedule; used by the controlling goroutine only
	elog *chaos.EffectLog
	st   *sqlitestore.Store
	cli  *jobs.Client

	mu      sync.Mutex
	engines []*engine // guarded by mu
}

func newLoop(t *testing.T) *loop {
	t.Helper()
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("CHAOS_SEED"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("CHAOS_SEED: %v", err)
		}
		seed = n
	}
	t.Logf("seed %d (repeat the schedule with CHAOS_SEED=%d)", seed, seed)
	dir := t.TempDir()
	if keep := os.Getenv("CHAOS_DIR"); keep != "" { // keep the files for a post-mortem
		dir = filepath.Join(keep, t.Name())
		if err := os.RemoveAll(dir); err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	l := &loop{
		t:    t,
		dir:  dir,
		db:   filepath.Join(dir, "jobs.db"),
		log:  filepath.Join(dir, "effects.log"),
		seed: seed,
		rng:  rand.New(rand.NewPCG(seed, 0x5eed)),
	}
	st, err := sqlitestore.Open(context.Background(), l.db, sqlitestore.Config{})
	if err != nil {
		t.Fatal(err)
	}
	l.st = st
	l.cli = jobs.NewClient(st, jobs.ClientConfig{})
	elog, err := chaos.OpenEffectLog(l.log)
	if err != nil {
		st.Close()
		t.Fatal(err)
	}
	l.elog = elog
	t.Cleanup(func() {
		l.killAll()
		if t.Failed() {
			l.mu.Lock()
			for _, e := range l.engines {
				t.Logf("engine %d stderr:\n%s", e.inc, tail(e.stderr))
			}
			l.mu.Unlock()
		}
		elog.Close()
		st.Close()
	})
	return l
}

// start runs incarnation inc and waits until it is ready.
func (l *loop) start(ctx context.Context, inc int) *engine {
	l.t.Helper()
	e := &engine{inc: inc, ready: make(chan struct{}), exited: make(chan struct{})}
	e.stderr = filepath.Join(l.dir, fmt.Sprintf("engine-%d.stderr", inc))
	errf, err := os.Create(e.stderr)
	if err != nil {
		l.t.Fatal(err)
	}
	defer errf.Close() // the child has its own copy
	e.cmd = exec.Command(os.Args[0], "-test.run=^$")
	e.cmd.Env = append(os.Environ(),
		engineEnv+"=1",
		engineDBEnv+"="+l.db,
		engineLogEnv+"="+l.log,
		engineIncEnv+"="+strconv.Itoa(inc),
		engineSeedEnv+"="+strconv.FormatUint(l.seed, 10),
	)
	e.cmd.Stderr = errf
	out, err := e.cmd.StdoutPipe()
	if err != nil {
		l.t.Fatal(err)
	}
	if err := e.cmd.Start(); err != nil {
		l.t.Fatal(err)
	}
	l.mu.Lock()
	l.engines = append(l.engines, e)
	l.mu.Unlock()
	go func() {
		defer close(e.exited)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if sc.Text() == "ready" {
				close(e.ready)
			}
		}
		e.err = e.cmd.Wait()
	}()
	select {
	case <-e.ready:
	case <-e.exited:
		l.t.Fatalf("engine %d exited before it was ready: %v\n%s", inc, e.err, tail(e.stderr))
	case <-ctx.Done():
		l.t.Fatalf("engine %d not ready: %v", inc, ctx.Err())
	case <-time.After(30 * time.Second):
		l.t.Fatalf("engine %d not ready within 30s\n%s", inc, tail(e.stderr))
	}
	return e
}

// end sends sig to e, waits for it to exit and writes its end line. After
// SIGTERM it must exit 0 within the engine's shutdown timeout.
func (l *loop) end(e *engine, sig syscall.Signal) {
	l.t.Helper()
	if err := e.cmd.Process.Signal(sig); err != nil {
		l.t.Fatalf("engine %d: signal %v: %v", e.inc, sig, err)
	}
	select {
	case <-e.exited:
	case <-time.After(20 * time.Second):
		l.t.Fatalf("engine %d still running 20s after %v\n%s", e.inc, sig, tail(e.stderr))
	}
	if b, _ := os.ReadFile(e.stderr); strings.Contains(string(b), "DATA RACE") || strings.Contains(string(b), "panic:") {
		l.t.Errorf("engine %d reported a race or a panic:\n%s", e.inc, tail(e.stderr))
	}
	how := chaos.Killed
	if sig == syscall.SIGTERM {
		how = chaos.Stopped
		if e.err != nil {
			l.t.Errorf("engine %d: exit after SIGTERM: %v, want 0\n%s", e.inc, e.err, tail(e.stderr))
		}
	}
	if err := l.elog.Append(chaos.Event{Op: chaos.OpEnd, Incarnation: e.inc, Ending: how}); err != nil {
		l.t.Fatal(err)
	}
}

// killAll kills the engines still running and reaps them.
func (l *loop) killAll() {
	l.mu.Lock()
	engines := slices.Clone(l.engines)
	l.mu.Unlock()
	for _, e := range engines {
		select {
		case <-e.exited:
			continue
		default:
		}
		_ = e.cmd.Process.Kill()
		select {
		case <-e.exited:
		case <-time.After(10 * time.Second):
			l.t.Errorf("engine %d not reaped 10s after SIGKILL", e.inc)
		}
	}
}

// tail returns the end of a stderr file, for failure messages.
func tail(path string) string {
	b, _ := os.ReadFile(path)
	const limit = 4000
	if len(b) > limit {
		b = b[len(b)-limit:]
	}
	return string(b)
}

// enqueue adds n jobs, in batches of 1 to 8 with a pause of up to pause
// between them, and writes an accept line for each ID it gets back. A
// batch that fails with ErrUnavailable is retried: the idempotency keys
// make the retry return the jobs a lost answer had created. It returns
// how many jobs it accepted.
func (l *loop) enqueue(ctx context.Context, n int, pause time.Duration, seed uint64) (int, error) {
	rng := rand.New(rand.NewPCG(seed, 0xe19))
	accepted := 0
	for accepted < n {
		size := min(1+rng.IntN(8), n-accepted)
		batch := make([]jobs.NewJob, size)
		for i := range batch {
			batch[i] = jobs.NewJob{
				Kind:           effectKind,
				IdempotencyKey: fmt.Sprintf("chaos-%d", accepted+i),
				MaxAttempts:    25, // more than the kills of a run
			}
		}
		res, err := l.cli.EnqueueMany(ctx, jobs.DefaultQueue, batch)
		if err != nil {
			if errors.Is(err, jobs.ErrUnavailable) && ctx.Err() == nil {
				time.Sleep(20 * time.Millisecond)
				continue
			}
			return accepted, err
		}
		for _, r := range res {
			if r.Err != nil {
				return accepted, r.Err
			}
			if err := l.elog.Append(chaos.Event{Op: chaos.OpAccept, Job: r.Job.ID}); err != nil {
				return accepted, err
			}
		}
		accepted += size
		if pause > 0 {
			t := time.NewTimer(time.Duration(rng.Int64N(int64(pause) + 1)))
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return accepted, ctx.Err()
			}
		}
	}
	return accepted, nil
}

// waitIdle waits until the queue has no waiting and no running job.
func (l *loop) waitIdle(ctx context.Context) error {
	for {
		s, err := l.st.QueueStats(ctx, jobs.DefaultQueue, time.Now())
		if err == nil && s.Waiting == 0 && s.Running == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("queue not idle (%+v, err %v): %w", s, err, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

type loopConfig struct {
	jobs       int
	rounds     int            // incarnations ended by sig before the last one
	sig        syscall.Signal // SIGKILL or SIGTERM
	minUp      time.Duration  // an incarnation runs this long ...
	maxUp      time.Duration  // ... to this long before sig
	finalLimit time.Duration  // bound on the last incarnation's work
}

// defaultLoop returns the settings of a loop ending incarnations with sig;
// -short shrinks it.
func defaultLoop(sig syscall.Signal, rounds int) loopConfig {
	cfg := loopConfig{
		jobs:       2000,
		rounds:     rounds,
		sig:        sig,
		minUp:      100 * time.Millisecond,
		maxUp:      1200 * time.Millisecond,
		finalLimit: 60 * time.Second,
	}
	if testing.Short() {
		cfg.jobs, cfg.rounds = 400, 3
	}
	return cfg
}

// run runs the loop and returns the checker's report: incarnations 1 to
// cfg.rounds each run for a seeded random time under load and end by
// cfg.sig; the last one runs until the enqueuer is done and the queue is
// idle, and ends by SIGTERM.
func (l *loop) run(cfg loopConfig) (*chaos.Report, *chaos.Log, []*jobs.Job) {
	t := l.t
	began := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
	defer cancel()

	// Spread the jobs over the rounds (an incarnation takes about a second
	// to start under -race, plus its time up): batches average 4.5 jobs
	// and pauses average half their bound.
	span := time.Duration(cfg.rounds) * (time.Second + (cfg.minUp+cfg.maxUp)/2)
	pause := 2 * span / time.Duration(max(1, cfg.jobs*2/9))
	type result struct {
		n   int
		err error
	}
	enq := make(chan result, 1) // the enqueuer's only send
	go func() {
		n, err := l.enqueue(ctx, cfg.jobs, pause, l.seed)
		enq <- result{n, err}
	}()
	received := false
	defer func() { // after a Fatal: stop the enqueuer and wait for it
		if !received {
			cancel()
			<-enq
		}
	}()

	for inc := 1; inc <= cfg.rounds; inc++ {
		e := l.start(ctx, inc)
		up := cfg.minUp + time.Duration(l.rng.Int64N(int64(cfg.maxUp-cfg.minUp)+1))
		time.Sleep(up)
		l.end(e, cfg.sig)
	}
	last := l.start(ctx, cfg.rounds+1)
	var r result
	select {
	case r = <-enq:
		received = true
	case <-time.After(60 * time.Second):
		t.Fatal("enqueuer not done within 60s")
	}
	if r.err != nil {
		t.Fatalf("enqueuer: %d accepted, then %v", r.n, r.err)
	}
	idleCtx, idleCancel := context.WithTimeout(ctx, cfg.finalLimit)
	err := l.waitIdle(idleCtx)
	idleCancel()
	if err != nil {
		t.Fatalf("last incarnation: %v\n%s", err, tail(last.stderr))
	}
	l.end(last, syscall.SIGTERM)

	lg, err := chaos.ReadLogFile(l.log)
	if err != nil {
		t.Fatal(err)
	}
	final, err := chaos.Snapshot(ctx, l.st, "")
	if err != nil {
		t.Fatal(err)
	}
	rep := chaos.Checker{}.Check(lg, final)
	t.Logf("%s loop: %d jobs accepted, %d incarnations ended by %s then one by SIGTERM, elapsed %v",
		sigName(cfg.sig), r.n, cfg.rounds, sigName(cfg.sig), time.Since(began).Round(time.Millisecond))
	t.Logf("report: %s", rep)
	return rep, lg, final
}

func sigName(sig syscall.Signal) string {
	if sig == syscall.SIGKILL {
		return "SIGKILL"
	}
	return "SIGTERM"
}

func TestKill9Loop(t *testing.T) {
	l := newLoop(t)
	cfg := defaultLoop(syscall.SIGKILL, 5+l.rng.IntN(4)) // 5..8 kills
	rep, _, _ := l.run(cfg)
	if err := rep.Err(); err != nil {
		t.Fatal(err)
	}
	if rep.Accepted != cfg.jobs || rep.Completed != cfg.jobs {
		t.Fatalf("accepted %d, completed %d, want %d", rep.Accepted, rep.Completed, cfg.jobs)
	}
	if rep.Kills != cfg.rounds {
		t.Fatalf("kills %d, want %d", rep.Kills, cfg.rounds)
	}
	t.Logf("kills %d; allowed duplicates %d %v; runs in flight at kills %d",
		rep.Kills, len(rep.AllowedDuplicates), rep.AllowedDuplicates, rep.InFlightAtKill)
	if rep.InFlightAtKill+len(rep.AllowedDuplicates) == 0 {
		t.Errorf("no kill struck a job in flight: the loop did not test what it should")
	}
}

func TestSIGTERMLoop(t *testing.T) {
	l := newLoop(t)
	cfg := defaultLoop(syscall.SIGTERM, 5)
	rep, _, _ := l.run(cfg)
	if rep.Accepted != cfg.jobs || rep.Completed != cfg.jobs {
		t.Errorf("accepted %d, completed %d, want %d", rep.Accepted, rep.Completed, cfg.jobs)
	}
	if len(rep.AllowedDuplicates) != 0 || rep.Kills != 0 {
		t.Errorf("duplicates %v with %d kills in a SIGTERM run", rep.AllowedDuplicates, rep.Kills)
	}
	if len(rep.Interrupted) != 0 {
		// The drain deadline (3s) is far above a handler's 20ms: a graceful
		// stop should let every run finish.
		t.Errorf("runs interrupted by a graceful stop: %v", rep.Interrupted)
	}
	if err := rep.Err(); err != nil {
		t.Fatal(err)
	}
}
