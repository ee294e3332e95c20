package pgstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"go.uber.org/goleak"

	"github.com/sluicehq/sluice/jobs"
	"github.com/sluicehq/sluice/jobs/storetest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// testURL returns the server the tests use: $SLUICE_TEST_PG. Without it
// the test is skipped, or fails when $SLUICE_TEST_PG_REQUIRED is set (as
// in CI, so that these tests never skip there).
func testURL(tb testing.TB) string {
	tb.Helper()
	u := os.Getenv("SLUICE_TEST_PG")
	if u == "" {
		const hint = "set SLUICE_TEST_PG=postgres://postgres@127.0.0.1:5432/test?sslmode=disable to run the PostgreSQL tests"
		if os.Getenv("SLUICE_TEST_PG_REQUIRED") != "" {
			tb.Fatal("SLUICE_TEST_PG_REQUIRED is set but SLUICE_TEST_PG is not: " + hint)
		}
		tb.Skip(hint)
	}
	return u
}

// freshSchema returns the name of a schema nobody uses, dropped (with
// everything in it) when the test ends.
func freshSchema(tb testing.TB) string {
	tb.Helper()
	u := testURL(tb)
	schema := fmt.Sprintf("sluice_t_%012x", rand.Uint64()&(1<<48-1))
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, u)
		if err != nil {
			tb.Errorf("dropping schema %s: %v", schema, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, `DROP SCHEMA IF EXISTS `+quoteIdent(schema)+` CASCADE`); err != nil {
			tb.Errorf("dropping schema %s: %v", schema, err)
		}
	})
	return schema
}

// withParam returns the URL u with the query parameter k=v.
func withParam(tb testing.TB, u, k, v string) string {
	tb.Helper()
	p, err := url.Parse(u)
	if err != nil || (p.Scheme != "postgres" && p.Scheme != "postgresql") {
		tb.Skipf("this test needs SLUICE_TEST_PG as a postgres:// URL, not %q", u)
	}
	q := p.Query()
	q.Set(k, v)
	p.RawQuery = q.Encode()
	return p.String()
}

// openAt opens a store on url in schema, closed at cleanup after a check
// that the waiting counters (kept by the insert and delete triggers and by
// the store's statements) match the jobs.
func openAt(tb testing.TB, url, schema string, cfg Config) *Store {
	tb.Helper()
	cfg.Schema = schema
	s, err := Open(context.Background(), url, cfg)
	if err != nil {
		tb.Fatalf("Open: %v", err)
	}
	tb.Cleanup(func() {
		if err := s.Close(); err != nil {
			tb.Errorf("Close: %v", err)
		}
	})
	tb.Cleanup(func() { checkCounters(tb, s) })
	return s
}

// open opens a store in a fresh schema.
func open(tb testing.TB, cfg Config) *Store {
	tb.Helper()
	return openAt(tb, testURL(tb), freshSchema(tb), cfg)
}

func checkCounters(tb testing.TB, s *Store) {
	tb.Helper()
	if s.isClosed() {
		return
	}
	rows, err := s.pool.Query(context.Background(), expand(`SELECT q.name, q.waiting,
		(SELECT count(*) FROM {s}.jobs j WHERE j.queue = q.name AND j.state = 'waiting')
		FROM {s}.queues q`, s.schema))
	if err != nil {
		tb.Errorf("checking counters: %v", err)
		return
	}
	defer rows.Close()
	for rows.Next() {
		var (
			name          string
			counter, real int64
		)
		if err := rows.Scan(&name, &counter, &real); err != nil {
			tb.Errorf("checking counters: %v", err)
			return
		}
		if counter != real {
			tb.Errorf("queue %q: waiting counter = %d, but %d jobs wait", name, counter, real)
		}
	}
	if err := rows.Err(); err != nil {
		tb.Errorf("checking counters: %v", err)
	}
}

func TestConformance(t *testing.T) {
	t.Parallel()
	testURL(t) // skip once, not in every sub-test
	storetest.Run(t, func(t *testing.T) jobs.Store { return open(t, Config{}) })
}

func normalized(t testing.TB, now time.Time, queue string, ns ...jobs.NewJob) []jobs.NewJob {
	t.Helper()
	out := make([]jobs.NewJob, len(ns))
	for i, n := range ns {
		n.Queue = queue
		if err := n.Normalize(now); err != nil {
			t.Fatal(err)
		}
		out[i] = n
	}
	return out
}

func mustEnqueue(t testing.TB, s *Store, now time.Time, queue string, ns ...jobs.NewJob) []*jobs.Job {
	t.Helper()
	res, err := s.Enqueue(context.Background(), now, queue, normalized(t, now, queue, ns...))
	if err != nil {
		t.Fatalf("Enqueue: %v", err)
	}
	out := make([]*jobs.Job, len(res))
	for i, r := range res {
		if r.Err != nil {
			t.Fatalf("Enqueue result %d: %v", i, r.Err)
		}
		out[i] = r.Job
	}
	return out
}

func succeeded(js []*jobs.Job) []jobs.Outcome {
	os := make([]jobs.Outcome, len(js))
	for i, j := range js {
		os[i] = jobs.Outcome{Attempt: jobs.Attempt{ID: j.ID, Attempt: j.Attempt}, Kind: jobs.Succeeded}
	}
	return os
}

func schemaVersions(t *testing.T, s *Store) []int {
	t.Helper()
	rows, err := s.pool.Query(context.Background(), expand(`SELECT version FROM {s}.schema_migrations ORDER BY version`, s.schema))
	if err != nil {
		t.Fatal(err)
	}
	vs, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		t.Fatal(err)
	}
	out := make([]int, len(vs))
	for i, v := range vs {
		out[i] = int(v)
	}
	return out
}

// Migrations apply once, whoever runs them and however many at once.
func TestMigrations(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	u := testURL(t)
	all := make([]int, len(migrations))
	for i := range all {
		all[i] = i + 1
	}

	schema := freshSchema(t)
	applied, err := Migrate(ctx, u, schema)
	if err != nil || !slices.Equal(applied, all) {
		t.Fatalf("first Migrate = %v, %v, want %v", applied, err, all)
	}
	applied, err = Migrate(ctx, u, schema)
	if err != nil || len(applied) != 0 {
		t.Errorf("second Migrate = %v, %v, want nothing applied", applied, err)
	}
	s := openAt(t, u, schema, Config{NoMigrate: true})
	if got := schemaVersions(t, s); !slices.Equal(got, all) {
		t.Errorf("schema_migrations = %v, want %v", got, all)
	}

	// Several nodes starting at once on an empty database.
	schema = freshSchema(t)
	const nodes = 6
	var wg sync.WaitGroup
	stores := make([]*Store, nodes)
	errs := make([]error, nodes)
	for i := range nodes {
		wg.Go(func() { stores[i], errs[i] = Open(ctx, u, Config{Schema: schema}) })
	}
	wg.Wait()
	for i, s := range stores {
		if errs[i] != nil {
			t.Errorf("concurrent Open %d: %v", i, errs[i])
			continue
		}
		t.Cleanup(func() { s.Close() })
	}
	if t.Failed() {
		return
	}
	if got := schemaVersions(t, stores[0]); !slices.Equal(got, all) {
		t.Errorf("after %d concurrent Opens schema_migrations = %v, want %v", nodes, got, all)
	}
	// They all work on the same tables.
	for i, s := range stores {
		mustEnqueue(t, s, t0, "q", jobs.NewJob{Kind: fmt.Sprint(i)})
	}
	if st, err := stores[0].QueueStats(ctx, "q", t0); err != nil || st.Waiting != nodes {
		t.Errorf("QueueStats = %+v, %v, want %d waiting", st, err, nodes)
	}
}

