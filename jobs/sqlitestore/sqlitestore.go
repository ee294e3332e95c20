// Package sqlitestore is the embedded default jobs.Store: jobs and queue
// configurations in one SQLite file, through modernc.org/sqlite (pure Go,
// no cgo). It passes the conformance suite of jobs/storetest and also
// implements jobs.Lookahead and, for the calls made through it in this
// process, jobs.Notifier (see Listen).
//
// # Connections
//
// SQLite allows one writer at a time. The Store therefore keeps one writer
// connection, on which every method that changes data runs (multi-statement
// ones inside BEGIN IMMEDIATE, so that a writer in another process makes
// them wait on the busy timeout instead of failing when a read transaction
// would upgrade), and a small pool of read-only connections (Config.ReadConns)
// for Get, List, Group, GetQueue, Queues, QueueStats and NextDue. In WAL mode readers
// never wait for the writer, so a dashboard listing jobs does not slow the
// workers down, and concurrent writers in this process queue on the writer
// connection (bounded by their ctx) rather than on SQLite's lock.
//
// # Durability
//
// The database runs in WAL mode. With the default Config.Synchronous,
// SyncNormal, a committed transaction survives a crash or kill -9 of the
// process, but the last transactions before an operating-system crash or a
// power loss may be lost (the database stays consistent). SyncFull makes
// every commit durable against power loss too, at the cost of an fsync per
// commit.
//
// # Errors and deadlines
//
// Every method runs under ctx and under Config.Timeout (default 5 s),
// whichever ends first. A call that cannot finish in time, or that finds
// the database locked, busy or failing with an I/O error, returns an error
// wrapping jobs.ErrUnavailable; a call whose ctx was canceled returns an
// error wrapping context.Canceled. After Close, methods return errors
// wrapping jobs.ErrClosed.
//
// # Costs
//
// Fetch is one UPDATE ... RETURNING statement served by a partial index on
// waiting jobs, which it seeks once per priority, so jobs scheduled for
// later cost nothing; it reads back 8 columns: those the claim does not
// determine, with the ten that nearly always hold their defaults packed in
// one that is NULL when they do. Complete applies a batch in one
// transaction (two when some Succeeded outcome of a batch was fenced off):
// the Succeeded outcomes in one statement (each attempt packed in one
// integer of a JSON array), the others one prepared statement each.
// Heartbeat and Enqueue run a batch in one transaction with prepared
// statements. The queue's
// count of waiting jobs is kept in its row (by triggers, which Fetch and
// Succeeded outcomes do not fire, and by Fetch itself, once per batch), so
// the capacity check of Enqueue costs O(1) however full the queue is.
// On a shared 2-vCPU machine, BenchmarkFetchComplete measures 60,000 to
// 100,000 jobs/s enqueued in batches of 1,000 and 50,000 to 95,000 jobs/s
// fetched and completed, depending on the host's load (see its comment).
//
// List walks jobs by ID from AfterID, so a filter that matches few of
// many jobs is slow on a very large table.
package sqlitestore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/sluicehq/sluice/jobs"

	sqlite "modernc.org/sqlite"
)

// Synchronous is SQLite's synchronous setting for the WAL journal.
type Synchronous string

// The settings a Store accepts.
const (
	// SyncNormal fsyncs the WAL only at checkpoints: commits survive a
	// process crash, the last ones may be lost on an OS crash or power loss.
	SyncNormal Synchronous = "NORMAL"
	// SyncFull fsyncs the WAL at every commit: commits survive power loss.
	SyncFull Synchronous = "FULL"
)

// Config holds a Store's optional knobs. The zero value works.
type Config struct {
	// Timeout bounds every call, on top of the caller's ctx: a call that
	// has not finished after Timeout fails with jobs.ErrUnavailable. It is
	// also SQLite's busy timeout, how long a write waits for another
	// process's write lock. Zero means 5s; negative means no bound other
	// than ctx (and a busy timeout of one minute).
	Timeout time.Duration
	// Synchronous is the durability level; "" means SyncNormal. See the
	// package documentation for the trade-off.
	Synchronous Synchronous
	// ReadConns bounds the read-only connections. Zero means 4.
	ReadConns int
}

// DefaultTimeout is Config.Timeout's default.
const DefaultTimeout = 5 * time.Second

