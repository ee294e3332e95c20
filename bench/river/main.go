// Command river is the River side of sluice's burn-down benchmark: it does
// what "sluice bench burn" does, with River (github.com/riverqueue/river)
// doing the work, so the two can be compared in the same run on the same
// machine.
//
// Usage, from inside bench/:
//
//	rm -f /tmp/river-burn.db /tmp/river-burn.db-wal /tmp/river-burn.db-shm
//	go run ./river --db sqlite:/tmp/river-burn.db --jobs 200000
//
// It runs River's migrations (rivermigrate), inserts N no-op jobs with
// Client.InsertMany in batches of --insert-batch (one transaction each) and
// prints
//
//	insert: <N> jobs in <S>s: <X> jobs/s
//
// then starts a river.Client with a no-op worker and times from Start until
// the Nth job_completed event arrives (events are sent after the completer has
// recorded the jobs as completed), and prints
//
//	burn: <N> jobs in <S>s: <X> jobs/s
//
// only after stopping the client and confirming that river_job holds exactly N
// rows, all in state 'completed'. Settings and a progress line every 10 s go to
// stderr. The exit status is 0 on success, 1 on any error (a job that fails,
// is cancelled or snoozed, a count other than N, --timeout reached, a Stop that
// does not finish within 30 s), 2 on bad flags.
//
// # Latency mode
//
// With --mode latency it measures enqueue-to-start latency instead, the
// counterpart of "sluice bench latency" (same schedule, same definition,
// same output lines):
//
//	go run ./river --mode latency --db postgres://... --rate 5000 --duration 10s
//
// A client with the settings below is started first; then --enqueuers
// goroutines share an open-loop arrival schedule: arrival i is due at
// start + i/--rate whatever happened to the others, and is inserted with
// one Client.Insert call (its own transaction) whose job arguments carry
// the arrival index and the wall clock read just before the call. An
// arrival whose call starts more than 1 ms after its due time counts as
// late; one more than 1 s behind is not sent (missed), so that a
// generator that cannot keep up still ends on time. Three warm-up inserts
// per goroutine (ignored by the worker) open the pool's connections first.
// The worker records, once per job, its start time minus that timestamp.
// After the schedule it waits up to --wait for every inserted job to
// start, stops the client and prints
//
//	arrivals: <N> due at <rate>/s over <D>: <K> enqueued (<R>/s achieved), <L> late (>1ms behind), <M> missed (>1s behind), <E> enqueue errors, max lag <d>
//	latency: <K> jobs at <R>/s: p50 <d> p90 <d> p99 <d> max <d>
//
// with exact nearest-rank percentiles over every sample. It exits 1 when a
// job had not started within --wait. On PostgreSQL the pool allows
// --enqueuers + 8 connections, so that inserts do not queue for one.
//
// Databases:
//
//   - sqlite:<file>: modernc.org/sqlite through database/sql, in WAL mode (the
//     journal mode is checked after opening). The file, and its -wal and -shm
//     files, must not exist. The pool has one connection, as the riversqlite
//     package documentation advises (River's internal components run in
//     parallel and would otherwise get SQLITE_BUSY) and as River's CLI does
//     for SQLite. The other pragmas match the writer connection of sluice's
//     jobs/sqlitestore, so that only the engine differs: synchronous
//     (--synchronous, default NORMAL like sqlitestore; FULL is available),
//     busy_timeout(5000), temp_store(memory), cache_size(-32768).
//     sqlite::memory: also works (one connection, so one database).
//   - postgres://... or postgresql://...: pgx/v5 pool (pgxpool defaults) with
//     River's riverpgxv5 driver. Migrations run up; river_job must then be
//     empty, or pass --truncate to empty it first (as "river bench" does).
//
// River settings are those of River's own benchmark, "river bench"
// (cmd/river/riverbench/river_bench.go in the River repository): one queue
// with MaxWorkers 2000, FetchCooldown 2 ms, FetchPollInterval 20 ms, inserts
// with InsertMany in batches of 5000, completions counted from a
// SubscribeConfig subscription. Everything else is River's default. The
// subscription buffer holds N+1000 events so that none can be dropped.
package main