// schemaAt connects to u and brings schema, which must not exist, to
// version v by hand (as a build that knew only v steps would have), then
// runs the extra statements ({s} expanded). The connection closes at
// cleanup.
func schemaAt(t *testing.T, u, schema string, v int, extra ...string) *pgx.Conn {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	stmts := []string{`CREATE SCHEMA {s}`,
		`CREATE TABLE {s}.schema_migrations (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())`}
	stmts = append(stmts, migrations[:v]...)
	stmts = append(stmts, fmt.Sprintf(`INSERT INTO {s}.schema_migrations (version) SELECT generate_series(1, %d)`, v))
	for _, q := range append(stmts, extra...) {
		if _, err := conn.Exec(ctx, expand(q, schema)); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	return conn
}

// A database at schema version 1, holding a job, is upgraded by Open: the
// jobs table gets its fillfactor (step 2) and the job is still there and
// runs.
func TestMigrationFromVersion1(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	u := testURL(t)
	schema := freshSchema(t)
	conn := schemaAt(t, u, schema, 1,
		`INSERT INTO {s}.queues (name, concurrency, capacity, policy, max_wait, rate_limit, rate_burst, paused, idempotency_window)
			VALUES ('q', 1, 10, 'reject', 0, 0, 0, false, 0)`,
		`INSERT INTO {s}.jobs (queue, kind, payload, priority, run_at, attempt_timeout, max_attempts, backoff_min, backoff_max,
			cancel_group_on_failure, state, created_at, updated_at)
			VALUES ('q', 'old', '{}', 0, 0, 0, 1, 0, 0, false, 'waiting', 0, 0)`)
	var opts []string
	if err := conn.QueryRow(ctx, `SELECT COALESCE(reloptions, '{}') FROM pg_class WHERE oid = $1::regclass`, quoteIdent(schema)+".jobs").Scan(&opts); err != nil {
		t.Fatal(err)
	}
	if len(opts) != 0 {
		t.Fatalf("version 1 jobs table options = %v, want none", opts)
	}

	s := openAt(t, u, schema, Config{})
	if got, want := schemaVersions(t, s), versionsFrom(1); !slices.Equal(got, want) {
		t.Fatalf("schema_migrations = %v, want %v", got, want)
	}
	var triggers []string
	rows, err := conn.Query(ctx, `SELECT tgname FROM pg_trigger WHERE tgrelid = $1::regclass AND NOT tgisinternal ORDER BY tgname`, quoteIdent(schema)+".jobs")
	if err != nil {
		t.Fatal(err)
	}
	if triggers, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
		t.Fatal(err)
	}
	if want := []string{"jobs_cancel_requested", "jobs_waiting_delete", "jobs_waiting_insert"}; !slices.Equal(triggers, want) {
		t.Errorf("triggers on jobs = %v, want %v (step 3 drops jobs_waiting_update)", triggers, want)
	}
	if err := conn.QueryRow(ctx, `SELECT reloptions FROM pg_class WHERE oid = $1::regclass`, quoteIdent(schema)+".jobs").Scan(&opts); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(opts, []string{"fillfactor=70"}) {
		t.Errorf("jobs table options = %v, want [fillfactor=70]", opts)
	}
	js, err := s.Fetch(ctx, t0, "q", "w", 10, time.Minute)
	if err != nil || len(js) != 1 || js[0].Kind != "old" {
		t.Fatalf("Fetch after the upgrade = %v, %v; want the job from before", js, err)
	}
	if applied, err := s.Complete(ctx, t0, "w", succeeded(js)); err != nil || !slices.Equal(applied, []bool{true}) {
		t.Fatalf("Complete = %v, %v", applied, err)
	}
}