// Store is a jobs.Store on one SQLite database file. It is safe for
// concurrent use; several processes may open the same file (they then
// take turns to write).
type Store struct {
	w       *sql.DB // the writer: one connection
	r       *sql.DB // read-only connections
	timeout time.Duration

	// prepared statements on w; see prepare.
	stmts statements

	closeOnce sync.Once
	closeErr  error
	closed    chan struct{} // closed by Close

	hub hub // in-process notifications; see Listen
}

var _ jobs.Store = (*Store)(nil)

// Open opens (creating it if needed) the database file at path, creates or
// migrates its schema, and returns a Store. path must name a file (not
// ":memory:") and must not contain '?'. A database created elsewhere with
// a text encoding other than UTF-8 is refused.
func Open(ctx context.Context, path string, cfg Config) (*Store, error) {
	if path == "" || strings.ContainsRune(path, '?') || strings.HasPrefix(path, ":memory:") || strings.HasPrefix(path, "file:") {
		return nil, fmt.Errorf("sqlitestore: open: path %q must be a plain file path", path)
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	switch strings.ToUpper(string(cfg.Synchronous)) {
	case "", string(SyncNormal):
		cfg.Synchronous = SyncNormal
	case string(SyncFull):
		cfg.Synchronous = SyncFull
	default:
		return nil, fmt.Errorf("sqlitestore: open: synchronous %q must be NORMAL or FULL", cfg.Synchronous)
	}
	if cfg.ReadConns < 0 {
		return nil, fmt.Errorf("sqlitestore: open: ReadConns must not be negative")
	}
	if cfg.ReadConns == 0 {
		cfg.ReadConns = 4
	}
	busy := cfg.Timeout
	if busy < 0 {
		busy = time.Minute
	}
	busyMS := busy.Milliseconds()
	if busyMS < 1 {
		busyMS = 1
	}

	common := fmt.Sprintf("_pragma=busy_timeout(%d)&_pragma=temp_store(memory)", busyMS)
	w, err := sql.Open("sqlite", path+"?_txlock=immediate&"+common+
		"&_pragma=journal_mode(WAL)&_pragma=synchronous("+string(cfg.Synchronous)+")"+
		"&_pragma=cache_size(-32768)&_pragma=journal_size_limit(67108864)")
	if err != nil {
		return nil, fmt.Errorf("sqlitestore: open: %w", err)
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	w.SetConnMaxIdleTime(0)

	s := &Store{w: w, timeout: cfg.Timeout, closed: make(chan struct{})}
	s.hub.subs = make(map[chan jobs.Notification]struct{})
	cctx, cancel := s.callCtx(ctx)
	defer cancel()
	// The writer opens (and converts to WAL, creates the schema) first, so
	// that readers find a WAL database with tables.
	if err := checkEncoding(cctx, w); err != nil {
		w.Close()
		return nil, fmt.Errorf("sqlitestore: open: %w", err)
	}
	if err := migrate(cctx, w); err != nil {
		w.Close()
		return nil, s.wrap(cctx, "open", err)
	}
	r, err := sql.Open("sqlite", path+"?"+common+"&_pragma=query_only(1)&_pragma=cache_size(-8192)")
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("sqlitestore: open: %w", err)
	}
	r.SetMaxOpenConns(cfg.ReadConns)
	r.SetMaxIdleConns(cfg.ReadConns)
	s.r = r
	if err := r.PingContext(cctx); err != nil {
		err = s.wrap(cctx, "open", err) // before Close, which would make it ErrClosed
		s.Close()
		return nil, err
	}
	if err := s.prepare(cctx); err != nil {
		err = s.wrap(cctx, "open", err) // before Close, which would make it ErrClosed
		s.Close()
		return nil, err
	}
	return s, nil
}

// checkEncoding refuses a database whose text encoding is not UTF-8 (one
// created elsewhere with PRAGMA encoding = 'UTF-16'): Fetch reads byte
// lengths that SQLite counts in the file's encoding (see fetchCols).
func checkEncoding(ctx context.Context, db *sql.DB) error {
	var enc string
	if err := db.QueryRowContext(ctx, `PRAGMA encoding`).Scan(&enc); err != nil {
		return err
	}
	if enc != "UTF-8" {
		return fmt.Errorf("the database's text encoding is %s; this store needs UTF-8", enc)
	}
	return nil
}

// Close closes the database after the calls in progress have returned
// (each is bounded by Config.Timeout). It is idempotent and safe for
// concurrent use; later calls fail with jobs.ErrClosed.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		close(s.closed)
		s.closeListeners()
		s.stmts.close()
		var errs []error
		if s.r != nil {
			errs = append(errs, s.r.Close())
		}
		errs = append(errs, s.w.Close())
		if err := errors.Join(errs...); err != nil {
			s.closeErr = fmt.Errorf("sqlitestore: close: %w", err)
		}
	})
	return s.closeErr
}