import (
	"context"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/riverdriver/riversqlite"
	"github.com/riverqueue/river/rivermigrate"
	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// settings are the knobs of one run.
type settings struct {
	jobs              int
	insertBatch       int
	maxWorkers        int
	fetchCooldown     time.Duration
	fetchPollInterval time.Duration
	truncate          bool
	// latency mode
	latency   bool
	rate      float64
	duration  time.Duration
	enqueuers int
	wait      time.Duration
}

// stopTimeout bounds Client.Stop once the burn is over (or has failed).
const stopTimeout = 30 * time.Second

// run is main without the exit, for readability: it returns the exit status.
func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("river", flag.ContinueOnError)
	fs.SetOutput(stderr)
	db := fs.String("db", "", "database: sqlite:<file> (must not exist), sqlite::memory:, or postgres://...")
	var s settings
	fs.IntVar(&s.jobs, "jobs", 200_000, "number of no-op jobs")
	fs.IntVar(&s.insertBatch, "insert-batch", 5000, "jobs per InsertMany call (river bench: 5000)")
	fs.IntVar(&s.maxWorkers, "max-workers", 2000, "QueueConfig.MaxWorkers (river bench: 2000)")
	fs.DurationVar(&s.fetchCooldown, "fetch-cooldown", 2*time.Millisecond, "Config.FetchCooldown (river bench: 2ms)")
	fs.DurationVar(&s.fetchPollInterval, "fetch-poll-interval", 20*time.Millisecond, "Config.FetchPollInterval (river bench: 20ms)")
	fs.BoolVar(&s.truncate, "truncate", false, "postgres only: empty river_job first instead of refusing a non-empty one")
	mode := fs.String("mode", "burn", "burn (throughput) or latency (enqueue-to-start latency at --rate)")
	fs.Float64Var(&s.rate, "rate", 5000, "latency mode: arrivals per second (one Insert each)")
	fs.DurationVar(&s.duration, "duration", 10*time.Second, "latency mode: length of the arrival schedule")
	fs.IntVar(&s.enqueuers, "enqueuers", 16, "latency mode: goroutines sharing the arrival schedule")
	fs.DurationVar(&s.wait, "wait", 30*time.Second, "latency mode: after the schedule, wait at most this long for every job to start")
	synchronous := fs.String("synchronous", "NORMAL", "sqlite only: PRAGMA synchronous, NORMAL or FULL")
	timeout := fs.Duration("timeout", 20*time.Minute, "give up (exit 1) after this long")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	usage := func(msg string) int {
		fmt.Fprintln(stderr, "river:", msg)
		return 2
	}
	if fs.NArg() != 0 {
		return usage("unexpected arguments: " + strings.Join(fs.Args(), " "))
	}
	if s.jobs <= 0 || s.insertBatch <= 0 || s.maxWorkers <= 0 || s.fetchCooldown <= 0 || s.fetchPollInterval <= 0 || *timeout <= 0 {
		return usage("--jobs, --insert-batch, --max-workers, --fetch-cooldown, --fetch-poll-interval and --timeout must be positive")
	}
	switch *mode {
	case "burn":
	case "latency":
		s.latency = true
		if !(s.rate > 0) || math.IsInf(s.rate, 0) || s.duration <= 0 || s.enqueuers <= 0 || s.wait <= 0 {
			return usage("--rate, --duration, --enqueuers and --wait must be positive")
		}
		if n := s.rate * s.duration.Seconds(); n < 1 || n > 100_000_000 {
			return usage("--rate × --duration must be 1..100,000,000 jobs")
		}
	default:
		return usage("--mode must be burn or latency")
	}
	syncMode := strings.ToUpper(*synchronous)
	if syncMode != "NORMAL" && syncMode != "FULL" {
		return usage("--synchronous must be NORMAL or FULL")
	}

	ctx, cancel := context.WithTimeoutCause(context.Background(), *timeout, fmt.Errorf("--timeout %v reached", *timeout))
	defer cancel()
	var err error
	switch {
	case strings.HasPrefix(*db, "sqlite:"):
		path := strings.TrimPrefix(*db, "sqlite:")
		if path == "" || strings.ContainsRune(path, '?') || strings.HasPrefix(path, "file:") {
			return usage("--db sqlite:<file> needs a plain file path (or :memory:)")
		}
		if path != ":memory:" {
			for _, p := range []string{path, path + "-wal", path + "-shm"} {
				if _, err := os.Stat(p); err == nil {
					return usage(p + " exists; the benchmark needs a fresh file")
				}
			}
		}
		err = runSQLite(ctx, stdout, stderr, path, syncMode, s)
	case strings.HasPrefix(*db, "postgres://"), strings.HasPrefix(*db, "postgresql://"):
		err = runPostgres(ctx, stdout, stderr, *db, s)
	default:
		return usage("--db must be sqlite:<file>, sqlite::memory: or postgres://...")
	}
	if err != nil {
		fmt.Fprintln(stderr, "river:", err)
		return 1
	}
	return 0
}