// A schema step that waits for a table lock (held here by an open
// transaction that read the jobs table, as a running node's would) gives up
// after migrationLockTimeout instead of stalling every query on the table,
// says why, and applies nothing; run again once the lock is gone, it
// applies. Not parallel: it sets migrationLockTimeout, which every Open
// reads.
func TestMigrationLockTimeout(t *testing.T) {
	ctx := context.Background()
	u := testURL(t)
	schema := freshSchema(t)
	conn := schemaAt(t, u, schema, 2)
	blocker, err := pgx.Connect(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	defer blocker.Close(ctx)
	tx, err := blocker.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, expand(`SELECT count(*) FROM {s}.jobs`, schema)); err != nil {
		t.Fatal(err)
	}

	old := migrationLockTimeout
	migrationLockTimeout = 200 * time.Millisecond
	t.Cleanup(func() { migrationLockTimeout = old })
	start := time.Now()
	mctx, cancel := context.WithTimeout(ctx, 20*time.Second) // without the lock timeout it would wait for the blocker
	defer cancel()
	applied, err := Migrate(mctx, u, schema)
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "55P03" || !strings.Contains(err.Error(), "schema step 3") {
		t.Fatalf("Migrate with the jobs table in use = %v, %v; want step 3 to fail with lock_timeout (55P03)", applied, err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Migrate gave up after %v, with a %v lock timeout", d, migrationLockTimeout)
	}
	var versions []int
	rows, err := conn.Query(ctx, expand(`SELECT version FROM {s}.schema_migrations ORDER BY version`, schema))
	if err != nil {
		t.Fatal(err)
	}
	if versions, err = pgx.CollectRows(rows, pgx.RowTo[int]); err != nil || !slices.Equal(versions, []int{1, 2}) {
		t.Fatalf("schema_migrations after the failed step = %v, %v; want [1 2]", versions, err)
	}
	// Open (what sluice serve runs) fails the same way, once: the step's
	// lock timeout is not a transient error to retry, nor the database
	// being away.
	if s, err := Open(mctx, u, Config{Schema: schema}); err == nil {
		s.Close()
		t.Fatal("Open migrated with the jobs table in use")
	} else if !errors.As(err, &pe) || pe.Code != "55P03" || errors.Is(err, jobs.ErrUnavailable) {
		t.Fatalf("Open with the jobs table in use: %v; want the step's lock timeout, not ErrUnavailable", err)
	}

	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	migrationLockTimeout = old
	if applied, err := Migrate(ctx, u, schema); err != nil || !slices.Equal(applied, versionsFrom(3)) {
		t.Fatalf("Migrate once the lock is gone = %v, %v; want %v", applied, err, versionsFrom(3))
	}
}

// versionsFrom lists the schema versions from v to this build's.
func versionsFrom(v int) []int {
	var out []int
	for ; v <= SchemaVersion(); v++ {
		out = append(out, v)
	}
	return out
}

func TestSchemaVersionChecks(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	u := testURL(t)

	// NoMigrate refuses a database that needs migrating, and creates
	// nothing.
	schema := freshSchema(t)
	if s, err := Open(ctx, u, Config{Schema: schema, NoMigrate: true}); !errors.Is(err, ErrSchemaOlder) {
		if err == nil {
			s.Close()
		}
		t.Errorf("Open with NoMigrate of an empty schema: %v, want ErrSchemaOlder", err)
	}

	// A newer schema is refused by Open, Open with NoMigrate, and Migrate.
	s := openAt(t, u, schema, Config{})
	if _, err := s.pool.Exec(ctx, expand(`INSERT INTO {s}.schema_migrations (version) VALUES (99)`, schema)); err != nil {
		t.Fatal(err)
	}
	for _, noMigrate := range []bool{false, true} {
		s2, err := Open(ctx, u, Config{Schema: schema, NoMigrate: noMigrate})
		if err == nil {
			s2.Close()
		}
		if !errors.Is(err, ErrSchemaNewer) || !strings.Contains(err.Error(), "99") {
			t.Errorf("Open(NoMigrate: %v) of a newer schema: %v, want ErrSchemaNewer naming version 99", noMigrate, err)
		}
	}
	if _, err := Migrate(ctx, u, schema); !errors.Is(err, ErrSchemaNewer) {
		t.Errorf("Migrate of a newer schema: %v, want ErrSchemaNewer", err)
	}
}

func TestOpenRejectsBadConfig(t *testing.T) {
	t.Parallel()
	u := testURL(t)
	for _, cfg := range []Config{
		{Schema: "Upper"}, {Schema: "pg_x"}, {Schema: "1abc"}, {Schema: "a-b"}, {Schema: strings.Repeat("a", 57)},
		{Schema: `x"; DROP TABLE y; --`}, {MaxConns: -1},
	} {
		if s, err := Open(context.Background(), u, cfg); err == nil {
			s.Close()
			t.Errorf("Open(%+v) succeeded, want an error", cfg)
		}
	}
	if _, err := Migrate(context.Background(), u, "Bad"); err == nil {
		t.Errorf("Migrate with a bad schema name succeeded")
	}
}

// Two nodes (two pools) enqueueing concurrently into one nearly full
// queue never together overfill it, while workers on both drain it.
func TestCapacityAcrossNodes(t *testing.T) {
	t.Parallel()
	for _, policy := range []jobs.FullPolicy{jobs.FullReject, jobs.FullShed} {
		t.Run(string(policy), func(t *testing.T) {
			t.Parallel()
			testCapacityAcrossNodes(t, policy)
		})
	}
}

func testCapacityAcrossNodes(t *testing.T, policy jobs.FullPolicy) {
	ctx := context.Background()
	u, schema := testURL(t), freshSchema(t)
	a := openAt(t, u, schema, Config{MaxConns: 8})
	b := openAt(t, u, schema, Config{MaxConns: 8})
	const capacity, prefill, writers, rounds = 40, 30, 6, 30
	if err := a.PutQueue(ctx, jobs.QueueConfig{Name: "cap", Capacity: capacity, Policy: policy}); err != nil {
		t.Fatal(err)
	}
	var pre []jobs.NewJob
	for range prefill {
		pre = append(pre, jobs.NewJob{Kind: "k"})
	}
	mustEnqueue(t, a, t0, "cap", pre...)

	var (
		mu        sync.Mutex
		accepted  []int64 // guarded by mu
		refused   int     // guarded by mu
		problems  []string
		enqueuers sync.WaitGroup
		others    sync.WaitGroup
		stop      = make(chan struct{}) // closed when the enqueuers are done
	)
	report := func(format string, args ...any) {
		mu.Lock()
		problems = append(problems, fmt.Sprintf(format, args...))
		mu.Unlock()
	}
	for w := range 2 * writers {
		s := []*Store{a, b}[w%2]
		enqueuers.Go(func() {
			for r := range rounds {
				batch := make([]jobs.NewJob, 1+(w+r)%3)
				for i := range batch {
					batch[i] = jobs.NewJob{Kind: "k", Priority: rand.N(jobs.MaxPriority + 1)}
				}
				res, err := s.Enqueue(ctx, t0, "cap", normalized(t, t0, "cap", batch...))
				mu.Lock()
				switch {
				case err == nil:
					for _, r := range res {
						accepted = append(accepted, r.Job.ID)
					}
				case errors.Is(err, jobs.ErrQueueFull):
					refused++
				default:
					problems = append(problems, fmt.Sprintf("Enqueue: %v", err))
				}
				mu.Unlock()
			}
		})
	}
	// A worker on each node, so that room keeps being made.
	for i, s := range []*Store{a, b} {
		owner := fmt.Sprint("w", i)
		others.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				js, err := s.Fetch(ctx, t0, "cap", owner, 3, time.Minute)
				if err != nil {
					report("Fetch: %v", err)
					return
				}
				if len(js) == 0 {
					time.Sleep(time.Millisecond)
					continue
				}
				if _, err := s.Complete(ctx, t0, owner, succeeded(js)); err != nil {
					report("Complete: %v", err)
					return
				}
			}
		})
	}
	// Sample the waiting jobs (a count in one snapshot) and the counter.
	maxSeen := 0
	others.Go(func() {
		q := expand(`SELECT (SELECT count(*) FROM {s}.jobs WHERE queue = 'cap' AND state = 'waiting'),
			(SELECT waiting FROM {s}.queues WHERE name = 'cap')`, schema)
		for {
			select {
			case <-stop:
				return
			default:
			}
			var n, counter int64
			if err := a.pool.QueryRow(ctx, q).Scan(&n, &counter); err != nil {
				report("sampling: %v", err)
				return
			}
			if n > capacity || counter > capacity {
				report("queue holds %d waiting jobs (counter %d), capacity %d", n, counter, capacity)
			}
			maxSeen = max(maxSeen, int(n))
		}
	})
	enqueuers.Wait()
	close(stop)
	others.Wait()
	for _, p := range problems {
		t.Error(p)
	}

	// Every accepted job exists, and nothing else was inserted.
	var total, found int64
	if err := a.pool.QueryRow(ctx, expand(`SELECT count(*), count(*) FILTER (WHERE id = ANY($1)) FROM {s}.jobs`, schema),
		accepted).Scan(&total, &found); err != nil {
		t.Fatal(err)
	}
	if found != int64(len(accepted)) || total != int64(len(accepted)+prefill) {
		t.Errorf("%d accepted jobs: %d of them exist, %d jobs in all (want %d)", len(accepted), found, total, len(accepted)+prefill)
	}
	st, err := b.QueueStats(ctx, "cap", t0)
	if err != nil || st.Waiting > capacity {
		t.Errorf("QueueStats = %+v, %v, want Waiting <= %d", st, err, capacity)
	}
	t.Logf("policy %s: %d jobs accepted, %d calls refused, at most %d waiting seen", policy, len(accepted), refused, maxSeen)
	if refused == 0 {
		t.Errorf("no Enqueue was refused: the test did not fill the queue")
	}
}

