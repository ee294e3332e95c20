package sqlitestore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/sluicehq/sluice/jobs"
	"github.com/sluicehq/sluice/jobs/storetest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// open opens a store on a new file in t's temp dir, closed at cleanup,
// after a check that the waiting counters kept by triggers match the jobs.
func open(t *testing.T, cfg Config) *Store {
	t.Helper()
	s, err := Open(context.Background(), filepath.Join(t.TempDir(), "jobs.db"), cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	t.Cleanup(func() { checkCounters(t, s) })
	return s
}

func checkCounters(t *testing.T, s *Store) {
	t.Helper()
	rows, err := s.r.Query(`SELECT q.name, q.waiting,
		(SELECT count(*) FROM jobs j WHERE j.queue = q.name AND j.state = 'waiting')
		FROM queues q`)
	if err != nil {
		t.Errorf("checking counters: %v", err)
		return
	}
	defer rows.Close()
	for rows.Next() {
		var (
			name          string
			counter, real int
		)
		if err := rows.Scan(&name, &counter, &real); err != nil {
			t.Errorf("checking counters: %v", err)
			return
		}
		if counter != real {
			t.Errorf("queue %q: waiting counter = %d, but %d jobs wait", name, counter, real)
		}
	}
	if err := rows.Err(); err != nil {
		t.Errorf("checking counters: %v", err)
	}
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) jobs.Store { return open(t, Config{}) })
}

