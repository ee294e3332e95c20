package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"regexp"
	"runtime/pprof"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sluicehq/sluice/jobs"
	"github.com/sluicehq/sluice/jobs/pgstore"
	"github.com/sluicehq/sluice/jobs/sqlitestore"
)

const benchUsage = `Usage:
  sluice bench burn    --db <sqlite:file|postgres://...> [--jobs N] [--concurrency C] [--fetch-batch B] [--fail F --backoff D]
  sluice bench latency --db <sqlite:file|postgres://...> [--rate R] [--duration D] [--concurrency C] [--enqueuers E]

burn inserts N no-op jobs (printing the insert rate), then starts a worker
and times from its start until the last job is recorded complete. It ends
with one line: burn: <N> jobs in <S>s: <X> jobs/s
With --fail F each job fails its first F attempts and is retried after
--backoff (jittered, as every backoff: between half of it and all of it):
a retry storm in which every job runs F+1 times. The line then also gives
the attempts the handler saw, and their rate.

latency enqueues single jobs at a fixed arrival rate for a duration while a
worker runs them, and reports the time from just before each Enqueue call
to the start of its handler:
latency: <N> jobs at <R>/s: p50 <d> p90 <d> p99 <d> max <d>

Databases: sqlite:<file> must not exist. For postgres://host/dbname each
run works in a fresh schema (--schema, default a random sluice_<cmd>_<hex>),
which must not exist or be empty, and which is dropped at the end (even one
that existed empty) unless --keep. Run "sluice bench <cmd> -h" for every flag.
`

// errBenchUsage marks errors that are the caller's to fix (exit status 2).
var errBenchUsage = errors.New("usage")

// runBench dispatches "sluice bench ...".
func runBench(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, benchUsage)
		return 2
	}
	switch args[0] {
	case "burn":
		return runBurn(args[1:], stdout, stderr)
	case "latency":
		return runLatency(args[1:], stdout, stderr)
	}
	fmt.Fprint(stderr, benchUsage)
	return 2
}

// benchExit prints err (if any) for command cmd and returns the exit status.
func benchExit(stderr io.Writer, cmd string, err error) int {
	if err == nil {
		return 0
	}
	fmt.Fprintf(stderr, "sluice bench %s: %v\n", cmd, err)
	if errors.Is(err, errBenchUsage) {
		return 2
	}
	return 1
}

// benchDB is the database of one bench run: the flags burn and latency
// share, and the fresh store they open.
type benchDB struct {
	url    string // --db
	schema string // --schema; "" means a random sluice_<cmd>_<hex> (PostgreSQL only)
	keep   bool   // --keep: leave the PostgreSQL schema behind
	cmd    string // "burn" or "latency", for names and messages
}

func (b *benchDB) flags(fs *flag.FlagSet) {
	fs.StringVar(&b.url, "db", "", "database: sqlite:<file> (created; an existing file is refused) or postgres://host/dbname")
	fs.StringVar(&b.schema, "schema", "", "postgres only: schema for this run; it must not exist or be empty (default sluice_"+b.cmd+"_<random>)")
	fs.BoolVar(&b.keep, "keep", false, "postgres only: keep the schema instead of dropping it at the end")
}