// Fetch calls on two nodes never claim the same job.
func TestFetchAcrossNodes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	u, schema := testURL(t), freshSchema(t)
	stores := []*Store{openAt(t, u, schema, Config{}), openAt(t, u, schema, Config{})}
	const n, perNode = 600, 3
	batch := make([]jobs.NewJob, n)
	for i := range batch {
		batch[i] = jobs.NewJob{Kind: "k", Priority: i % 3}
	}
	mustEnqueue(t, stores[0], t0, "q", batch...)

	var (
		mu     sync.Mutex
		claims = map[int64]string{} // guarded by mu
		errs   []error              // guarded by mu
		wg     sync.WaitGroup
	)
	for i := range 2 * perNode {
		s, owner := stores[i%2], fmt.Sprint("w", i)
		wg.Go(func() {
			for {
				js, err := s.Fetch(ctx, t0, "q", owner, 7, time.Minute)
				if err == nil && len(js) > 0 {
					_, err = s.Complete(ctx, t0, owner, succeeded(js))
				}
				mu.Lock()
				if err != nil {
					errs = append(errs, err)
				}
				for _, j := range js {
					if prev, ok := claims[j.ID]; ok {
						errs = append(errs, fmt.Errorf("job %d claimed by %s and %s", j.ID, prev, owner))
					}
					claims[j.ID] = owner
				}
				mu.Unlock()
				if err != nil || len(js) == 0 {
					return
				}
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		t.Error(err)
	}
	if len(claims) != n {
		t.Errorf("claimed %d distinct jobs, want %d", len(claims), n)
	}
}

// wantNotification waits for a notification that ok accepts.
func wantNotification(t *testing.T, ch <-chan jobs.Notification, what string, ok func(jobs.Notification) bool) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case n, open := <-ch:
			if !open {
				t.Fatalf("waiting for %s: channel closed", what)
			}
			if ok(n) {
				return
			}
		case <-timeout:
			t.Fatalf("no notification of %s within 10s", what)
		}
	}
}

