// Package pgstore is the jobs.Store on PostgreSQL (through
// github.com/jackc/pgx/v5 and its pgxpool), for several `sluice serve`
// nodes sharing one database. It passes the conformance suite of
// jobs/storetest, and it also implements jobs.Notifier (LISTEN/NOTIFY),
// jobs.Elector (a leader row) and jobs.Lookahead.
//
// # Schema
//
// Every table lives in one schema (Config.Schema, "sluice" by default), so
// that several installations, or parallel tests, can share a database.
// Open creates or migrates it (see Migrate): an ordered list of SQL steps
// embedded in the package, applied in one transaction under an advisory
// lock, so that nodes starting together are safe, and recorded in the
// schema_migrations table. A database whose schema is newer than this
// build is refused (ErrSchemaNewer).
//
// Times are stored as bigint Unix nanoseconds (UTC) so that they read back
// exactly as the engine passed them; to_timestamp(x / 1e9) shows one.
//
// # Capacity across nodes
//
// Each queue's row carries a count of its waiting jobs, kept exact by
// statement-level triggers on inserts into and deletes from the jobs table
// (the store's or an operator's; TRUNCATE excepted), and by the store's own
// statements that move jobs into or out of the waiting state (an
// operator's UPDATE of a job's state is not counted). Enqueue locks
// the queue's row (SELECT ... FOR UPDATE) for its whole transaction, reads
// the count and inserts, so Enqueue calls into one queue take turns
// whichever node makes them: Enqueue never makes a queue hold more than
// Capacity waiting jobs, however many nodes enqueue at once. Only jobs
// coming back to waiting from running (Retry, Released, RecoverLeases),
// which are never refused, can take the count above Capacity, by at most
// the number of jobs that were running; Enqueue then refuses until it is
// back below. The same lock makes idempotency keys hold across nodes.
//
// The price is that statements moving jobs in or out of waiting (Fetch,
// Cancel, RecoverLeases, ...) update the queue's row too, so they wait for
// an Enqueue transaction into the same queue to commit, and vice versa;
// both are short. Shedding picks its victim with SKIP LOCKED, so it never
// waits for a Fetch.
//
// # Notifications and leadership
//
// The store NOTIFIES the channel <schema>_events with "queue:<name>" when
// jobs due now become waiting in a queue (an insert trigger for new jobs;
// Complete and RecoverLeases for jobs going back to waiting; once per
// transaction and queue), with "due:<unix ns>:<name>" when the jobs that
// became waiting are all scheduled for later (the earliest RunAt; a
// worker then needs no fetch until that time), and a trigger with
// "cancel:<id>" when the
// cancellation of a running job is requested. Listen holds one dedicated connection,
// outside the pool, per call. The Elector keeps one row in the leader
// table.
//
// # Errors and deadlines
//
// Every method runs under ctx and under Config.Timeout (default 5 s),
// whichever ends first. A call stopped by its deadline returns at once; its
// connection is dropped and pgx sends the server a cancel request in the
// background, so that the statement stops there instead of going on (and,
// say, claiming jobs) after the caller gave up. The server also ends
// statements that run longer than Timeout (statement_timeout) and
// transactions idle for twice as long, unless the URL sets those.
//
// A call that cannot finish in time, cannot connect, or loses its
// connection (server shut down or restarted, out of connections, read-only
// after a failover) returns an error wrapping jobs.ErrUnavailable; a call
// whose ctx was canceled, an error wrapping context.Canceled; after Close,
// jobs.ErrClosed. Deadlocks, serialization failures and connections found
// dead are retried inside the call (up to 4 attempts, within its
// deadline), except a failed COMMIT, which may have applied and is
// reported instead.
//
// # Costs
//
// Fetch is one statement that claims jobs with FOR UPDATE SKIP LOCKED
// through a partial index on waiting jobs, seeking each priority in turn
// so that jobs scheduled for later are never read, updates them, and
// takes them off their queue's waiting count; it runs in an
// explicit transaction so that a caller that gave up never leaves claims
// behind (as do Cancel and every multi-statement call). Enqueue is one
// transaction of four round trips (begin; queue lock and idempotency
// lookup; one multi-row INSERT; commit), shared by the concurrent Enqueue
// calls of one queue (group commit, see Enqueue), so that single-job
// calls from many goroutines do not take turns on the queue's lock one by
// one. Complete applies a batch with one UPDATE over arrays (plus one more
// round trip for repeated outcomes of a job, for group cancellations, and
// for the waiting counts when jobs go back to waiting).
// Heartbeat is one statement. BenchmarkFetchComplete and
// BenchmarkEnqueueSingle measure them; docs/benchmarks.md has the figures
// beside River.
package pgstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/sluicehq/sluice/jobs"
)