func mustEnqueue(t *testing.T, s *Store, now time.Time, queue string, ns ...jobs.NewJob) []*jobs.Job {
	t.Helper()
	for i := range ns {
		ns[i].Queue = queue
		if err := ns[i].Normalize(now); err != nil {
			t.Fatal(err)
		}
	}
	res, err := s.Enqueue(context.Background(), now, queue, ns)
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

func TestReopen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "jobs.db")
	s, err := Open(ctx, path, Config{Synchronous: SyncFull})
	if err != nil {
		t.Fatal(err)
	}
	js := mustEnqueue(t, s, t0, "q", jobs.NewJob{Kind: "a"}, jobs.NewJob{Kind: "b", Priority: 3})
	if _, err := s.Fetch(ctx, t0, "q", "w", 1, time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := s.PutQueue(ctx, jobs.QueueConfig{Name: "q", Concurrency: 2, Capacity: 9, Policy: jobs.FullShed,
		MaxWait: time.Second, IdempotencyWindow: time.Hour}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, js[0].ID); !errors.Is(err, jobs.ErrClosed) {
		t.Errorf("Get after Close: err = %v, want ErrClosed", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}

	s2, err := Open(ctx, path, Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	a, err := s2.Get(ctx, js[0].ID)
	if err != nil || a.State != jobs.StateWaiting || a.Kind != "a" {
		t.Errorf("job a after reopening = %+v, %v, want waiting", a, err)
	}
	b, err := s2.Get(ctx, js[1].ID)
	if err != nil || b.State != jobs.StateRunning || b.LeaseOwner != "w" || b.Attempt != 1 {
		t.Errorf("job b after reopening = %+v, %v, want running under w", b, err)
	}
	q, err := s2.GetQueue(ctx, "q")
	if err != nil || q.Capacity != 9 || q.Policy != jobs.FullShed {
		t.Errorf("queue after reopening = %+v, %v", q, err)
	}
	var v int
	if err := s2.r.QueryRow(`PRAGMA user_version`).Scan(&v); err != nil || v != len(migrations) {
		t.Errorf("user_version = %d, %v, want %d", v, err, len(migrations))
	}
	var mode string
	if err := s2.r.QueryRow(`PRAGMA journal_mode`).Scan(&mode); err != nil || mode != "wal" {
		t.Errorf("journal_mode = %q, %v, want wal", mode, err)
	}
	checkCounters(t, s2)
}

func TestNewerSchemaRefused(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "jobs.db")
	s, err := Open(ctx, path, Config{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.w.Exec(`PRAGMA user_version = 99`); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if s, err := Open(ctx, path, Config{}); err == nil {
		s.Close()
		t.Fatal("Open of a database with a newer schema succeeded")
	} else if !strings.Contains(err.Error(), "newer") {
		t.Errorf("Open: %v, want a newer-schema error", err)
	}
}

// lockDB holds SQLite's write lock on path from another connection until
// the test ends.
func lockDB(t *testing.T, path string) {
	t.Helper()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	conn, err := db.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn.ExecContext(context.Background(), `ROLLBACK`)
		conn.Close()
	})
	if _, err := conn.ExecContext(context.Background(), `BEGIN IMMEDIATE`); err != nil {
		t.Fatal(err)
	}
}

func TestLockedDatabase(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "jobs.db")
	const timeout = 300 * time.Millisecond
	s, err := Open(ctx, path, Config{Timeout: timeout})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	js := mustEnqueue(t, s, t0, "q", jobs.NewJob{Kind: "a"})
	lockDB(t, path)

	n := jobs.NewJob{Kind: "b", Queue: "q"}
	if err := n.Normalize(t0); err != nil {
		t.Fatal(err)
	}
	writes := []struct {
		name string
		f    func(ctx context.Context) error
	}{
		{"Enqueue", func(ctx context.Context) error {
			_, err := s.Enqueue(ctx, t0, "q", []jobs.NewJob{n})
			return err
		}},
		{"Fetch", func(ctx context.Context) error {
			_, err := s.Fetch(ctx, t0, "q", "w", 10, time.Minute)
			return err
		}},
		{"Cancel", func(ctx context.Context) error {
			_, err := s.Cancel(ctx, t0, js[0].ID, "")
			return err
		}},
	}
	for _, w := range writes {
		start := time.Now()
		err := w.f(ctx)
		d := time.Since(start)
		if !errors.Is(err, jobs.ErrUnavailable) {
			t.Errorf("%s on a locked database: err = %v, want ErrUnavailable", w.name, err)
		}
		if d < timeout/2 || d > timeout+2*time.Second {
			t.Errorf("%s on a locked database returned after %v, want about the timeout %v", w.name, d, timeout)
		}
		// A caller's shorter deadline wins.
		cctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
		start = time.Now()
		err = w.f(cctx)
		cancel()
		if d := time.Since(start); !errors.Is(err, jobs.ErrUnavailable) || d > timeout {
			t.Errorf("%s on a locked database with a 50ms ctx: %v after %v, want ErrUnavailable before %v", w.name, err, d, timeout)
		}
	}
	// Readers are not blocked by the writer (WAL).
	if _, err := s.Get(ctx, js[0].ID); err != nil {
		t.Errorf("Get while another connection writes: %v", err)
	}
}

// TestFetchPlan guards the performance of the hot statements: each must
// be served by its index, not a table scan.
func TestFetchPlan(t *testing.T) {
	s := open(t, Config{})
	for _, c := range []struct {
		name, sql, index string
		args             []any
	}{
		// Seeks (queue, priority, run_at <= now): jobs scheduled for later
		// are not scanned.
		{"fetch", sqlFetch, "jobs_fetch (queue=? AND priority=? AND run_at<?)", []any{"q", "w", 1, 1, 10}},
		{"shed victim", sqlShedVictim, "jobs_fetch", []any{"q", 1}},
		{"retry after", sqlRetryAfter, "jobs_finished", []any{"q", 1, 1}},
		{"idempotency", sqlIdempotent, "jobs_idempotency", []any{"q", "k"}},
		{"group cancel", sqlGroupCancelWaiting, "jobs_group", []any{"g", "r", 1}},
		// Seeks (queue, priority, run_at > now) for each priority.
		{"next due", sqlNextDue, "jobs_fetch (queue=? AND priority=? AND run_at>?)", []any{"q", 1}},
	} {
		rows, err := s.w.Query(`EXPLAIN QUERY PLAN `+c.sql, c.args...)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		var plan []string
		for rows.Next() {
			var id, parent, notused int
			var detail string
			if err := rows.Scan(&id, &parent, &notused, &detail); err != nil {
				t.Fatal(err)
			}
			plan = append(plan, detail)
		}
		rows.Close()
		p := strings.Join(plan, "; ")
		if !strings.Contains(p, c.index) || strings.Contains(p, "TEMP B-TREE") || strings.Contains(p, "SCAN jobs") {
			t.Errorf("%s plan = %q, want it to use %s without sorting", c.name, p, c.index)
		}
		t.Logf("%s: %s", c.name, p)
	}
}