func TestNotifier(t *testing.T) {
	t.Parallel()
	u, schema := testURL(t), freshSchema(t)
	u = withParam(t, u, "application_name", schema)
	listener := openAt(t, u, schema, Config{})
	other := openAt(t, u, schema, Config{}) // another node

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch, err := listener.Listen(ctx)
	if err != nil {
		t.Fatal(err)
	}

	now := time.Now()
	mustEnqueue(t, other, now, "nq", jobs.NewJob{Kind: "k"})
	wantNotification(t, ch, `jobs in queue "nq"`, func(n jobs.Notification) bool { return n.Queue == "nq" })

	js, err := other.Fetch(context.Background(), now, "nq", "w", 1, time.Minute)
	if err != nil || len(js) != 1 {
		t.Fatalf("Fetch: %v, %v", js, err)
	}
	if _, err := other.Cancel(context.Background(), now, js[0].ID, "stop"); err != nil {
		t.Fatal(err)
	}
	wantNotification(t, ch, fmt.Sprintf("the cancellation of job %d", js[0].ID),
		func(n jobs.Notification) bool { return n.CancelID == js[0].ID })

	// A released job is due again: its queue is notified.
	mustEnqueue(t, other, now, "rq", jobs.NewJob{Kind: "k"})
	wantNotification(t, ch, `jobs in queue "rq"`, func(n jobs.Notification) bool { return n.Queue == "rq" })
	js, err = other.Fetch(context.Background(), now, "rq", "w", 1, time.Minute)
	if err != nil || len(js) != 1 {
		t.Fatalf("Fetch: %v, %v", js, err)
	}
	if _, err := other.Complete(context.Background(), now, "w", []jobs.Outcome{{Attempt: jobs.Attempt{ID: js[0].ID, Attempt: 1}, Kind: jobs.Released}}); err != nil {
		t.Fatal(err)
	}
	wantNotification(t, ch, `the release of a job in "rq"`, func(n jobs.Notification) bool { return n.Queue == "rq" })

	// Jobs scheduled for later: "due", with the earliest RunAt, so that a
	// worker need not fetch before it; so for a retry's backoff.
	later := now.Add(time.Hour)
	mustEnqueue(t, other, now, "sq", jobs.NewJob{Kind: "k", RunAt: later.Add(time.Minute)}, jobs.NewJob{Kind: "k", RunAt: later})
	wantNotification(t, ch, `jobs scheduled in "sq" at `+later.String(), func(n jobs.Notification) bool {
		return n.Queue == "sq" && n.At.UnixNano() == later.UnixNano()
	})
	mustEnqueue(t, other, now, "sr", jobs.NewJob{Kind: "k"})
	wantNotification(t, ch, `jobs in queue "sr"`, func(n jobs.Notification) bool { return n.Queue == "sr" && n.At.IsZero() })
	js, err = other.Fetch(context.Background(), now, "sr", "w", 1, time.Minute)
	if err != nil || len(js) != 1 {
		t.Fatalf("Fetch: %v, %v", js, err)
	}
	if _, err := other.Complete(context.Background(), now, "w", []jobs.Outcome{{Attempt: jobs.Attempt{ID: js[0].ID, Attempt: 1}, Kind: jobs.Retry, RunAt: later, Error: "later"}}); err != nil {
		t.Fatal(err)
	}
	wantNotification(t, ch, `the retry of a job in "sr" at `+later.String(), func(n jobs.Notification) bool {
		return n.Queue == "sr" && n.At.UnixNano() == later.UnixNano()
	})
	// When some of the jobs are due now, the notification says so (no At),
	// whether they are inserted or retried together with later ones.
	var seen jobs.Notification
	first := func(q string) func(jobs.Notification) bool {
		return func(n jobs.Notification) bool { seen = n; return n.Queue == q }
	}
	mustEnqueue(t, other, now, "mq", jobs.NewJob{Kind: "k", RunAt: later}, jobs.NewJob{Kind: "k"})
	if wantNotification(t, ch, `jobs in queue "mq"`, first("mq")); !seen.At.IsZero() {
		t.Errorf("an insert with a job due now notified %+v, want no At", seen)
	}
	js, err = other.Fetch(context.Background(), now, "mq", "w", 2, time.Minute)
	if err != nil || len(js) != 1 {
		t.Fatalf("Fetch: %v, %v", js, err)
	}
	mustEnqueue(t, other, now, "mr", jobs.NewJob{Kind: "k"}, jobs.NewJob{Kind: "k"})
	wantNotification(t, ch, `jobs in queue "mr"`, func(n jobs.Notification) bool { return n.Queue == "mr" && n.At.IsZero() })
	js, err = other.Fetch(context.Background(), now, "mr", "w", 2, time.Minute)
	if err != nil || len(js) != 2 {
		t.Fatalf("Fetch: %v, %v", js, err)
	}
	if _, err := other.Complete(context.Background(), now, "w", []jobs.Outcome{
		{Attempt: jobs.Attempt{ID: js[0].ID, Attempt: 1}, Kind: jobs.Retry, RunAt: later, Error: "later"},
		{Attempt: jobs.Attempt{ID: js[1].ID, Attempt: 1}, Kind: jobs.Retry, RunAt: now, Error: "now"},
	}); err != nil {
		t.Fatal(err)
	}
	if wantNotification(t, ch, `the retries in "mr"`, first("mr")); !seen.At.IsZero() {
		t.Errorf("retries with one due now notified %+v, want no At", seen)
	}

	// A retried job is due again while the same Complete cancels more
	// waiting jobs of its queue (a group's, because another job failed):
	// the queue's waiting count drops, and yet it is notified.
	mustEnqueue(t, other, now, "gq", jobs.NewJob{Kind: "k"}, jobs.NewJob{Kind: "k", Group: "g", CancelGroupOnFailure: true})
	wantNotification(t, ch, `jobs in queue "gq"`, func(n jobs.Notification) bool { return n.Queue == "gq" })
	js, err = other.Fetch(context.Background(), now, "gq", "w", 2, time.Minute)
	if err != nil || len(js) != 2 {
		t.Fatalf("Fetch: %v, %v", js, err)
	}
	mustEnqueue(t, other, now, "gq", jobs.NewJob{Kind: "k", Group: "g"}, jobs.NewJob{Kind: "k", Group: "g"})
	wantNotification(t, ch, `jobs in queue "gq"`, func(n jobs.Notification) bool { return n.Queue == "gq" })
	outcomes := []jobs.Outcome{
		{Attempt: jobs.Attempt{ID: js[0].ID, Attempt: 1}, Kind: jobs.Retry, RunAt: now, Error: "again"},
		{Attempt: jobs.Attempt{ID: js[1].ID, Attempt: 1}, Kind: jobs.Failed, Error: "boom"},
	}
	if js[0].Group != "" {
		outcomes[0].ID, outcomes[1].ID = js[1].ID, js[0].ID
	}
	if _, err := other.Complete(context.Background(), now, "w", outcomes); err != nil {
		t.Fatal(err)
	}
	if st, err := other.QueueStats(context.Background(), "gq", time.Time{}); err != nil || st.Waiting != 1 {
		t.Fatalf("QueueStats = %+v, %v; want the retried job alone waiting", st, err)
	}
	wantNotification(t, ch, `the retry of a job in "gq"`, func(n jobs.Notification) bool { return n.Queue == "gq" })

	// The listener's connection is killed: it reconnects and goes on.
	var killed int
	if err := other.pool.QueryRow(context.Background(), `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE application_name = $1 AND query LIKE 'LISTEN%'`, schema).Scan(&killed); err != nil || killed != 1 {
		t.Fatalf("terminating the listener's connection: %d, %v", killed, err)
	}
	got := make(chan struct{})
	go func() {
		defer close(got)
		wantNotification(t, ch, `jobs in queue "after"`, func(n jobs.Notification) bool { return n.Queue == "after" })
	}()
	for done := false; !done; {
		mustEnqueue(t, other, now, "after", jobs.NewJob{Kind: "k"})
		select {
		case <-got:
			done = true
		case <-time.After(100 * time.Millisecond):
		}
	}

	// The channel closes when ctx ends, after the goroutine returned
	// (goleak checks that at the end).
	cancel()
	deadline := time.After(5 * time.Second)
	for open := true; open; {
		select {
		case _, open = <-ch:
		case <-deadline:
			t.Fatal("Listen's channel still open 5s after its ctx ended")
		}
	}

	// Close ends the listeners it has.
	ch2, err := other.Listen(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	other.Close()
	if _, open := <-ch2; open {
		for range ch2 {
		}
	}
	if _, err := other.Listen(context.Background()); !errors.Is(err, jobs.ErrClosed) {
		t.Errorf("Listen after Close: %v, want ErrClosed", err)
	}
}

func TestElector(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	u, schema := testURL(t), freshSchema(t)
	a, b := openAt(t, u, schema, Config{}), openAt(t, u, schema, Config{})
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	lead := func(s *Store, now time.Time, owner string, want bool) {
		t.Helper()
		got, err := s.Lead(ctx, now, owner, 10*time.Second)
		if err != nil || got != want {
			t.Fatalf("Lead(%s at %v) = %v, %v, want %v", owner, now.Sub(t0), got, err, want)
		}
	}
	lead(a, at(0), "a", true)
	lead(b, at(time.Second), "b", false)
	lead(a, at(5*time.Second), "a", true) // extends to 15s
	lead(b, at(14*time.Second), "b", false)
	lead(b, at(15*time.Second), "b", true) // a's term expired
	lead(a, at(16*time.Second), "a", false)
	if err := a.Resign(ctx, "a"); err != nil { // not a's: changes nothing
		t.Fatal(err)
	}
	lead(a, at(17*time.Second), "a", false)
	if err := b.Resign(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	lead(a, at(18*time.Second), "a", true)

	// Many candidates at once: one wins.
	if err := a.Resign(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		wins []string
	)
	for i := range 8 {
		s, owner := []*Store{a, b}[i%2], fmt.Sprint("n", i)
		wg.Go(func() {
			ok, err := s.Lead(ctx, at(time.Minute), owner, 10*time.Second)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				t.Errorf("Lead(%s): %v", owner, err)
			}
			if ok {
				wins = append(wins, owner)
			}
		})
	}
	wg.Wait()
	if len(wins) != 1 {
		t.Errorf("concurrent Lead calls: %v won, want exactly one", wins)
	}
}

// A database that cannot be reached gives ErrUnavailable, fast.
func TestOpenUnreachable(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	start := time.Now()
	s, err := Open(context.Background(), "postgres://postgres@"+addr+"/test?sslmode=disable", Config{Schema: "x"})
	if err == nil {
		s.Close()
		t.Fatal("Open of a closed port succeeded")
	}
	if !errors.Is(err, jobs.ErrUnavailable) {
		t.Errorf("Open of a closed port: %v, want ErrUnavailable", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Open of a closed port took %v", d)
	}
}

// proxy forwards TCP connections to a server, and can cut them all and
// refuse new ones, as a database going away would.
type proxy struct {
	t      *testing.T
	target string
	addr   string

	mu    sync.Mutex
	ln    net.Listener          // guarded by mu; nil while cut
	conns map[net.Conn]struct{} // guarded by mu
	wg    sync.WaitGroup        // the accept loop and the copiers
}

func startProxy(t *testing.T, target string) *proxy {
	p := &proxy{t: t, target: target, conns: map[net.Conn]struct{}{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.addr = ln.Addr().String()
	p.serve(ln)
	t.Cleanup(p.cut)
	return p
}

func (p *proxy) serve(ln net.Listener) {
	p.mu.Lock()
	p.ln = ln
	p.mu.Unlock()
	p.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", p.target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			if p.ln != ln { // cut meanwhile
				p.mu.Unlock()
				c.Close()
				s.Close()
				return
			}
			p.conns[c], p.conns[s] = struct{}{}, struct{}{}
			p.mu.Unlock()
			for _, pair := range [][2]net.Conn{{c, s}, {s, c}} {
				p.wg.Go(func() {
					_, _ = io.Copy(pair[0], pair[1])
					pair[0].Close()
					pair[1].Close()
				})
			}
		}
	})
}