// runSQLite opens the SQLite database at path as River advises (one
// connection) and runs the benchmark on it.
func runSQLite(ctx context.Context, stdout, stderr io.Writer, path, syncMode string, s settings) error {
	dsn := path + "?_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)&_pragma=synchronous(" + syncMode + ")" +
		"&_pragma=temp_store(memory)&_pragma=cache_size(-32768)"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return fmt.Errorf("open %s: %w", path, err)
	}
	defer db.Close()
	// One connection, never recycled: River's SQLite guidance, and what keeps
	// a :memory: database alive for the whole run.
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	db.SetConnMaxLifetime(0)
	db.SetConnMaxIdleTime(0)

	var mode string
	if err := db.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		return fmt.Errorf("open %s: %w", path, err)
	}
	want := "wal"
	if path == ":memory:" {
		want = "memory" // SQLite keeps in-memory databases in this mode
	}
	if mode != want {
		return fmt.Errorf("open %s: journal_mode is %q, want %q", path, mode, want)
	}
	fmt.Fprintf(stderr, "river: sqlite %s (journal_mode %s, synchronous %s, 1 connection)\n", path, mode, syncMode)

	states := func(ctx context.Context) (map[string]int64, error) {
		rows, err := db.QueryContext(ctx, "SELECT state, count(*) FROM river_job GROUP BY state")
		if err != nil {
			return nil, err
		}
		defer rows.Close()
		m := map[string]int64{}
		for rows.Next() {
			var st string
			var n int64
			if err := rows.Scan(&st, &n); err != nil {
				return nil, err
			}
			m[st] = n
		}
		return m, rows.Err()
	}
	return bench(ctx, stdout, stderr, riversqlite.New(db), states, s)
}

// runPostgres connects to the PostgreSQL database at url and runs the
// benchmark on it.
func runPostgres(ctx context.Context, stdout, stderr io.Writer, url string, s settings) error {
	pc, err := pgxpool.ParseConfig(url)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	if s.latency {
		// One connection per enqueuer, and room for River's producer,
		// completer and maintenance services.
		pc.MaxConns = int32(min(s.enqueuers+8, 1000))
	}
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer pool.Close()
	if err := pool.Ping(ctx); err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	fmt.Fprintf(stderr, "river: postgres (pool of up to %d connections)\n", pool.Config().MaxConns)

	states := func(ctx context.Context) (map[string]int64, error) {
		rows, err := pool.Query(ctx, "SELECT state::text, count(*) FROM river_job GROUP BY state")
		if err != nil {
			return nil, err
		}
		defer rows.Close()
		m := map[string]int64{}
		for rows.Next() {
			var st string
			var n int64
			if err := rows.Scan(&st, &n); err != nil {
				return nil, err
			}
			m[st] = n
		}
		return m, rows.Err()
	}
	return bench(ctx, stdout, stderr, riverpgxv5.New(pool), states, s)
}

// noopArgs are the benchmark's job arguments: nothing.
type noopArgs struct{}

// Kind implements river.JobArgs.
func (noopArgs) Kind() string { return "noop" }

// bench migrates and checks that river_job is empty (or truncates it),
// then runs the mode's benchmark. states counts river_job rows by state.
func bench[TTx any](ctx context.Context, stdout, stderr io.Writer, driver riverdriver.Driver[TTx],
	states func(context.Context) (map[string]int64, error), s settings) error {
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))

	migrator, err := rivermigrate.New(driver, &rivermigrate.Config{Logger: logger})
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	if _, err := migrator.Migrate(ctx, rivermigrate.DirectionUp, nil); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	before, err := states(ctx)
	if err != nil {
		return fmt.Errorf("count jobs: %w", err)
	}
	if total(before) != 0 {
		if !s.truncate || driver.DatabaseName() == riverdriver.DatabaseNameSQLite {
			return fmt.Errorf("river_job already holds %d jobs (postgres: pass --truncate to empty it)", total(before))
		}
		if err := driver.GetExecutor().Exec(ctx, "TRUNCATE river_job"); err != nil {
			return fmt.Errorf("truncate river_job: %w", err)
		}
	}
	if s.latency {
		return latency(ctx, stdout, stderr, driver, logger, s)
	}
	return burn(ctx, stdout, stderr, driver, logger, states, s)
}