// Config holds a Store's optional knobs. The zero value works.
type Config struct {
	// Schema is the PostgreSQL schema that holds every table. "" means
	// DefaultSchema. It must be 1..56 bytes of lower-case ASCII letters,
	// digits and '_', start with a letter or '_', and not start with "pg_".
	Schema string
	// Timeout bounds every call, on top of the caller's ctx: a call that
	// has not finished after Timeout fails with jobs.ErrUnavailable. It also
	// bounds each connection attempt (unless the URL sets connect_timeout),
	// is the server's statement_timeout for the store's connections, and,
	// doubled, their idle_in_transaction_session_timeout (unless the URL
	// sets those). Zero means DefaultTimeout; negative means no bound other
	// than ctx.
	Timeout time.Duration
	// MaxConns bounds the pool's connections. Zero means the URL's
	// pool_max_conns, or else pgxpool's default (the greater of 4 and the
	// number of CPUs). Each Listen holds one more connection, outside the
	// pool.
	MaxConns int32
	// Logger receives Listen's reconnections and the store's retries. Nil
	// means slog.Default().
	Logger *slog.Logger
	// NoMigrate makes Open check that the schema is at this build's
	// version instead of creating or migrating it: a database that needs
	// migrating is refused (run Migrate first).
	NoMigrate bool
}

// Defaults of Config.
const (
	DefaultSchema  = "sluice"
	DefaultTimeout = 5 * time.Second
)

// maxAttempts bounds the tries of one call when it meets a transient
// failure (deadlock, serialization failure, a dead pooled connection).
const maxAttempts = 4