// cut closes the listener and every connection, and waits for the
// proxy's goroutines.
func (p *proxy) cut() {
	p.mu.Lock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for c := range p.conns {
		c.Close()
		delete(p.conns, c)
	}
	p.mu.Unlock()
	p.wg.Wait()
}

// restore listens again on the same address.
func (p *proxy) restore() {
	ln, err := net.Listen("tcp", p.addr)
	if err != nil {
		p.t.Fatal(err)
	}
	p.serve(ln)
}

// While the database is away every call fails fast with ErrUnavailable;
// once it is back the store works again.
func TestDatabaseAway(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	u, schema := testURL(t), freshSchema(t)
	pu, err := url.Parse(u)
	if err != nil || pu.Host == "" {
		t.Skipf("this test needs SLUICE_TEST_PG as a postgres:// URL with a host, not %q", u)
	}
	p := startProxy(t, pu.Host)
	pu.Host = p.addr
	const timeout = time.Second
	s := openAt(t, pu.String(), schema, Config{Timeout: timeout})
	js := mustEnqueue(t, s, t0, "q", jobs.NewJob{Kind: "k"})

	p.cut()
	n := normalized(t, t0, "q", jobs.NewJob{Kind: "k"})
	calls := []struct {
		name string
		f    func() error
	}{
		{"Enqueue", func() error { _, err := s.Enqueue(ctx, t0, "q", n); return err }},
		{"Fetch", func() error { _, err := s.Fetch(ctx, t0, "q", "w", 10, time.Minute); return err }},
		{"Complete", func() error { _, err := s.Complete(ctx, t0, "w", succeeded(js)); return err }},
		{"Cancel", func() error { _, err := s.Cancel(ctx, t0, js[0].ID, ""); return err }},
		{"Get", func() error { _, err := s.Get(ctx, js[0].ID); return err }},
		{"Lead", func() error { _, err := s.Lead(ctx, t0, "w", time.Second); return err }},
		{"Listen", func() error {
			ch, err := s.Listen(ctx)
			if err == nil {
				t.Error("Listen succeeded while the database is away")
				s.Close()
				for range ch {
				}
			}
			return err
		}},
	}
	for _, c := range calls {
		start := time.Now()
		err := c.f()
		d := time.Since(start)
		if !errors.Is(err, jobs.ErrUnavailable) {
			t.Errorf("%s while the database is away: %v, want ErrUnavailable", c.name, err)
		}
		if d > timeout+time.Second {
			t.Errorf("%s while the database is away took %v, want at most about the timeout %v", c.name, d, timeout)
		}
	}

	p.restore()
	if _, err := s.Get(ctx, js[0].ID); err != nil {
		t.Errorf("Get after the database came back: %v", err)
	}
	mustEnqueue(t, s, t0, "q", jobs.NewJob{Kind: "k"})
}