// callCtx bounds a call by the store's timeout.
func (s *Store) callCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	if s.timeout > 0 {
		return context.WithTimeout(ctx, s.timeout)
	}
	return context.WithCancel(ctx)
}

// begin starts the call op: it checks that the store is open and ctx not
// done, and bounds ctx by the store's timeout. Its error is ready for the
// caller.
func (s *Store) begin(ctx context.Context, op string) (context.Context, context.CancelFunc, error) {
	select {
	case <-s.closed:
		return nil, nil, s.wrap(ctx, op, jobs.ErrClosed)
	default:
	}
	if err := ctx.Err(); err != nil {
		return nil, nil, s.wrap(ctx, op, err)
	}
	cctx, cancel := s.callCtx(ctx)
	return cctx, cancel, nil
}

// SQLite primary result codes that mean "try again later".
const (
	codeBusy     = 5
	codeLocked   = 6
	codeIOErr    = 10
	codeFull     = 13
	codeCantOpen = 14
	codeProtocol = 15
)

// wrap turns err from a call under ctx into the error the caller sees:
// domain errors pass through, a done ctx, SQLITE_BUSY and its kin become
// jobs.ErrUnavailable (or context.Canceled), a closed store jobs.ErrClosed.
func (s *Store) wrap(ctx context.Context, op string, err error) error {
	if err == nil {
		return nil
	}
	var ve *jobs.ValidationError
	var qf *jobs.QueueFullError
	if errors.Is(err, jobs.ErrNotFound) || errors.As(err, &ve) || errors.As(err, &qf) {
		return err
	}
	select {
	case <-s.closed:
		return fmt.Errorf("sqlitestore: %s: %w", op, jobs.ErrClosed)
	default:
	}
	if errors.Is(err, jobs.ErrClosed) || errors.Is(err, sql.ErrConnDone) {
		return fmt.Errorf("sqlitestore: %s: %w", op, jobs.ErrClosed)
	}
	if cerr := ctx.Err(); cerr != nil {
		if errors.Is(cerr, context.Canceled) {
			return fmt.Errorf("sqlitestore: %s: %w", op, cerr)
		}
		return fmt.Errorf("sqlitestore: %s: %w: %w", op, jobs.ErrUnavailable, cerr)
	}
	if errors.Is(err, context.Canceled) {
		return fmt.Errorf("sqlitestore: %s: %w", op, err)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("sqlitestore: %s: %w: %w", op, jobs.ErrUnavailable, err)
	}
	var se *sqlite.Error
	if errors.As(err, &se) {
		switch se.Code() & 0xff {
		case codeBusy, codeLocked, codeIOErr, codeFull, codeCantOpen, codeProtocol:
			return fmt.Errorf("sqlitestore: %s: %w: %w", op, jobs.ErrUnavailable, err)
		}
	}
	return fmt.Errorf("sqlitestore: %s: %w", op, err)
}

// writeTx runs f in a write transaction (BEGIN IMMEDIATE) on the writer.
func (s *Store) writeTx(ctx context.Context, f func(tx *sql.Tx) error) error {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := f(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	return tx.Commit()
}

// Time conversion: times are stored as INTEGER unix nanoseconds (UTC);
// zero times as NULL or 0. Times outside the int64 range (years before
// 1678 or after 2262) are clamped to its ends.
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

// nullNanos is nanos, or nil (SQL NULL) for the zero time.
func nullNanos(t time.Time) any {
	if t.IsZero() {
		return nil
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

func nullString(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func boolInt(b bool) int64 {
	if b {
		return 1
	}
	return 0
}