var schemaRE = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,55}$`)

// checkSchema validates a schema name (see Config.Schema).
func checkSchema(schema string) error {
	if !schemaRE.MatchString(schema) || strings.HasPrefix(schema, "pg_") {
		return fmt.Errorf("pgstore: schema %q must be 1..56 bytes of a-z, 0-9 and _, not start with a digit or pg_", schema)
	}
	return nil
}

// Store is a jobs.Store on a PostgreSQL database. It is safe for
// concurrent use, and several Stores (in one process or many) may share
// one database and schema.
type Store struct {
	pool    *pgxpool.Pool
	schema  string
	channel string // the NOTIFY channel
	timeout time.Duration
	log     *slog.Logger
	q       queries

	bg     context.Context // canceled by Close: ends the Listen goroutines
	stopBG context.CancelFunc

	// The Enqueue calls waiting for their queue's transaction (see
	// Enqueue), by queue.
	enqMu     sync.Mutex
	enqQueues map[string]*enqQueue // guarded by enqMu
	// testRound, when set (by tests, before use), is called as a round
	// of n calls starts and as it ends (with the calls it wrote).
	testRound func(queue string, n int, start bool)
	rounds    sync.WaitGroup // runRounds goroutines; Add under mu while !closed

	mu        sync.Mutex
	closed    bool           // guarded by mu
	listeners sync.WaitGroup // Listen goroutines; Add under mu while !closed
	closeOnce sync.Once
}

var (
	_ jobs.Store    = (*Store)(nil)
	_ jobs.Notifier = (*Store)(nil)
	_ jobs.Elector  = (*Store)(nil)
)

// Open connects to the database at url (a postgres:// URL or a key=value
// DSN that pgxpool accepts), creates or migrates the schema (unless
// cfg.NoMigrate), and returns a Store. Open is bounded by ctx; each
// connection attempt by cfg.Timeout. A database that cannot be reached
// gives an error wrapping jobs.ErrUnavailable; one whose schema is newer
// than this build, ErrSchemaNewer.
func Open(ctx context.Context, url string, cfg Config) (*Store, error) {
	if cfg.Schema == "" {
		cfg.Schema = DefaultSchema
	}
	if err := checkSchema(cfg.Schema); err != nil {
		return nil, err
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.MaxConns < 0 {
		return nil, errors.New("pgstore: open: MaxConns must not be negative")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	pc, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("pgstore: open: %w", err)
	}
	if cfg.MaxConns > 0 {
		pc.MaxConns = cfg.MaxConns
	}
	rp := pc.ConnConfig.RuntimeParams
	if _, ok := rp["application_name"]; !ok {
		rp["application_name"] = "sluice"
	}
	if cfg.Timeout > 0 {
		ms := max(cfg.Timeout.Milliseconds(), 1)
		if _, ok := rp["statement_timeout"]; !ok {
			rp["statement_timeout"] = strconv.FormatInt(ms, 10)
		}
		if _, ok := rp["idle_in_transaction_session_timeout"]; !ok {
			rp["idle_in_transaction_session_timeout"] = strconv.FormatInt(max(2*ms, 1000), 10)
		}
		if pc.ConnConfig.ConnectTimeout == 0 {
			pc.ConnConfig.ConnectTimeout = cfg.Timeout
		}
	}
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("pgstore: open: %w", err)
	}
	s := &Store{
		pool:    pool,
		schema:  cfg.Schema,
		channel: channelName(cfg.Schema),
		timeout: cfg.Timeout,
		log:     cfg.Logger,
		q:       newQueries(cfg.Schema),

		enqQueues: map[string]*enqQueue{},
	}
	s.bg, s.stopBG = context.WithCancel(context.Background())
	err = s.retry(ctx, "open", func(ctx context.Context) error {
		conn, err := pool.Acquire(ctx)
		if err != nil {
			return err
		}
		defer conn.Release()
		if cfg.NoMigrate {
			return checkVersion(ctx, conn.Conn(), cfg.Schema)
		}
		_, err = migrate(ctx, conn.Conn(), cfg.Schema)
		return err
	})
	if err != nil {
		err = s.wrap(ctx, "open", err)
		s.stopBG()
		pool.Close()
		return nil, err
	}
	return s, nil
}

// channelName is the NOTIFY channel of schema.
func channelName(schema string) string { return schema + "_events" }

// Close stops the Listen goroutines and the Enqueue transactions in
// progress (and waits for them), then closes the pool after the calls in
// progress have returned. It is idempotent and safe for concurrent use;
// later calls fail with jobs.ErrClosed.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		s.stopBG()
		s.listeners.Wait()
		s.rounds.Wait()
		s.pool.Close()
	})
	return nil
}

func (s *Store) isClosed() bool { return s.bg.Err() != nil }

// begin starts the call op: it checks that the store is open and ctx not
// done, and bounds ctx by the store's timeout. Its error is ready for the
// caller.
func (s *Store) begin(ctx context.Context, op string) (context.Context, context.CancelFunc, error) {
	if s.isClosed() {
		return nil, nil, fmt.Errorf("pgstore: %s: %w", op, jobs.ErrClosed)
	}
	if err := ctx.Err(); err != nil {
		return nil, nil, s.wrap(ctx, op, err)
	}
	if s.timeout > 0 {
		cctx, cancel := context.WithTimeout(ctx, s.timeout)
		return cctx, cancel, nil
	}
	cctx, cancel := context.WithCancel(ctx)
	return cctx, cancel, nil
}

// wrap turns err from a call under ctx into the error the caller sees:
// domain errors pass through; a done ctx and connection failures become
// jobs.ErrUnavailable (or context.Canceled); a closed store jobs.ErrClosed.
func (s *Store) wrap(ctx context.Context, op string, err error) error {
	if err == nil {
		return nil
	}
	var ve *jobs.ValidationError
	var qf *jobs.QueueFullError
	if errors.Is(err, jobs.ErrNotFound) || errors.As(err, &ve) || errors.As(err, &qf) {
		return err
	}
	if s.isClosed() || errors.Is(err, jobs.ErrClosed) {
		return fmt.Errorf("pgstore: %s: %w", op, jobs.ErrClosed)
	}
	if cerr := ctx.Err(); cerr != nil {
		if errors.Is(cerr, context.Canceled) {
			return fmt.Errorf("pgstore: %s: %w", op, cerr)
		}
		return fmt.Errorf("pgstore: %s: %w: %w", op, jobs.ErrUnavailable, cerr)
	}
	var ce *commitError
	if errors.As(err, &ce) {
		err = ce.err
	}
	if errors.Is(err, context.Canceled) {
		return fmt.Errorf("pgstore: %s: %w", op, err)
	}
	if transient(err) || connectionLost(err) {
		return fmt.Errorf("pgstore: %s: %w: %w", op, jobs.ErrUnavailable, err)
	}
	return fmt.Errorf("pgstore: %s: %w", op, err)
}

// sqlState returns the SQLSTATE of a server error, or "".
func sqlState(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

// transient reports a failure that a new attempt of the whole transaction
// may not meet: serialization failures and deadlocks (the transaction was
// rolled back), and lock timeouts, except a schema step's
// (stepLockedError).
func transient(err error) bool {
	if _, ok := errors.AsType[*stepLockedError](err); ok {
		return false
	}
	switch sqlState(err) {
	case "40001", "40P01", "55P03": // serialization_failure, deadlock_detected, lock_not_available
		return true
	}
	return false
}

// connectionLost reports a failure of the database or of the connection
// to it, rather than of the statement: the server shut down, restarted or
// refused the connection, the socket broke, a timeout fired.
func connectionLost(err error) bool {
	if code := sqlState(err); code != "" {
		switch {
		case strings.HasPrefix(code, "08"): // connection_exception
			return true
		case strings.HasPrefix(code, "53"): // insufficient_resources: too many connections, disk full
			return true
		case strings.HasPrefix(code, "58"): // system_error, io_error
			return true
		}
		switch code {
		case "57P01", "57P02", "57P03", "57P05": // admin_shutdown, crash_shutdown, cannot_connect_now, idle_session_timeout
			return true
		case "57014": // query_canceled (statement_timeout, a cancel request)
			return true
		case "25006": // read_only_sql_transaction: a standby after a failover
			return true
		case "25P03": // idle_in_transaction_session_timeout
			return true
		}
		return false
	}
	var ce *pgconn.ConnectError
	var ne net.Error
	return errors.As(err, &ce) || errors.As(err, &ne) || pgconn.Timeout(err) || pgconn.SafeToRetry(err) ||
		errors.Is(err, pgconn.ErrConnClosed) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, context.DeadlineExceeded)
}

// serverGone reports an error that means the server dropped this store's
// connections (a shutdown or restart): the pool's other idle connections
// are likely dead too.
func serverGone(err error) bool {
	switch sqlState(err) {
	case "57P01", "57P02", "57P03":
		return true
	}
	return false
}

// commitError is a failed COMMIT: the transaction may or may not have
// committed.
type commitError struct{ err error }

func (e *commitError) Error() string { return "commit: " + e.err.Error() }
func (e *commitError) Unwrap() error { return e.err }

// retry runs f until it succeeds, fails for good, or has been tried
// maxAttempts times. It tries again after transient failures and lost
// connections, unless the failure was a COMMIT that may have applied.
func (s *Store) retry(ctx context.Context, op string, f func(ctx context.Context) error) error {
	for attempt := 1; ; attempt++ {
		err := f(ctx)
		if err == nil {
			return nil
		}
		if attempt >= maxAttempts || ctx.Err() != nil || s.isClosed() {
			return err
		}
		var ce *commitError
		switch {
		case errors.As(err, &ce) && !pgconn.SafeToRetry(ce.err):
			return err
		case transient(err):
			// Back off a little, more each time, with jitter so that the
			// transactions that collided do not collide again.
			d := time.Duration(attempt) * (time.Millisecond + rand.N(5*time.Millisecond))
			if !sleepCtx(ctx, d) {
				return err
			}
		case connectionLost(err):
			if serverGone(err) {
				// The server dropped our connections: do not hand out the
				// other idle ones, which are dead too.
				s.pool.Reset()
			}
			if attempt > 1 && !sleepCtx(ctx, time.Duration(attempt)*20*time.Millisecond) {
				return err
			}
		default:
			return err
		}
		s.log.Debug("pgstore: retrying", "op", op, "attempt", attempt+1, "err", err)
	}
}

// sleepCtx sleeps for d or until ctx ends; it reports whether it slept
// the whole d.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// inTx runs f in a transaction (READ COMMITTED), retried as retry does.
// A failed COMMIT is returned as a *commitError.
func (s *Store) inTx(ctx context.Context, op string, f func(ctx context.Context, tx pgx.Tx) error) error {
	return s.retry(ctx, op, func(ctx context.Context) error {
		tx, err := s.pool.Begin(ctx)
		if err != nil {
			return err
		}
		if err := f(ctx, tx); err != nil {
			_ = tx.Rollback(context.WithoutCancel(ctx))
			return err
		}
		if err := tx.Commit(ctx); err != nil {
			return &commitError{err}
		}
		return nil
	})
}

// Time conversion: times are stored as bigint Unix nanoseconds (UTC); zero
// times as NULL or 0. Times outside the int64 range (years before 1678 or
// after 2262) are clamped to its ends.
var (
	minTime = time.Unix(0, -1<<63)
	maxTime = time.Unix(0, 1<<63-1)
)

func nanos(t time.Time) int64 {
	switch {
	case t.Before(minTime):
		return -1 << 63
	case t.After(maxTime):
		return 1<<63 - 1
	}
	return t.UnixNano()
}

// zeroNanos is nanos, or 0 for the zero time (stored as NULL).
func zeroNanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return nanos(t)
}

// fromNanos is the inverse of nanos; 0 is the zero time.
func fromNanos(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

// stored is t as it reads back from the database.
func stored(t time.Time) time.Time {
	if t.IsZero() {
		return t
	}
	return fromNanos(nanos(t))
}