// Killing the store's connections on the server (as a restart or an
// administrator would) costs at most the calls in flight: the next ones
// reconnect or fail with ErrUnavailable, never hang.
func TestConnectionsTerminated(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	u, schema := testURL(t), freshSchema(t)
	u = withParam(t, u, "application_name", schema)
	s := openAt(t, u, schema, Config{MaxConns: 4, Timeout: 2 * time.Second})
	admin := open(t, Config{})
	kill := func() int {
		var n int
		if err := admin.pool.QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
			WHERE application_name = $1`, schema).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	// Fill the pool with idle connections.
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() { _, _ = s.QueueStats(ctx, "q", t0) })
	}
	wg.Wait()

	ok, unavailable := 0, 0
	for round := range 5 {
		if n := kill(); n == 0 && round == 0 {
			t.Fatal("no connection of the store to terminate")
		}
		start := time.Now()
		_, err := s.Enqueue(ctx, t0, "q", normalized(t, t0, "q", jobs.NewJob{Kind: "k"}))
		d := time.Since(start)
		switch {
		case err == nil:
			ok++
		case errors.Is(err, jobs.ErrUnavailable):
			unavailable++
		default:
			t.Errorf("Enqueue after the connections were terminated: %v, want success or ErrUnavailable", err)
		}
		if d > 3*time.Second {
			t.Errorf("Enqueue after the connections were terminated took %v", d)
		}
	}
	t.Logf("after terminations: %d Enqueue calls succeeded, %d unavailable", ok, unavailable)
	// The store recovers.
	if _, err := s.Enqueue(ctx, t0, "q", normalized(t, t0, "q", jobs.NewJob{Kind: "k"})); err != nil {
		t.Errorf("Enqueue after recovery: %v", err)
	}
	if st, err := s.QueueStats(ctx, "q", t0); err != nil || st.Waiting != ok+1 {
		t.Errorf("QueueStats = %+v, %v, want %d waiting", st, err, ok+1)
	}
}

var errNothing = errors.New("nothing claimed")

// A queue row locked by someone else makes the calls that need it fail
// with ErrUnavailable at their deadline, not hang.
func TestLockedQueue(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	const timeout = 300 * time.Millisecond
	s := open(t, Config{Timeout: timeout})
	js := mustEnqueue(t, s, t0, "q", jobs.NewJob{Kind: "a"})

	conn, err := pgx.Connect(ctx, testURL(t))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, expand(`SELECT 1 FROM {s}.queues WHERE name = 'q' FOR UPDATE`, s.schema)); err != nil {
		t.Fatal(err)
	}

	n := normalized(t, t0, "q", jobs.NewJob{Kind: "b"})
	calls := []struct {
		name string
		f    func(ctx context.Context) error
	}{
		{"Enqueue", func(ctx context.Context) error { _, err := s.Enqueue(ctx, t0, "q", n); return err }},
		{"Fetch", func(ctx context.Context) error {
			js, err := s.Fetch(ctx, t0, "q", "w", 10, time.Minute)
			if err == nil && len(js) == 0 {
				// The job is still locked by the Fetch that timed out
				// before, until its cancel request lands: skipped.
				return errNothing
			}
			return err
		}},
		{"Cancel", func(ctx context.Context) error { _, err := s.Cancel(ctx, t0, js[0].ID, ""); return err }},
	}
	for _, c := range calls {
		start := time.Now()
		err := c.f(ctx)
		d := time.Since(start)
		if !errors.Is(err, jobs.ErrUnavailable) {
			t.Errorf("%s on a locked queue: %v, want ErrUnavailable", c.name, err)
		}
		if d < timeout/2 || d > timeout+time.Second {
			t.Errorf("%s on a locked queue returned after %v, want about the timeout %v", c.name, d, timeout)
		}
		// A caller's shorter deadline wins.
		cctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
		start = time.Now()
		err = c.f(cctx)
		cancel()
		if d := time.Since(start); !(errors.Is(err, jobs.ErrUnavailable) || errors.Is(err, errNothing)) || d > timeout {
			t.Errorf("%s on a locked queue with a 50ms ctx: %v after %v, want ErrUnavailable before %v", c.name, err, d, timeout)
		}
	}
	// Reads do not need the lock.
	if _, err := s.Get(ctx, js[0].ID); err != nil {
		t.Errorf("Get while the queue is locked: %v", err)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	// The calls that timed out were canceled on the server: nothing
	// happened behind the callers' backs.
	time.Sleep(100 * time.Millisecond)
	if j, err := s.Get(ctx, js[0].ID); err != nil || j.State != jobs.StateWaiting {
		t.Errorf("job after the timed-out calls = %+v, %v, want still waiting", j, err)
	}
	if all, err := s.List(ctx, jobs.ListFilter{}); err != nil || len(all) != 1 {
		t.Errorf("List = %d jobs, %v, want the one job", len(all), err)
	}
	mustEnqueue(t, s, t0, "q", jobs.NewJob{Kind: "c"})
}

// A job that fails for good because its lease expired on its last attempt
// cancels its group like a failure reported by Complete.
func TestRecoverFailureCancelsGroup(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := open(t, Config{})
	js := mustEnqueue(t, s, t0, "q",
		jobs.NewJob{Kind: "a", Priority: 1, MaxAttempts: 1, Group: "g", CancelGroupOnFailure: true},
		jobs.NewJob{Kind: "b", Group: "g"})
	if _, err := s.Fetch(ctx, t0, "q", "w", 1, time.Minute); err != nil {
		t.Fatal(err)
	}
	if n, err := s.RecoverLeases(ctx, t0.Add(time.Hour)); n != 1 || err != nil {
		t.Fatalf("RecoverLeases = %d, %v", n, err)
	}
	a, _ := s.Get(ctx, js[0].ID)
	b, _ := s.Get(ctx, js[1].ID)
	if a.State != jobs.StateFailed || b.State != jobs.StateCanceled {
		t.Errorf("after the lease of the last attempt expired: %s and %s, want failed and canceled", a.State, b.State)
	}
}

// A refusal carries a Retry-After estimate from the queue's recent
// completions.
func TestRetryAfterEstimate(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := open(t, Config{})
	if err := s.PutQueue(ctx, jobs.QueueConfig{Name: "q", Capacity: 2}); err != nil {
		t.Fatal(err)
	}
	refuse := func(now time.Time) *jobs.QueueFullError {
		t.Helper()
		_, err := s.Enqueue(ctx, now, "q", normalized(t, now, "q", jobs.NewJob{Kind: "a"}))
		var qf *jobs.QueueFullError
		if !errors.As(err, &qf) {
			t.Fatalf("Enqueue into a full queue: %v", err)
		}
		return qf
	}
	mustEnqueue(t, s, t0, "q", jobs.NewJob{Kind: "a"}, jobs.NewJob{Kind: "a"})
	if qf := refuse(t0); qf.RetryAfter != 0 {
		t.Errorf("RetryAfter without history = %v, want 0", qf.RetryAfter)
	}
	for i := 1; i <= 2; i++ { // one completion a second
		now := t0.Add(time.Duration(i) * time.Second)
		js, err := s.Fetch(ctx, now, "q", "w", 1, time.Minute)
		if err != nil || len(js) != 1 {
			t.Fatalf("Fetch: %v, %v", js, err)
		}
		if _, err := s.Complete(ctx, now, "w", succeeded(js)); err != nil {
			t.Fatal(err)
		}
	}
	mustEnqueue(t, s, t0.Add(2*time.Second), "q", jobs.NewJob{Kind: "a"}, jobs.NewJob{Kind: "a"})
	if qf := refuse(t0.Add(3 * time.Second)); qf.RetryAfter != 5*time.Second {
		t.Errorf("RetryAfter after 2 completions in the last 10s = %v, want 5s", qf.RetryAfter)
	}
	if qf := refuse(t0.Add(time.Minute)); qf.RetryAfter != 0 {
		t.Errorf("RetryAfter with no completion in the last 10s = %v, want 0 (unknown)", qf.RetryAfter)
	}
}

// TestPlans guards the performance of the hot statements: each must be
// served by its index.
func TestPlans(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := open(t, Config{})
	// Enough jobs that the planner prefers indexes, some running, some
	// finished, some scheduled for later.
	batch := make([]jobs.NewJob, 1000)
	for i := range batch {
		batch[i] = jobs.NewJob{Kind: "k", Priority: i % 10, IdempotencyKey: fmt.Sprint("k", i), Group: fmt.Sprint("g", i%50)}
		if i%3 == 0 {
			batch[i].RunAt = t0.Add(time.Hour)
		}
	}
	mustEnqueue(t, s, t0, "q", batch...)
	js, err := s.Fetch(ctx, t0, "q", "w", 200, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Complete(ctx, t0, "w", succeeded(js[:100])); err != nil {
		t.Fatal(err)
	}
	if _, err := s.pool.Exec(ctx, expand(`ANALYZE {s}.jobs`, s.schema)); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, sql, index string
		args             []any
		join             bool
	}{
		{"fetch", s.q.fetch, "jobs_fetch", []any{"q", "w", int64(1), int64(1), int64(10), priorities}, true},
		{"shed victim", s.q.shedVictim, "jobs_fetch", []any{"q", int16(5)}, false},
		{"retry after", s.q.retryAfter, "jobs_finished", []any{"q", int64(1), int64(1)}, false},
		{"idempotency", s.q.idempotent, "jobs_idempotency", []any{"q", []string{"k1"}}, false},
		{"group cancel", s.q.groupCancelWaiting, "jobs_group", []any{"g1", "r", int64(1)}, false},
		{"recover", s.q.recover, "jobs_running", []any{int64(1)}, false},
		{"expire", s.q.expire, "jobs_deadline", []any{int64(1)}, false},
		{"delete finished", s.q.deleteFinished, "jobs_finished", []any{int64(1), int64(1000), int64(1)}, false},
		{"next due", s.q.nextDue, "jobs_fetch", []any{"q", int64(1), priorities}, true},
	} {
		rows, err := s.pool.Query(ctx, `EXPLAIN `+c.sql, c.args...)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		plan, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		p := strings.Join(plan, "\n")
		seq := "Seq Scan on jobs"
		if c.join {
			seq = "Seq Scan on jobs w" // the outer UPDATE may join this small table by a scan
		}
		if !strings.Contains(p, " "+c.index+" ") || strings.Contains(p, seq) {
			t.Errorf("%s plan does not use %s:\n%s", c.name, c.index, p)
		}
	}
}

// The store runs a Worker, with notifications: jobs enqueued on one node
// run on workers of both, each once, and a running job canceled through
// one node stops on the other at once.
func TestWorkers(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	u, schema := testURL(t), freshSchema(t)
	a, b := openAt(t, u, schema, Config{}), openAt(t, u, schema, Config{})

	var (
		mu      sync.Mutex
		runs    = map[int64]int{} // guarded by mu
		started = make(chan int64, 1)
	)
	reg := jobs.NewRegistry()
	reg.Handle("count", jobs.HandlerFunc(func(ctx context.Context, j *jobs.Job) error {
		mu.Lock()
		runs[j.ID]++
		mu.Unlock()
		return nil
	}))
	reg.Handle("block", jobs.HandlerFunc(func(ctx context.Context, j *jobs.Job) error {
		started <- j.ID
		<-ctx.Done()
		return ctx.Err()
	}))
	var workers []*jobs.Worker
	for i, s := range []*Store{a, b} {
		w := jobs.NewWorker(s, reg, jobs.WorkerConfig{
			ID: fmt.Sprint("w", i), Queues: []string{"q", "slow"},
			// Slow polls and heartbeats: only notifications make this
			// test quick.
			PollInterval: 5 * time.Second, MaxPollInterval: 5 * time.Second,
			Lease: 30 * time.Second, MaintenanceInterval: time.Hour,
		})
		if err := w.Start(ctx); err != nil {
			t.Fatal(err)
		}
		workers = append(workers, w)
		t.Cleanup(func() {
			sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			if err := w.Stop(sctx); err != nil {
				t.Errorf("Stop: %v", err)
			}
		})
	}
	time.Sleep(100 * time.Millisecond) // let the fetch loops go idle

	const n = 300
	batch := make([]jobs.NewJob, n)
	for i := range batch {
		batch[i] = jobs.NewJob{Kind: "count"}
	}
	start := time.Now()
	mustEnqueue(t, a, time.Now(), "q", batch...)
	for {
		st, err := b.QueueStats(ctx, "q", t0)
		if err != nil {
			t.Fatal(err)
		}
		if st.Waiting == 0 && st.Running == 0 {
			break
		}
		if time.Since(start) > 4*time.Second {
			t.Fatalf("jobs not done %v after enqueueing (polls are 5s apart): %+v", time.Since(start), st)
		}
		time.Sleep(10 * time.Millisecond)
	}
	mu.Lock()
	for id, k := range runs {
		if k != 1 {
			t.Errorf("job %d ran %d times", id, k)
		}
	}
	if len(runs) != n {
		t.Errorf("%d jobs ran, want %d", len(runs), n)
	}
	mu.Unlock()
	t.Logf("%d jobs on 2 workers in %v", n, time.Since(start))

	// Cancel a running job through the other node: the notification
	// cancels it long before the next heartbeat (10s).
	j := mustEnqueue(t, a, time.Now(), "slow", jobs.NewJob{Kind: "block"})[0]
	select {
	case <-started:
	case <-time.After(4 * time.Second):
		t.Fatal("blocking job not started within 4s")
	}
	var other *Store
	if got, _ := a.Get(ctx, j.ID); got.LeaseOwner == "w0" {
		other = b
	} else {
		other = a
	}
	canceled := time.Now()
	if _, err := other.Cancel(ctx, time.Now(), j.ID, "stop"); err != nil {
		t.Fatal(err)
	}
	for {
		got, err := a.Get(ctx, j.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.State == jobs.StateCanceled {
			break
		}
		if time.Since(canceled) > 4*time.Second {
			t.Fatalf("canceled job still %s after %v", got.State, time.Since(canceled))
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("running job canceled through the other node in %v", time.Since(canceled))
	_ = workers
}

func TestParseNotification(t *testing.T) {
	for _, c := range []struct {
		payload string
		want    jobs.Notification
		ok      bool
	}{
		{"queue:q", jobs.Notification{Queue: "q"}, true},
		{"queue:a:b due:1", jobs.Notification{Queue: "a:b due:1"}, true}, // names may hold anything
		{"due:1767225600000000000:q:x", jobs.Notification{Queue: "q:x", At: time.Unix(0, 1767225600000000000)}, true},
		{"due:1767225600000000000:", jobs.Notification{At: time.Unix(0, 1767225600000000000)}, true},
		{"due:0:q", jobs.Notification{}, false},
		{"due:x:q", jobs.Notification{}, false},
		{"due:123", jobs.Notification{}, false},
		{"cancel:5", jobs.Notification{CancelID: 5}, true},
		{"cancel:0", jobs.Notification{}, false},
		{"other:1", jobs.Notification{}, false},
	} {
		got, ok := parseNotification(c.payload)
		if ok != c.ok || got.Queue != c.want.Queue || got.CancelID != c.want.CancelID || !got.At.Equal(c.want.At) {
			t.Errorf("parseNotification(%q) = %+v, %v; want %+v, %v", c.payload, got, ok, c.want, c.ok)
		}
	}
}

// fetchCounter counts a Store's Fetch calls; embedding the *Store keeps its
// optional interfaces visible to a worker.
type fetchCounter struct {
	*Store
	n atomic.Int64
}

func (s *fetchCounter) Fetch(ctx context.Context, now time.Time, queue, owner string, limit int, lease time.Duration) ([]*jobs.Job, error) {
	defer s.n.Add(1)
	return s.Store.Fetch(ctx, now, queue, owner, limit, lease)
}

// A job scheduled for later by another node starts on time on an idle
// worker: the insert's notification carries its RunAt (schema step 4).
// The worker polls at 0, 20, 60, 140, 300, 620, 1260 and 2540ms; the job,
// enqueued after the seventh poll and due 300ms later, would otherwise be
// found only at the eighth, some 900ms late.
func TestScheduledJobAcrossNodes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	u, schema := testURL(t), freshSchema(t)
	a, b := openAt(t, u, schema, Config{}), &fetchCounter{Store: openAt(t, u, schema, Config{})}
	started := make(chan time.Time, 1)
	reg := jobs.NewRegistry()
	reg.Handle("k", jobs.HandlerFunc(func(context.Context, *jobs.Job) error { started <- time.Now(); return nil }))
	w := jobs.NewWorker(b, reg, jobs.WorkerConfig{
		Queues: []string{"q"}, PollInterval: 20 * time.Millisecond, MaxPollInterval: 10 * time.Second,
		Lease: 30 * time.Second, MaintenanceInterval: time.Hour,
	})
	if err := w.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if err := w.Stop(sctx); err != nil {
			t.Errorf("Stop: %v", err)
		}
	})
	for b.n.Load() < 7 {
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond) // its lookahead found nothing: in the wait that ends at 2540ms
	runAt := time.Now().Add(300 * time.Millisecond)
	mustEnqueue(t, a, time.Now(), "q", jobs.NewJob{Kind: "k", RunAt: runAt})
	select {
	case got := <-started:
		if d := got.Sub(runAt); d < 0 || d > 500*time.Millisecond {
			t.Errorf("the job started %v after its RunAt, want 0 to 500ms", d)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the job did not start within 10s")
	}
}