// The SQL of the bulk Succeeded statement unpacks attempts with the same
// shift and mask as packable and completeBulkTx pack them.
func TestPackedAttemptSQL(t *testing.T) {
	for _, want := range []string{
		">> " + strconv.Itoa(attemptBits) + " ",
		"& " + strconv.Itoa(1<<attemptBits-1) + "\n",
	} {
		if !strings.Contains(sqlSucceededBatch, want) {
			t.Errorf("sqlSucceededBatch lacks %q:\n%s", want, sqlSucceededBatch)
		}
	}
}

// A Retry or Release of a job whose cancellation was requested ends it
// canceled, so that nobody runs it again.
func TestCancelRequestedNotRetried(t *testing.T) {
	ctx := context.Background()
	s := open(t, Config{})
	for _, k := range []jobs.OutcomeKind{jobs.Retry, jobs.Released} {
		j := mustEnqueue(t, s, t0, "q", jobs.NewJob{Kind: "a"})[0]
		if _, err := s.Fetch(ctx, t0, "q", "w", 1, time.Minute); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Cancel(ctx, t0, j.ID, "stop it"); err != nil {
			t.Fatal(err)
		}
		applied, err := s.Complete(ctx, t0, "w", []jobs.Outcome{{Attempt: jobs.Attempt{ID: j.ID, Attempt: 1}, Kind: k}})
		if err != nil || !applied[0] {
			t.Fatalf("Complete: %v, %v", applied, err)
		}
		got, _ := s.Get(ctx, j.ID)
		if got.State != jobs.StateCanceled || got.Reason != "stop it" || got.FinishedAt.IsZero() {
			t.Errorf("outcome %d of a cancel-requested job left %+v, want canceled with the Cancel's reason", k, got)
		}
	}
	// The same when its lease expires.
	j := mustEnqueue(t, s, t0, "q", jobs.NewJob{Kind: "a"})[0]
	if _, err := s.Fetch(ctx, t0, "q", "w", 1, time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Cancel(ctx, t0, j.ID, "stop it"); err != nil {
		t.Fatal(err)
	}
	if n, err := s.RecoverLeases(ctx, t0.Add(time.Hour)); n != 1 || err != nil {
		t.Fatalf("RecoverLeases = %d, %v", n, err)
	}
	if got, _ := s.Get(ctx, j.ID); got.State != jobs.StateCanceled {
		t.Errorf("recovered cancel-requested job is %s, want canceled", got.State)
	}
}

// A job that fails for good because its lease expired on its last attempt
// cancels its group like a failure reported by Complete.
func TestRecoverFailureCancelsGroup(t *testing.T) {
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

func TestOpenRejectsBadConfig(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		path string
		cfg  Config
	}{
		{":memory:", Config{}},
		{"", Config{}},
		{filepath.Join(dir, "a?b"), Config{}},
		{filepath.Join(dir, "x.db"), Config{Synchronous: "OFF"}},
		{filepath.Join(dir, "x.db"), Config{ReadConns: -1}},
	} {
		if s, err := Open(context.Background(), c.path, c.cfg); err == nil {
			s.Close()
			t.Errorf("Open(%q, %+v) succeeded, want an error", c.path, c.cfg)
		}
	}
}

// A refusal carries a Retry-After estimate from the queue's recent
// completions.
func TestRetryAfterEstimate(t *testing.T) {
	ctx := context.Background()
	s := open(t, Config{})
	if err := s.PutQueue(ctx, jobs.QueueConfig{Name: "q", Capacity: 2}); err != nil {
		t.Fatal(err)
	}
	refuse := func(now time.Time) *jobs.QueueFullError {
		t.Helper()
		n := jobs.NewJob{Kind: "a", Queue: "q"}
		if err := n.Normalize(now); err != nil {
			t.Fatal(err)
		}
		_, err := s.Enqueue(ctx, now, "q", []jobs.NewJob{n})
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
	// Complete one job a second.
	for i := 1; i <= 2; i++ {
		now := t0.Add(time.Duration(i) * time.Second)
		js, err := s.Fetch(ctx, now, "q", "w", 1, time.Minute)
		if err != nil || len(js) != 1 {
			t.Fatalf("Fetch: %v, %v", js, err)
		}
		if _, err := s.Complete(ctx, now, "w", []jobs.Outcome{{Attempt: jobs.Attempt{ID: js[0].ID, Attempt: 1}, Kind: jobs.Succeeded}}); err != nil {
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

// Two Stores on one file (as two processes would be) never claim the same
// job, and their writes wait for each other instead of failing.
func TestTwoStoresShareFile(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "jobs.db")
	var stores [2]*Store
	for i := range stores {
		s, err := Open(ctx, path, Config{})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		stores[i] = s
	}
	const n = 400
	batch := make([]jobs.NewJob, n)
	for i := range batch {
		batch[i] = jobs.NewJob{Kind: "a"}
	}
	mustEnqueue(t, stores[0], t0, "q", batch...)

	var (
		claimed [2][]int64
		errs    [2]error
		done    = make(chan int, 2) // each fetcher sends its index once
	)
	for i, s := range stores {
		go func() {
			defer func() { done <- i }()
			for {
				js, err := s.Fetch(ctx, t0, "q", fmt.Sprintf("w%d", i), 7, time.Minute)
				if err != nil {
					errs[i] = err
					return
				}
				if len(js) == 0 {
					return
				}
				os := make([]jobs.Outcome, len(js))
				for k, j := range js {
					claimed[i] = append(claimed[i], j.ID)
					os[k] = jobs.Outcome{Attempt: jobs.Attempt{ID: j.ID, Attempt: j.Attempt}, Kind: jobs.Succeeded}
				}
				if _, err := s.Complete(ctx, t0, fmt.Sprintf("w%d", i), os); err != nil {
					errs[i] = err
					return
				}
			}
		}()
	}
	<-done
	<-done
	seen := map[int64]bool{}
	for i := range stores {
		if errs[i] != nil {
			t.Errorf("store %d: %v", i, errs[i])
		}
		for _, id := range claimed[i] {
			if seen[id] {
				t.Errorf("job %d claimed twice", id)
			}
			seen[id] = true
		}
	}
	if len(seen) != n {
		t.Errorf("claimed %d jobs, want %d", len(seen), n)
	}
	t.Logf("claims per store: %d, %d", len(claimed[0]), len(claimed[1]))
	checkCounters(t, stores[1])
}

// TestFetchCanceledClaimsNothing cancels Fetch at random points: whenever it
// returns an error, no job may have been claimed (a claimed job nobody
// received would sit running until its lease expired and use an attempt).
func TestFetchCanceledClaimsNothing(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, filepath.Join(t.TempDir(), "jobs.db"), Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	rounds := 200
	if testing.Short() {
		rounds = 50
	}
	var failed int
	for i := range rounds {
		js := mustEnqueue(t, s, t0, "q", jobs.NewJob{Kind: "a"}, jobs.NewJob{Kind: "a"}, jobs.NewJob{Kind: "a"})
		cctx, cancel := context.WithCancel(ctx)
		timer := time.AfterFunc(time.Duration(i%50)*20*time.Microsecond, cancel)
		got, err := s.Fetch(cctx, t0, "q", "w", 10, time.Minute)
		timer.Stop()
		cancel()
		if err == nil {
			if len(got) != 3 {
				t.Fatalf("round %d: fetched %d jobs, want 3", i, len(got))
			}
		} else {
			failed++
			for _, j := range js {
				g, gerr := s.Get(ctx, j.ID)
				if gerr != nil {
					t.Fatal(gerr)
				}
				if g.State != jobs.StateWaiting || g.Attempt != 0 {
					t.Fatalf("round %d: Fetch returned %v but job %d is %s attempt %d", i, err, j.ID, g.State, g.Attempt)
				}
			}
		}
		// Clear the queue for the next round.
		left, err := s.Fetch(ctx, t0, "q", "w", 10, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		for _, j := range append(got, left...) {
			if _, err := s.Complete(ctx, t0, "w", []jobs.Outcome{{Attempt: jobs.Attempt{ID: j.ID, Attempt: j.Attempt}, Kind: jobs.Succeeded}}); err != nil {
				t.Fatal(err)
			}
		}
	}
	t.Logf("%d of %d fetches were canceled; none claimed a job", failed, rounds)
}

func TestSplitExtras(t *testing.T) {
	six := [6]int64{-9223372036854775808, 1, 0, 9223372036854775807, 5, -1}
	for _, c := range []struct {
		in   string
		n    [6]int64
		want [4]string
		ok   bool
	}{
		{"0,0,0,0,0,0,0,0,0,0;", [6]int64{}, [4]string{}, true},
		{"-9223372036854775808,1,0,9223372036854775807,5,-1,1,3,0,3;kg;ü;,", six, [4]string{"k", "g;\xc3", "", "\xbc;,"}, true},
		{"0,0,0,0,0,0,3,0,0,1;a,bc", [6]int64{}, [4]string{"a,b", "", "", "c"}, true},
		{"0,0,0,0,0,0,1,1,1,1;abc", [6]int64{}, [4]string{}, false},                // too short
		{"0,0,0,0,0,0,1,1,1,1;abcde", [6]int64{}, [4]string{}, false},              // too long
		{"0,0,0,0,0,0,1,1,1;abc", [6]int64{}, [4]string{}, false},                  // nine fields
		{"0,0,0,0,0,0,1,1,1,1,0;abcd", [6]int64{}, [4]string{}, false},             // eleven
		{"0,0,0,0,0,0,x,0,0,0;", [6]int64{}, [4]string{}, false},                   // not a number
		{"0,0,0,0,0,0,-1,0,0,0;", [6]int64{}, [4]string{}, false},                  // negative length
		{"9223372036854775808,0,0,0,0,0,0,0,0,0;", [6]int64{}, [4]string{}, false}, // overflow
		{"0,0,0,0,0,0,0,0,0,0,;", [6]int64{}, [4]string{}, false},                  // trailing comma
		{"+0,0,0,0,0,0,0,0,0,0;", [6]int64{}, [4]string{}, false},                  // plus sign
		{"0,0,0,0,0,,0,0,0,0;", [6]int64{}, [4]string{}, false},                    // empty field
		{"0,0,0,0,0,0,0,0,0,0", [6]int64{}, [4]string{}, false},                    // no semicolon
		{"", [6]int64{}, [4]string{}, false},
	} {
		n, got, ok := splitExtras([]byte(c.in))
		if ok != c.ok || (ok && (got != c.want || n != c.n)) {
			t.Errorf("splitExtras(%q) = %v, %q, %v; want %v, %q, %v", c.in, n, got, ok, c.n, c.want, c.ok)
		}
	}
}

// A fetched job whose settings are not the defaults reads them from the
// extras column.
func TestFetchNonDefaults(t *testing.T) {
	ctx := context.Background()
	s := open(t, Config{})
	in := mustEnqueue(t, s, t0, "q",
		jobs.NewJob{Kind: "a"},
		jobs.NewJob{Kind: "b", Deadline: t0.Add(time.Hour)},
		jobs.NewJob{Kind: "c", CancelGroupOnFailure: true, Group: "g"},
		jobs.NewJob{Kind: "d", AttemptTimeout: time.Second},
		jobs.NewJob{Kind: "e", MaxAttempts: 1},
		jobs.NewJob{Kind: "f", BackoffMin: 2 * time.Second},
		jobs.NewJob{Kind: "g", BackoffMax: time.Hour},
		jobs.NewJob{Kind: "h", MaxAttempts: 1 << 30, AttemptTimeout: 1<<63 - 1, Deadline: time.Date(2262, 1, 1, 0, 0, 0, 0, time.UTC)})
	got, err := s.Fetch(ctx, t0, "q", "w", 100, time.Minute)
	if err != nil || len(got) != len(in) {
		t.Fatalf("Fetch = %d jobs, %v; want %d", len(got), err, len(in))
	}
	wantAsStored(t, s, got)
}

// A waiting job with a reason (Fetch's texts column carries it too; the
// API leaves none on waiting jobs, so the test writes one) is fetched as Get
// reads it.
func TestFetchReason(t *testing.T) {
	ctx := context.Background()
	s := open(t, Config{})
	in := mustEnqueue(t, s, t0, "q", jobs.NewJob{Kind: "a"})
	if _, err := s.w.Exec(`UPDATE jobs SET reason = 'why; 1,2 ✓' WHERE id = ?1`, in[0].ID); err != nil {
		t.Fatal(err)
	}
	got, err := s.Fetch(ctx, t0, "q", "w", 1, time.Minute)
	if err != nil || len(got) != 1 {
		t.Fatalf("Fetch = %v, %v", got, err)
	}
	if got[0].Reason != "why; 1,2 ✓" {
		t.Errorf("fetched Reason = %q", got[0].Reason)
	}
	wantAsStored(t, s, got)
}

// A database file created elsewhere in UTF-16 is refused with a clear
// error (Fetch reads byte lengths SQLite counts in the file's encoding).
func TestOpenRefusesUTF16(t *testing.T) {
	path := filepath.Join(t.TempDir(), "utf16.db")
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`PRAGMA encoding = 'UTF-16le'; CREATE TABLE x (a TEXT)`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	s, err := Open(context.Background(), path, Config{})
	if err == nil {
		s.Close()
		t.Fatal("Open accepted a UTF-16 database")
	}
	if !strings.Contains(err.Error(), "UTF-16le") {
		t.Errorf("Open error = %v, want it to name the encoding", err)
	}
}

// A row whose extras column this build cannot decode (here one SQLite
// would never write) is read from its columns: the claim neither fails nor
// differs from Get.
func TestFetchOddExtras(t *testing.T) {
	ctx := context.Background()
	s := open(t, Config{})
	in := mustEnqueue(t, s, t0, "q", jobs.NewJob{Kind: "a", Group: "g", Priority: 9}, jobs.NewJob{Kind: "b"})
	// Make Fetch's extras expression produce something malformed for the
	// first job only: a group name of the wrong length is not possible,
	// so swap the statement for one that returns a bad column.
	bad := strings.Replace(sqlFetch, "ELSE printf('%d,", "ELSE printf('x%d,", 1)
	if bad == sqlFetch {
		t.Fatal("sqlFetch no longer has the expected printf")
	}
	stmt, err := s.w.Prepare(bad)
	if err != nil {
		t.Fatal(err)
	}
	old := s.stmts.fetch
	s.stmts.fetch = stmt
	defer func() { s.stmts.fetch = old; stmt.Close() }()
	got, err := s.Fetch(ctx, t0, "q", "w", 10, time.Minute)
	if err != nil || len(got) != len(in) {
		t.Fatalf("Fetch = %d jobs, %v; want %d", len(got), err, len(in))
	}
	wantAsStored(t, s, got)
}

// wantAsStored fails t for each fetched job that differs from what Get
// returns for it.
func wantAsStored(t *testing.T, s *Store, fetched []*jobs.Job) {
	t.Helper()
	for _, j := range fetched {
		stored, err := s.Get(context.Background(), j.ID)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(j, stored) {
			t.Errorf("Fetch returned\n%+v\nbut Get says\n%+v", j, stored)
		}
	}
}