// benchSchemaRE is pgstore's rule for schema names (see pgstore.Config).
var benchSchemaRE = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,55}$`)

// check validates the flags without touching the database.
func (b *benchDB) check() error {
	if path, ok := strings.CutPrefix(b.url, "sqlite:"); ok {
		if path == "" {
			return fmt.Errorf("%w: --db sqlite:<file> needs a file", errBenchUsage)
		}
		if b.schema != "" || b.keep {
			return fmt.Errorf("%w: --schema and --keep are for postgres:// databases", errBenchUsage)
		}
		if _, err := os.Stat(path); err == nil {
			return fmt.Errorf("%w: %s exists; the benchmark needs a fresh file", errBenchUsage, path)
		}
		return nil
	}
	if !strings.HasPrefix(b.url, "postgres://") && !strings.HasPrefix(b.url, "postgresql://") {
		return fmt.Errorf("%w: --db must be sqlite:<file> or postgres://host/dbname", errBenchUsage)
	}
	pc, err := pgx.ParseConfig(b.url)
	if err != nil {
		return fmt.Errorf("%w: --db: %v", errBenchUsage, err)
	}
	if pc.Database == "" {
		return fmt.Errorf("%w: --db must name the database (postgres://host/dbname): the run creates a schema in it", errBenchUsage)
	}
	if b.schema == "" {
		var r [4]byte
		_, _ = rand.Read(r[:])
		b.schema = "sluice_" + b.cmd + "_" + hex.EncodeToString(r[:])
	}
	if !benchSchemaRE.MatchString(b.schema) || strings.HasPrefix(b.schema, "pg_") {
		return fmt.Errorf("%w: --schema %q must be 1..56 bytes of a-z, 0-9 and _, not start with a digit or pg_", errBenchUsage, b.schema)
	}
	return nil
}

// open opens a fresh store: a new SQLite file, or a new (or empty)
// PostgreSQL schema whose pool holds up to maxConns connections (0: the
// store's default). The returned cleanup closes the store and drops the
// schema unless --keep; it must be called even when the run failed.
func (b *benchDB) open(ctx context.Context, stderr io.Writer, maxConns int32) (jobs.Store, func() error, error) {
	if path, ok := strings.CutPrefix(b.url, "sqlite:"); ok {
		s, err := sqlitestore.Open(ctx, path, sqlitestore.Config{})
		if err != nil {
			return nil, nil, err
		}
		return s, s.Close, nil
	}
	if err := b.checkSchemaEmpty(ctx); err != nil {
		return nil, nil, err
	}
	s, err := pgstore.Open(ctx, b.url, pgstore.Config{
		Schema:   b.schema,
		MaxConns: maxConns,
		Logger:   slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		return nil, nil, errors.Join(err, b.dropSchema(stderr))
	}
	cleanup := func() error {
		return errors.Join(s.Close(), b.dropSchema(stderr))
	}
	return s, cleanup, nil
}

// checkSchemaEmpty refuses a schema that holds anything.
func (b *benchDB) checkSchemaEmpty(ctx context.Context) error {
	conn, err := pgx.Connect(ctx, b.url)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var objects int
	err = conn.QueryRow(ctx, `SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1`,
		b.schema).Scan(&objects)
	if err != nil {
		return fmt.Errorf("check schema %q: %w", b.schema, err)
	}
	if objects > 0 {
		return fmt.Errorf("%w: schema %q holds %d relations; the benchmark needs a fresh or empty schema", errBenchUsage, b.schema, objects)
	}
	return nil
}

// dropSchema drops the run's schema, unless --keep, in a context of its
// own (the run's may be spent), and says so on stderr.
func (b *benchDB) dropSchema(stderr io.Writer) error {
	if b.keep {
		fmt.Fprintf(stderr, "sluice bench %s: kept schema %q\n", b.cmd, b.schema)
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, b.url)
	if err != nil {
		return fmt.Errorf("drop schema %q: %w", b.schema, err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `DROP SCHEMA IF EXISTS `+pgx.Identifier{b.schema}.Sanitize()+` CASCADE`); err != nil {
		return fmt.Errorf("drop schema %q: %w", b.schema, err)
	}
	return nil
}

// runBurn is "sluice bench burn".
func runBurn(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("bench burn", flag.ContinueOnError)
	fs.SetOutput(stderr)
	db := benchDB{cmd: "burn"}
	db.flags(fs)
	n := fs.Int("jobs", 200_000, "number of no-op jobs")
	conc := fs.Int("concurrency", 1000, "jobs run at once")
	fetch := fs.Int("fetch-batch", 500, "jobs claimed per fetch")
	insertBatch := fs.Int("insert-batch", 5000, "jobs per enqueue transaction")
	timeout := fs.Duration("timeout", 20*time.Minute, "give up after this long")
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile of the burn phase to this file")
	var rs retryStorm
	fs.IntVar(&rs.fail, "fail", 0, "each job fails this many attempts before it succeeds")
	fs.DurationVar(&rs.backoff, "backoff", 10*time.Millisecond, "with --fail: the wait before each retry")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() != 0 {
		return benchExit(stderr, "burn", fmt.Errorf("%w: unexpected argument %q", errBenchUsage, fs.Arg(0)))
	}
	if *n <= 0 || *conc <= 0 || *fetch <= 0 || *insertBatch <= 0 {
		return benchExit(stderr, "burn", fmt.Errorf("%w: --jobs, --concurrency, --fetch-batch and --insert-batch must be positive", errBenchUsage))
	}
	if rs.fail < 0 || rs.fail > maxBurnFail || rs.backoff <= 0 {
		return benchExit(stderr, "burn", fmt.Errorf("%w: --fail must be 0..%d and --backoff positive", errBenchUsage, maxBurnFail))
	}
	if err := db.check(); err != nil {
		return benchExit(stderr, "burn", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	store, cleanup, err := db.open(ctx, stderr, 0)
	if err != nil {
		return benchExit(stderr, "burn", err)
	}
	err = burn(ctx, stdout, store, *n, *conc, *fetch, *insertBatch, rs, *cpuprofile)
	return benchExit(stderr, "burn", errors.Join(err, cleanup()))
}

// retryStorm makes burn's jobs fail their first attempts (see the usage).
type retryStorm struct {
	fail    int
	backoff time.Duration
}

// newJob is one of burn's jobs.
func (rs retryStorm) newJob() jobs.NewJob {
	if rs.fail == 0 {
		return jobs.NewJob{Kind: "noop"}
	}
	return jobs.NewJob{Kind: "noop", MaxAttempts: rs.fail + 1, BackoffMin: rs.backoff, BackoffMax: rs.backoff}
}

// maxBurnFail bounds --fail: a storm of more retries per job says nothing
// more.
const maxBurnFail = 100

// errBurnFail is the failure of a job's first attempts under --fail.
var errBurnFail = errors.New("bench: failing as told by --fail")

func burn(ctx context.Context, out io.Writer, store jobs.Store, n, conc, fetchBatch, insertBatch int, rs retryStorm, cpuprofile string) error {
	client := jobs.NewClient(store, jobs.ClientConfig{})
	const queue = "burn"
	if _, err := client.PutQueue(ctx, jobs.QueueConfig{Name: queue, Concurrency: conc, Capacity: n}); err != nil {
		return err
	}

	start := time.Now()
	batch := make([]jobs.NewJob, 0, insertBatch)
	for i := 0; i < n; i += len(batch) {
		batch = batch[:0]
		for j := i; j < n && len(batch) < insertBatch; j++ {
			batch = append(batch, rs.newJob())
		}
		if _, err := client.EnqueueMany(ctx, queue, batch); err != nil {
			return fmt.Errorf("insert: %w", err)
		}
	}
	el := time.Since(start)
	fmt.Fprintf(out, "insert: %d jobs in %.2fs: %.0f jobs/s\n", n, el.Seconds(), float64(n)/el.Seconds())

	var done, attempts atomic.Int64
	finished := make(chan struct{})
	reg := jobs.NewRegistry()
	reg.Handle("noop", jobs.HandlerFunc(func(_ context.Context, j *jobs.Job) error {
		attempts.Add(1)
		if j.Attempt <= rs.fail {
			return errBurnFail
		}
		return nil
	}))
	w := jobs.NewWorker(store, reg, jobs.WorkerConfig{
		Queues:     []string{queue},
		FetchBatch: fetchBatch,
		Logger:     slog.New(slog.DiscardHandler),
		OnRecorded: func(os []jobs.Outcome, applied []bool) {
			var k int64
			for i, o := range os {
				if applied[i] && o.Kind == jobs.Succeeded {
					k++
				}
			}
			if done.Add(k) == int64(n) {
				close(finished)
			}
		},
	})
	if cpuprofile != "" {
		stop, err := startCPUProfile(cpuprofile)
		if err != nil {
			return err
		}
		defer stop()
	}
	start = time.Now()
	if err := w.Start(ctx); err != nil {
		return err
	}
	select {
	case <-finished:
	case <-ctx.Done():
	}
	el = time.Since(start)
	stopCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stopErr := w.Stop(stopCtx)
	if got := done.Load(); got != int64(n) {
		return fmt.Errorf("only %d of %d jobs completed before %v", got, n, context.Cause(ctx))
	}
	// A fresh context: the run's may be nearly spent.
	st, err := store.QueueStats(stopCtx, queue, time.Time{})
	if err != nil {
		return err
	}
	if st.Waiting != 0 || st.Running != 0 || st.Finished != n {
		return fmt.Errorf("store disagrees: %+v, want %d finished", st, n)
	}
	fmt.Fprintf(out, "burn: %d jobs in %.2fs: %.0f jobs/s", n, el.Seconds(), float64(n)/el.Seconds())
	if rs.fail > 0 {
		a := attempts.Load()
		fmt.Fprintf(out, ", %d attempts: %.0f attempts/s", a, float64(a)/el.Seconds())
	}
	fmt.Fprintln(out)
	return stopErr
}

// startCPUProfile writes a CPU profile to path until stop is called.
func startCPUProfile(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}