// burn inserts s.jobs jobs, works them and checks the result.
func burn[TTx any](ctx context.Context, stdout, stderr io.Writer, driver riverdriver.Driver[TTx], logger *slog.Logger,
	states func(context.Context) (map[string]int64, error), s settings) error {
	workers := river.NewWorkers()
	river.AddWorker(workers, river.WorkFunc(func(context.Context, *river.Job[noopArgs]) error { return nil }))
	client, err := river.NewClient(driver, &river.Config{
		FetchCooldown:     s.fetchCooldown,
		FetchPollInterval: s.fetchPollInterval,
		Logger:            logger,
		Queues:            map[string]river.QueueConfig{river.QueueDefault: {MaxWorkers: s.maxWorkers}},
		Workers:           workers,
	})
	if err != nil {
		return fmt.Errorf("new client: %w", err)
	}
	fmt.Fprintf(stderr, "river: %d jobs, InsertMany batches of %d, MaxWorkers %d, FetchCooldown %v, FetchPollInterval %v\n",
		s.jobs, s.insertBatch, s.maxWorkers, s.fetchCooldown, s.fetchPollInterval)

	start := time.Now()
	batch := make([]river.InsertManyParams, 0, s.insertBatch)
	for i := 0; i < s.jobs; i += len(batch) {
		batch = batch[:0]
		for j := i; j < s.jobs && len(batch) < s.insertBatch; j++ {
			batch = append(batch, river.InsertManyParams{Args: noopArgs{}})
		}
		if _, err := client.InsertMany(ctx, batch); err != nil {
			return fmt.Errorf("insert: %w", err)
		}
	}
	el := time.Since(start)
	fmt.Fprintf(stdout, "insert: %d jobs in %.2fs: %.0f jobs/s\n", s.jobs, el.Seconds(), float64(s.jobs)/el.Seconds())

	// Subscribe before Start so that no event is missed; the buffer holds
	// every event the run can produce, so River drops none.
	events, unsubscribe := client.SubscribeConfig(&river.SubscribeConfig{
		ChanSize: s.jobs + 1000,
		Kinds: []river.EventKind{
			river.EventKindJobCompleted,
			river.EventKindJobFailed,
			river.EventKindJobCancelled,
			river.EventKindJobSnoozed,
		},
	})
	defer unsubscribe()

	start = time.Now()
	if err := client.Start(ctx); err != nil {
		return fmt.Errorf("start: %w", err)
	}
	done, waitErr := waitCompleted(ctx, stderr, events, s.jobs, start)
	el = time.Since(start)

	stopCtx, cancel := context.WithTimeout(context.Background(), stopTimeout)
	defer cancel()
	stopErr := client.Stop(stopCtx)
	if stopErr != nil {
		stopErr = fmt.Errorf("stop: %w", stopErr)
	}
	if waitErr != nil {
		return errors.Join(fmt.Errorf("%d of %d jobs completed: %w", done, s.jobs, waitErr), stopErr)
	}
	if stopErr != nil {
		return stopErr
	}

	// Count in a fresh context: the run's may be nearly spent.
	countCtx, cancelCount := context.WithTimeout(context.Background(), stopTimeout)
	defer cancelCount()
	after, err := states(countCtx)
	if err != nil {
		return fmt.Errorf("count jobs: %w", err)
	}
	if after["completed"] != int64(s.jobs) || total(after) != int64(s.jobs) {
		return fmt.Errorf("river_job disagrees: %s, want %d completed", format(after), s.jobs)
	}
	fmt.Fprintf(stdout, "burn: %d jobs in %.2fs: %.0f jobs/s\n", s.jobs, el.Seconds(), float64(s.jobs)/el.Seconds())
	return nil
}

// waitCompleted reads events until n job_completed events have arrived,
// printing progress to stderr every 10 s. It fails on any other job event,
// on a closed subscription and when ctx ends. It returns the number of
// completions seen.
func waitCompleted(ctx context.Context, stderr io.Writer, events <-chan *river.Event, n int, start time.Time) (int, error) {
	tick := time.NewTicker(10 * time.Second)
	defer tick.Stop()
	done, last := 0, 0
	for done < n {
		select {
		case ev, ok := <-events:
			if !ok {
				return done, errors.New("event subscription closed")
			}
			if ev.Kind != river.EventKindJobCompleted {
				if ev.Job != nil {
					return done, fmt.Errorf("job %d: unexpected %s event (state %s)", ev.Job.ID, ev.Kind, ev.Job.State)
				}
				return done, fmt.Errorf("unexpected %s event", ev.Kind)
			}
			done++
		case <-tick.C:
			fmt.Fprintf(stderr, "river: %.0fs: %d of %d completed (%.0f jobs/s over the last 10s)\n",
				time.Since(start).Seconds(), done, n, float64(done-last)/10)
			last = done
		case <-ctx.Done():
			return done, context.Cause(ctx)
		}
	}
	return done, nil
}

// total sums a count by state.
func total(m map[string]int64) int64 {
	var t int64
	for _, n := range m {
		t += n
	}
	return t
}

// format prints a count by state in a stable order.
func format(m map[string]int64) string {
	if len(m) == 0 {
		return "no jobs"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s %d", k, m[k])
	}
	return strings.Join(parts, ", ")
}
