package jobs_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/sluicehq/sluice/jobs"
	"github.com/sluicehq/sluice/jobs/sqlitestore"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func openStore(t *testing.T) *sqlitestore.Store {
	t.Helper()
	st, err := sqlitestore.Open(context.Background(), filepath.Join(t.TempDir(), "jobs.db"), sqlitestore.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// fastWorker returns worker settings that make tests quick: frequent
// heartbeats, polls and maintenance.
func fastWorker(queues ...string) jobs.WorkerConfig {
	return jobs.WorkerConfig{
		Queues: queues,
		// Heartbeats as often as a 600ms lease would have them, but a
		// lease long enough that a fetch held up on a loaded CI machine
		// (its lease counts from before the call) cannot expire before the
		// job's first heartbeat: TestWorkerRetriesWithBackoffThenFails
		// once saw its last attempt recovered that way. Tests about lease
		// expiry set their own.
		Lease:               3 * time.Second,
		HeartbeatInterval:   200 * time.Millisecond,
		PollInterval:        2 * time.Millisecond,
		MaxPollInterval:     20 * time.Millisecond,
		MaintenanceInterval: 50 * time.Millisecond,
		Logger:              slog.New(slog.DiscardHandler),
	}
}

func startWorker(t *testing.T, st jobs.Store, reg *jobs.Registry, cfg jobs.WorkerConfig) *jobs.Worker {
	t.Helper()
	w := jobs.NewWorker(st, reg, cfg)
	if err := w.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := w.Stop(ctx); err != nil {
			t.Errorf("worker stop: %v", err)
		}
	})
	return w
}

// waitState polls until job id reaches a terminal state (or want), failing
// after 10s.
func waitState(t *testing.T, c *jobs.Client, id int64, want jobs.State) *jobs.Job {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		j, err := c.Get(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if j.State == want {
			return j
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %d: state %s (attempt %d, error %q), want %s", id, j.State, j.Attempt, j.LastError, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func enqueue(t *testing.T, c *jobs.Client, nj jobs.NewJob) *jobs.Job {
	t.Helper()
	res, err := c.Enqueue(context.Background(), nj)
	if err != nil {
		t.Fatal(err)
	}
	return res.Job
}

func TestWorkerRunsEveryJobOnce(t *testing.T) {
	st := openStore(t)
	c := jobs.NewClient(st, jobs.ClientConfig{})
	var mu sync.Mutex
	runs := map[int64]int{}
	reg := jobs.NewRegistry()
	reg.Handle("count", jobs.HandlerFunc(func(ctx context.Context, j *jobs.Job) error {
		mu.Lock()
		runs[j.ID]++
		mu.Unlock()
		return nil
	}))
	const n = 300
	batch := make([]jobs.NewJob, n)
	for i := range batch {
		batch[i] = jobs.NewJob{Kind: "count", Payload: []byte(fmt.Sprint(i))}
	}
	res, err := c.EnqueueMany(context.Background(), jobs.DefaultQueue, batch)
	if err != nil {
		t.Fatal(err)
	}
	startWorker(t, st, reg, fastWorker())
	for _, r := range res {
		j := waitState(t, c, r.Job.ID, jobs.StateSucceeded)
		if j.Attempt != 1 {
			t.Fatalf("job %d attempt %d, want 1", j.ID, j.Attempt)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	for _, r := range res {
		if runs[r.Job.ID] != 1 {
			t.Fatalf("job %d ran %d times", r.Job.ID, runs[r.Job.ID])
		}
	}
}

func TestWorkerRetriesWithBackoffThenFails(t *testing.T) {
	st := openStore(t)
	c := jobs.NewClient(st, jobs.ClientConfig{})
	var attempts atomic.Int32
	reg := jobs.NewRegistry()
	reg.Handle("flaky", jobs.HandlerFunc(func(ctx context.Context, j *jobs.Job) error {
		attempts.Add(1)
		return errors.New("dependency down")
	}))
	reg.Handle("bad", jobs.HandlerFunc(func(ctx context.Context, j *jobs.Job) error {
		return jobs.Permanent(errors.New("malformed"))
	}))
	reg.Handle("panics", jobs.HandlerFunc(func(ctx context.Context, j *jobs.Job) error { panic("kaboom") }))
	reg.Handle("meddles", jobs.HandlerFunc(func(ctx context.Context, j *jobs.Job) error {
		j.MaxAttempts = 100 // the outcome is decided from the job as fetched
		return errors.New("meddled")
	}))
	cfg := fastWorker()
	var mu sync.Mutex
	kinds := map[int64][]jobs.OutcomeKind{} // the outcomes recorded per job, in order
	cfg.OnRecorded = func(os []jobs.Outcome, applied []bool) {
		mu.Lock()
		defer mu.Unlock()
		for i, o := range os {
			if applied[i] {
				kinds[o.ID] = append(kinds[o.ID], o.Kind)
			}
		}
	}
	w := startWorker(t, st, reg, cfg)
	flaky := enqueue(t, c, jobs.NewJob{Kind: "flaky", MaxAttempts: 3, BackoffMin: time.Millisecond, BackoffMax: 5 * time.Millisecond})
	bad := enqueue(t, c, jobs.NewJob{Kind: "bad", MaxAttempts: 3})
	pan := enqueue(t, c, jobs.NewJob{Kind: "panics", MaxAttempts: 1})
	unknown := enqueue(t, c, jobs.NewJob{Kind: "nobody-handles-this"})
	meddles := enqueue(t, c, jobs.NewJob{Kind: "meddles", MaxAttempts: 1})

	j := waitState(t, c, flaky.ID, jobs.StateFailed)
	if j.Attempt != 3 || attempts.Load() != 3 || j.LastError != "dependency down" {
		t.Fatalf("flaky: attempt %d, runs %d, error %q", j.Attempt, attempts.Load(), j.LastError)
	}
	if j := waitState(t, c, bad.ID, jobs.StateFailed); j.Attempt != 1 {
		t.Fatalf("permanent error retried: attempt %d", j.Attempt)
	}
	if j := waitState(t, c, pan.ID, jobs.StateFailed); !strings.Contains(j.LastError, "kaboom") || !strings.Contains(j.LastError, "worker_test.go") {
		t.Fatalf("panic not recorded with its stack: %q", j.LastError)
	}
	if j := waitState(t, c, unknown.ID, jobs.StateFailed); !strings.Contains(j.LastError, "no handler") {
		t.Fatalf("unknown kind: %q", j.LastError)
	}
	// The last failed attempt is recorded as a failure, not as a retry
	// that the store then turned into one: hooks and metrics see it so.
	waitState(t, c, meddles.ID, jobs.StateFailed)
	// OnRecorded runs after the store wrote the outcomes and Stats
	// counted them: wait for it to have seen the five failures.
	failures := func() (n int) {
		for _, ks := range kinds {
			for _, k := range ks {
				if k == jobs.Failed {
					n++
				}
			}
		}
		return n
	}
	mu.Lock()
	defer mu.Unlock()
	for deadline := time.Now().Add(5 * time.Second); failures() < 5; {
		if time.Now().After(deadline) {
			t.Fatalf("OnRecorded saw %v, want 5 failures", kinds)
		}
		mu.Unlock()
		time.Sleep(time.Millisecond)
		mu.Lock()
	}
	if got := w.Stats().Recorded[jobs.Failed]; got != 5 {
		t.Errorf("Stats: %d failures recorded, want 5", got)
	}
	want := map[int64][]jobs.OutcomeKind{
		flaky.ID:   {jobs.Retry, jobs.Retry, jobs.Failed},
		bad.ID:     {jobs.Failed},
		pan.ID:     {jobs.Failed},
		unknown.ID: {jobs.Failed},
		meddles.ID: {jobs.Failed},
	}
	for id, k := range want {
		if !slices.Equal(kinds[id], k) {
			t.Errorf("job %d recorded %v, want %v", id, kinds[id], k)
		}
	}
	if got := w.Stats().Recorded[jobs.Retry]; got != 2 {
		t.Errorf("Stats: %d retries recorded, want 2", got)
	}
}

func TestCancelRunningJobCancelsHandlerContext(t *testing.T) {
	st := openStore(t)
	c := jobs.NewClient(st, jobs.ClientConfig{})
	started := make(chan struct{})
	var sawCancel atomic.Bool
	reg := jobs.NewRegistry()
	reg.Handle("block", jobs.HandlerFunc(func(ctx context.Context, j *jobs.Job) error {
		close(started)
		<-ctx.Done()
		sawCancel.Store(true)
		return ctx.Err()
	}))
	startWorker(t, st, reg, fastWorker())
	j := enqueue(t, c, jobs.NewJob{Kind: "block"})
	<-started
	if _, err := c.Cancel(context.Background(), j.ID); err != nil {
		t.Fatal(err)
	}
	got := waitState(t, c, j.ID, jobs.StateCanceled)
	if !sawCancel.Load() || got.Attempt != 1 {
		t.Fatalf("canceled job: handler saw cancel %v, attempt %d", sawCancel.Load(), got.Attempt)
	}
	// A waiting job is canceled at once, without a worker.
	later := enqueue(t, c, jobs.NewJob{Kind: "block", RunAt: time.Now().Add(time.Hour)})
	if cj, err := c.Cancel(context.Background(), later.ID); err != nil || cj.State != jobs.StateCanceled {
		t.Fatalf("cancel waiting: %v, %v", cj, err)
	}
}

func TestStopReleasesInterruptedJobsWithoutUsingAttempts(t *testing.T) {
	st := openStore(t)
	c := jobs.NewClient(st, jobs.ClientConfig{})
	var started atomic.Int32
	reg := jobs.NewRegistry()
	reg.Handle("long", jobs.HandlerFunc(func(ctx context.Context, j *jobs.Job) error {
		started.Add(1)
		<-ctx.Done()
		return ctx.Err()
	}))
	var ids []int64
	for range 4 {
		ids = append(ids, enqueue(t, c, jobs.NewJob{Kind: "long"}).ID)
	}
	w := jobs.NewWorker(st, reg, fastWorker())
	if err := w.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	for started.Load() < 4 {
		time.Sleep(2 * time.Millisecond)
	}
	// Stop keeps a quarter of its budget to write the interrupted jobs'
	// outcomes: 250ms of this second (100ms in all left 25ms, which a
	// loaded machine running -race once overran).
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := w.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		j, err := c.Get(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if j.State != jobs.StateWaiting || j.Attempt != 0 {
			t.Fatalf("job %d after stop: %s attempt %d; want waiting attempt 0", id, j.State, j.Attempt)
		}
	}
	if s := w.Stats(); s.Recorded[jobs.Released] != 4 {
		t.Fatalf("stats %+v", s)
	}
}

func TestStopLetsRunningJobsFinish(t *testing.T) {
	st := openStore(t)
	c := jobs.NewClient(st, jobs.ClientConfig{})
	started := make(chan struct{})
	reg := jobs.NewRegistry()
	reg.Handle("slow", jobs.HandlerFunc(func(ctx context.Context, j *jobs.Job) error {
		close(started)
		time.Sleep(200 * time.Millisecond)
		return nil
	}))
	j := enqueue(t, c, jobs.NewJob{Kind: "slow"})
	w := jobs.NewWorker(st, reg, fastWorker())
	if err := w.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	<-started
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := w.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if got, _ := c.Get(context.Background(), j.ID); got.State != jobs.StateSucceeded {
		t.Fatalf("state %s after a graceful stop, want succeeded", got.State)
	}
	if err := w.Start(context.Background()); !errors.Is(err, jobs.ErrClosed) {
		t.Fatalf("Start after Stop: %v", err)
	}
}

func TestCrashedWorkersJobsAreRecovered(t *testing.T) {
	st := openStore(t)
	c := jobs.NewClient(st, jobs.ClientConfig{})
	j := enqueue(t, c, jobs.NewJob{Kind: "ok"})
	// A worker that crashed: it claimed the job with a short lease and
	// never came back.
	claimed, err := st.Fetch(context.Background(), time.Now(), jobs.DefaultQueue, "dead-worker", 10, 200*time.Millisecond)
	if err != nil || len(claimed) != 1 {
		t.Fatalf("fetch: %v, %v", claimed, err)
	}
	reg := jobs.NewRegistry()
	reg.Handle("ok", jobs.HandlerFunc(func(context.Context, *jobs.Job) error { return nil }))
	startWorker(t, st, reg, fastWorker())
	got := waitState(t, c, j.ID, jobs.StateSucceeded)
	if got.Attempt != 2 {
		t.Fatalf("attempt %d, want 2 (the crashed one counts)", got.Attempt)
	}
	// The dead worker's late outcome is fenced off.
	applied, err := st.Complete(context.Background(), time.Now(), "dead-worker", []jobs.Outcome{{Attempt: jobs.Attempt{ID: j.ID, Attempt: 1}, Kind: jobs.Failed, Error: "late"}})
	if err != nil || applied[0] {
		t.Fatalf("stale outcome applied=%v err=%v", applied, err)
	}
	if got, _ := c.Get(context.Background(), j.ID); got.State != jobs.StateSucceeded {
		t.Fatalf("stale outcome changed the job: %s", got.State)
	}
}

func TestGroupCancelsOnFailure(t *testing.T) {
	st := openStore(t)
	c := jobs.NewClient(st, jobs.ClientConfig{})
	running := make(chan struct{})
	reg := jobs.NewRegistry()
	reg.Handle("wait", jobs.HandlerFunc(func(ctx context.Context, j *jobs.Job) error {
		close(running)
		<-ctx.Done()
		return ctx.Err()
	}))
	reg.Handle("fail", jobs.HandlerFunc(func(ctx context.Context, j *jobs.Job) error {
		<-running
		return jobs.Permanent(errors.New("no"))
	}))
	waiter := enqueue(t, c, jobs.NewJob{Kind: "wait", Group: "g1"})
	failer := enqueue(t, c, jobs.NewJob{Kind: "fail", Group: "g1", CancelGroupOnFailure: true})
	later := enqueue(t, c, jobs.NewJob{Kind: "wait", Group: "g1", RunAt: time.Now().Add(time.Hour)})
	startWorker(t, st, reg, fastWorker())
	waitState(t, c, failer.ID, jobs.StateFailed)
	w := waitState(t, c, waiter.ID, jobs.StateCanceled)
	l := waitState(t, c, later.ID, jobs.StateCanceled)
	// Both say why: the running one keeps the reason its cancellation
	// was requested with, as the waiting one does.
	for _, j := range []*jobs.Job{w, l} {
		if !strings.Contains(j.Reason, "g1") || !strings.Contains(j.Reason, "failed") {
			t.Errorf("job %d canceled with reason %q, want the group's", j.ID, j.Reason)
		}
	}
	g, err := c.Group(context.Background(), "g1")
	if err != nil || !g.Done || g.Succeeded || g.Counts[jobs.StateCanceled] != 2 || g.Counts[jobs.StateFailed] != 1 {
		t.Fatalf("group %+v, %v", g, err)
	}
}

func TestHandlerContextCarriesDeadlineAndAttemptTimeout(t *testing.T) {
	st := openStore(t)
	c := jobs.NewClient(st, jobs.ClientConfig{})
	reg := jobs.NewRegistry()
	reg.Handle("sleepy", jobs.HandlerFunc(func(ctx context.Context, j *jobs.Job) error {
		<-ctx.Done()
		return ctx.Err()
	}))
	startWorker(t, st, reg, fastWorker())
	dl := enqueue(t, c, jobs.NewJob{Kind: "sleepy", Deadline: time.Now().Add(300 * time.Millisecond)})
	to := enqueue(t, c, jobs.NewJob{Kind: "sleepy", AttemptTimeout: 20 * time.Millisecond, MaxAttempts: 2, BackoffMin: time.Millisecond})
	if j := waitState(t, c, dl.ID, jobs.StateExpired); j.Attempt != 1 {
		t.Fatalf("deadline job attempt %d", j.Attempt)
	}
	if j := waitState(t, c, to.ID, jobs.StateFailed); j.Attempt != 2 || !strings.Contains(j.LastError, "attempt timeout") {
		t.Fatalf("timeout job: attempt %d error %q", j.Attempt, j.LastError)
	}
	// A waiting job past its deadline never starts.
	pausedQ, err := c.PutQueue(context.Background(), jobs.QueueConfig{Name: "paused", Paused: true})
	if err != nil {
		t.Fatal(err)
	}
	exp := enqueue(t, c, jobs.NewJob{Kind: "sleepy", Queue: pausedQ.Name, Deadline: time.Now().Add(50 * time.Millisecond)})
	if j := waitState(t, c, exp.ID, jobs.StateExpired); j.Attempt != 0 {
		t.Fatalf("expired waiting job ran: attempt %d", j.Attempt)
	}
}

func TestFullQueueAnswersWithRetryAfter(t *testing.T) {
	st := openStore(t)
	c := jobs.NewClient(st, jobs.ClientConfig{})
	if _, err := c.PutQueue(context.Background(), jobs.QueueConfig{Name: "small", Capacity: 3}); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		enqueue(t, c, jobs.NewJob{Kind: "x", Queue: "small"})
	}
	_, err := c.Enqueue(context.Background(), jobs.NewJob{Kind: "x", Queue: "small"})
	var full *jobs.QueueFullError
	if !errors.As(err, &full) || !errors.Is(err, jobs.ErrQueueFull) || full.RetryAfter <= 0 {
		t.Fatalf("err = %v, want *QueueFullError with RetryAfter", err)
	}

	// FullWait: the enqueue waits until a worker makes room.
	if _, err := c.PutQueue(context.Background(), jobs.QueueConfig{Name: "waity", Capacity: 1, Policy: jobs.FullWait, MaxWait: 5 * time.Second}); err != nil {
		t.Fatal(err)
	}
	enqueue(t, c, jobs.NewJob{Kind: "x", Queue: "waity", RunAt: time.Now().Add(100 * time.Millisecond)})
	reg := jobs.NewRegistry()
	reg.Handle("x", jobs.HandlerFunc(func(context.Context, *jobs.Job) error { return nil }))
	startWorker(t, st, reg, fastWorker("waity"))
	if _, err := c.Enqueue(context.Background(), jobs.NewJob{Kind: "x", Queue: "waity"}); err != nil {
		t.Fatalf("FullWait enqueue: %v", err)
	}
}

// TestFullWaitEndsWhenStopping: an enqueue waiting on a full queue fails
// with ErrClosed as soon as ClientConfig.Stopping closes, well before its
// MaxWait; and MaxWait is bounded by MaxQueueWait.
func TestFullWaitEndsWhenStopping(t *testing.T) {
	st := openStore(t)
	stopping := make(chan struct{})
	waiting := make(chan struct{}, 1)
	c := jobs.NewClient(queueReadSignal{st, waiting}, jobs.ClientConfig{Stopping: stopping})
	ctx := context.Background()
	if _, err := c.PutQueue(ctx, jobs.QueueConfig{Name: "w", Capacity: 1, Policy: jobs.FullWait, MaxWait: jobs.MaxQueueWait}); err != nil {
		t.Fatal(err)
	}
	enqueue(t, c, jobs.NewJob{Kind: "x", Queue: "w"}) // full now; no worker empties it
	done := make(chan error, 1)
	start := time.Now()
	go func() {
		_, err := c.Enqueue(ctx, jobs.NewJob{Kind: "x", Queue: "w"})
		done <- err
	}()
	<-waiting // the enqueue found the queue full and read its policy: it waits
	close(stopping)
	select {
	case err := <-done:
		if !errors.Is(err, jobs.ErrClosed) {
			t.Fatalf("waiting enqueue ended with %v, want ErrClosed", err)
		}
		if took := time.Since(start); took > 5*time.Second {
			t.Fatalf("waiting enqueue took %v after Stopping closed", took)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("waiting enqueue did not end when Stopping closed")
	}

	var ve *jobs.ValidationError
	if _, err := c.PutQueue(ctx, jobs.QueueConfig{Name: "w2", Policy: jobs.FullWait, MaxWait: jobs.MaxQueueWait + time.Second}); !errors.As(err, &ve) || ve.Field != "max_wait" {
		t.Fatalf("MaxWait over MaxQueueWait: %v, want a max_wait ValidationError", err)
	}
}

// queueReadSignal signals on read each time the client reads a queue's
// configuration, which EnqueueMany does only when it found the queue full.
type queueReadSignal struct {
	jobs.Store
	read chan struct{} // buffer 1; a signal nobody took is dropped
}

func (s queueReadSignal) GetQueue(ctx context.Context, name string) (jobs.QueueConfig, error) {
	select {
	case s.read <- struct{}{}:
	default:
	}
	return s.Store.GetQueue(ctx, name)
}

func TestQueueRateLimit(t *testing.T) {
	st := openStore(t)
	c := jobs.NewClient(st, jobs.ClientConfig{})
	if _, err := c.PutQueue(context.Background(), jobs.QueueConfig{Name: "limited", RateLimit: 50, RateBurst: 1}); err != nil {
		t.Fatal(err)
	}
	var batch []jobs.NewJob
	for range 20 {
		batch = append(batch, jobs.NewJob{Kind: "x"})
	}
	res, err := c.EnqueueMany(context.Background(), "limited", batch)
	if err != nil {
		t.Fatal(err)
	}
	reg := jobs.NewRegistry()
	reg.Handle("x", jobs.HandlerFunc(func(context.Context, *jobs.Job) error { return nil }))
	start := time.Now()
	startWorker(t, st, reg, fastWorker("limited"))
	for _, r := range res {
		waitState(t, c, r.Job.ID, jobs.StateSucceeded)
	}
	// 20 starts at 50/s with a burst of 1 cannot take less than 19/50 s.
	if d := time.Since(start); d < 380*time.Millisecond {
		t.Fatalf("20 jobs at 50/s ran in %v", d)
	}
}

// TestLockedDatabaseIsOverloadNotHang holds SQLite's write lock from another
// connection: the worker's fetches fail fast with ErrUnavailable and back
// off, enqueue answers with a retryable error, nothing hangs, and once the
// lock is gone the job completes.
func TestLockedDatabaseIsOverloadNotHang(t *testing.T) {
	path := filepath.Join(t.TempDir(), "jobs.db")
	// Create the schema first: under -race on a busy machine, creating it
	// can take longer than the short Timeout this test needs for calls.
	pre, err := sqlitestore.Open(context.Background(), path, sqlitestore.Config{})
	if err != nil {
		t.Fatal(err)
	}
	pre.Close()
	st, err := sqlitestore.Open(context.Background(), path, sqlitestore.Config{Timeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	c := jobs.NewClient(st, jobs.ClientConfig{CallTimeout: time.Second})
	j := enqueue(t, c, jobs.NewJob{Kind: "ok"})

	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	conn, err := db.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(context.Background(), `BEGIN IMMEDIATE`); err != nil {
		t.Fatal(err)
	}
	locked := true
	unlock := func() {
		if locked {
			conn.ExecContext(context.Background(), `ROLLBACK`)
			locked = false
		}
	}
	defer unlock()

	reg := jobs.NewRegistry()
	reg.Handle("ok", jobs.HandlerFunc(func(context.Context, *jobs.Job) error { return nil }))
	cfg := fastWorker()
	cfg.CallTimeout = time.Second
	w := jobs.NewWorker(st, reg, cfg)
	start := time.Now()
	if err := w.Start(context.Background()); err != nil {
		t.Fatal(err) // Start's maintenance pass fails softly; Start itself must not
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("Start took %v against a locked database", d)
	}
	start = time.Now()
	_, err = c.Enqueue(context.Background(), jobs.NewJob{Kind: "ok"})
	if !errors.Is(err, jobs.ErrUnavailable) {
		t.Fatalf("enqueue into a locked database: %v, want ErrUnavailable", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("enqueue took %v to give up", d)
	}
	for w.Stats().StoreErrs == 0 {
		time.Sleep(10 * time.Millisecond)
	}
	unlock()
	waitState(t, c, j.ID, jobs.StateSucceeded)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := w.Stop(ctx); err != nil {
		t.Fatal(err)
	}
}

type retryLater struct{ d time.Duration }

func (e retryLater) Error() string             { return "busy" }
func (e retryLater) RetryAfter() time.Duration { return e.d }

func TestRetryHonoursRetryAfter(t *testing.T) {
	st := openStore(t)
	c := jobs.NewClient(st, jobs.ClientConfig{})
	reg := jobs.NewRegistry()
	reg.Handle("busy", jobs.HandlerFunc(func(context.Context, *jobs.Job) error { return retryLater{time.Hour} }))
	startWorker(t, st, reg, fastWorker())
	before := time.Now()
	j := enqueue(t, c, jobs.NewJob{Kind: "busy", BackoffMin: time.Millisecond, BackoffMax: 2 * time.Hour})
	deadline := time.Now().Add(10 * time.Second)
	for {
		got, err := c.Get(context.Background(), j.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.State == jobs.StateWaiting && got.Attempt == 1 {
			if got.RunAt.Before(before.Add(time.Hour)) || got.RunAt.After(time.Now().Add(time.Hour)) {
				t.Fatalf("retry at %v, want an hour from the attempt (Retry-After), not the 1ms backoff", got.RunAt.Sub(before))
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %d: %s attempt %d", j.ID, got.State, got.Attempt)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

type withheld struct{ d time.Duration }

func (e withheld) Error() string             { return "breaker open" }
func (e withheld) RetryAfter() time.Duration { return e.d }
func (e withheld) NotAttempted() bool        { return true }

func TestWithheldWorkDoesNotUseAttempts(t *testing.T) {
	st := openStore(t)
	c := jobs.NewClient(st, jobs.ClientConfig{})
	var calls atomic.Int32
	reg := jobs.NewRegistry()
	reg.Handle("guarded", jobs.HandlerFunc(func(context.Context, *jobs.Job) error {
		if calls.Add(1) <= 3 {
			return withheld{20 * time.Millisecond}
		}
		return nil
	}))
	startWorker(t, st, reg, fastWorker())
	j := enqueue(t, c, jobs.NewJob{Kind: "guarded", MaxAttempts: 1})
	got := waitState(t, c, j.ID, jobs.StateSucceeded)
	if got.Attempt != 1 || calls.Load() != 4 {
		t.Fatalf("attempt %d after %d calls; want attempt 1 after 4 (3 withheld)", got.Attempt, calls.Load())
	}
}

// Maintenance deletes finished jobs once their retention has passed, and
// leaves unfinished ones; a negative retention keeps everything.
func TestWorkerRetention(t *testing.T) {
	for _, keep := range []bool{false, true} {
		t.Run(map[bool]string{false: "delete", true: "keep"}[keep], func(t *testing.T) {
			st := openStore(t)
			c := jobs.NewClient(st, jobs.ClientConfig{})
			reg := jobs.NewRegistry()
			reg.Handle("ok", jobs.HandlerFunc(func(context.Context, *jobs.Job) error { return nil }))
			cfg := fastWorker()
			cfg.Retention = 100 * time.Millisecond
			if keep {
				cfg.Retention = -1
			}
			cfg.RetentionBatch = 2 // several rounds per pass
			// Finished jobs are kept at least the queue's idempotency window.
			if _, err := c.PutQueue(context.Background(), jobs.QueueConfig{Name: jobs.DefaultQueue, IdempotencyWindow: time.Millisecond}); err != nil {
				t.Fatal(err)
			}
			var done []*jobs.Job
			for range 5 {
				done = append(done, enqueue(t, c, jobs.NewJob{Kind: "ok"}))
			}
			w := startWorker(t, st, reg, cfg)
			for _, j := range done {
				waitState(t, c, j.ID, jobs.StateSucceeded)
			}
			// A job that never runs (no handler for its queue) and the
			// newest ID: SQLite keeps the job with the highest ID.
			later := enqueue(t, c, jobs.NewJob{Kind: "ok", Queue: "unworked"})

			deleted := func() int {
				n := 0
				for _, j := range done {
					if _, err := c.Get(context.Background(), j.ID); errors.Is(err, jobs.ErrNotFound) {
						n++
					} else if err != nil {
						t.Fatal(err)
					}
				}
				return n
			}
			if keep {
				// Five maintenance passes after the last job finished, each
				// of which would have deleted them.
				from := w.Stats().MaintenancePasses
				for deadline := time.Now().Add(5 * time.Second); w.Stats().MaintenancePasses < from+5; {
					if time.Now().After(deadline) {
						t.Fatalf("maintenance passes: %d in 5s", w.Stats().MaintenancePasses-from)
					}
					time.Sleep(10 * time.Millisecond)
				}
				if n := deleted(); n != 0 {
					t.Fatalf("%d finished jobs deleted with a negative retention", n)
				}
			} else {
				for deadline := time.Now().Add(5 * time.Second); deleted() != len(done); {
					if time.Now().After(deadline) {
						t.Fatalf("%d of %d finished jobs deleted after 5s with a retention of 100ms", deleted(), len(done))
					}
					time.Sleep(10 * time.Millisecond)
				}
			}
			if j, err := c.Get(context.Background(), later.ID); err != nil || j.State != jobs.StateWaiting {
				t.Errorf("waiting job = %+v, %v; want it kept", j, err)
			}
			if got := w.Stats().Deleted; keep && got != 0 || !keep && got != len(done) {
				t.Errorf("Stats().Deleted = %d", got)
			}
		})
	}
}

// refusingStore refuses (as a store refuses data it cannot keep) every
// Complete batch that holds an outcome of job bad.
type refusingStore struct {
	jobs.Store
	bad atomic.Int64
}

func (s *refusingStore) Complete(ctx context.Context, now time.Time, owner string, os []jobs.Outcome) ([]bool, error) {
	for _, o := range os {
		if o.ID == s.bad.Load() {
			return nil, errors.New("refusingstore: cannot keep this outcome")
		}
	}
	return s.Store.Complete(ctx, now, owner, os)
}

// An outcome the store refuses does not hold back the others for good:
// the worker isolates and gives it up, and the job is recovered after its
// lease, until it has used its attempts.
func TestWorkerRefusedOutcome(t *testing.T) {
	st := &refusingStore{Store: openStore(t)}
	c := jobs.NewClient(st, jobs.ClientConfig{})
	reg := jobs.NewRegistry()
	reg.Handle("ok", jobs.HandlerFunc(func(context.Context, *jobs.Job) error { return nil }))
	var batch []jobs.NewJob
	for range 9 {
		batch = append(batch, jobs.NewJob{Kind: "ok"})
	}
	batch[4].MaxAttempts = 2
	res, err := c.EnqueueMany(context.Background(), jobs.DefaultQueue, batch)
	if err != nil {
		t.Fatal(err)
	}
	bad := res[4].Job
	st.bad.Store(bad.ID)
	cfg := fastWorker()
	cfg.Lease = 600 * time.Millisecond
	cfg.FlushDelay = 50 * time.Millisecond // all nine outcomes in one batch
	w := startWorker(t, st, reg, cfg)
	for i, r := range res {
		if i != 4 {
			waitState(t, c, r.Job.ID, jobs.StateSucceeded)
		}
	}
	// Two leases of 600ms, each recovered by maintenance: failed for good.
	j := waitState(t, c, bad.ID, jobs.StateFailed)
	if j.Attempt != 2 || !strings.Contains(j.LastError, "lease") {
		t.Errorf("refused job = attempt %d, error %q; want failed after 2 attempts whose leases expired", j.Attempt, j.LastError)
	}
	if s := w.Stats(); s.Refused < 2 || s.Recorded[jobs.Succeeded] != 8 {
		t.Errorf("Stats = %+v, want 8 succeeded recorded and the 2 refused outcomes counted", s)
	}
}

// slowFetchStore makes its first non-empty Fetch slow: it returns the jobs
// delay after claiming them, and, when recover is set, only after the
// store's lease recovery (as another node's maintenance would run it) has
// taken back those whose lease, counted from before the call, expired
// meanwhile.
type slowFetchStore struct {
	jobs.Store
	delay   time.Duration
	recover bool
	slowed  atomic.Bool

	mu      sync.Mutex
	slowIDs map[int64]bool // the jobs the slow fetch returned
	started bool           // a handler has started (set by the test)
	renewed bool           // a heartbeat covered slowIDs before any handler started
}

func (s *slowFetchStore) Heartbeat(ctx context.Context, now time.Time, owner string, held []jobs.Attempt, lease time.Duration) ([]int64, []int64, error) {
	s.mu.Lock()
	for _, a := range held {
		if s.slowIDs[a.ID] && !s.started {
			s.renewed = true
		}
	}
	s.mu.Unlock()
	return s.Store.Heartbeat(ctx, now, owner, held, lease)
}

func (s *slowFetchStore) handlerStarted() {
	s.mu.Lock()
	s.started = true
	s.mu.Unlock()
}

func (s *slowFetchStore) Fetch(ctx context.Context, now time.Time, queue, owner string, limit int, lease time.Duration) ([]*jobs.Job, error) {
	js, err := s.Store.Fetch(ctx, now, queue, owner, limit, lease)
	if err != nil || len(js) == 0 || s.slowed.Swap(true) {
		return js, err
	}
	s.mu.Lock()
	s.slowIDs = make(map[int64]bool)
	for _, j := range js {
		s.slowIDs[j.ID] = true
	}
	s.mu.Unlock()
	time.Sleep(s.delay)
	if s.recover {
		if _, err := s.Store.RecoverLeases(ctx, now.Add(lease+time.Millisecond)); err != nil {
			return nil, err
		}
	}
	return js, nil
}

// A fetch that returns after its jobs' leases expired (a slow database)
// does not run jobs that lease recovery has taken back meanwhile, so each
// runs once (recovered=true; without the renewal each ran twice). One that
// returns late but within the lease renews the leases before any job
// starts, and runs every job once, at its first attempt (recovered=false).
// Only the store wrapper recovers leases: the worker's own maintenance is
// kept out of the way, so that a stall on a loaded machine cannot.
func TestSlowFetchRenewsLeases(t *testing.T) {
	for _, recovered := range []bool{true, false} {
		t.Run(fmt.Sprintf("recovered=%v", recovered), func(t *testing.T) {
			cfg := fastWorker()
			cfg.Lease = 300 * time.Millisecond
			cfg.HeartbeatInterval = 100 * time.Millisecond
			cfg.MaintenanceInterval = time.Hour
			delay := 150 * time.Millisecond // past a heartbeat interval, within the lease
			if recovered {
				delay = 400 * time.Millisecond // past the lease
			}
			st := &slowFetchStore{Store: openStore(t), delay: delay, recover: recovered}
			c := jobs.NewClient(st, jobs.ClientConfig{})
			reg := jobs.NewRegistry()
			var runs sync.Map // job ID -> *atomic.Int32
			reg.Handle("count", jobs.HandlerFunc(func(_ context.Context, j *jobs.Job) error {
				st.handlerStarted()
				n, _ := runs.LoadOrStore(j.ID, new(atomic.Int32))
				n.(*atomic.Int32).Add(1)
				return nil
			}))
			var batch []jobs.NewJob
			for range 5 {
				batch = append(batch, jobs.NewJob{Kind: "count"})
			}
			res, err := c.EnqueueMany(context.Background(), jobs.DefaultQueue, batch)
			if err != nil {
				t.Fatal(err)
			}
			w := startWorker(t, st, reg, cfg)
			for _, r := range res {
				j := waitState(t, c, r.Job.ID, jobs.StateSucceeded)
				n, _ := runs.Load(j.ID)
				if got := n.(*atomic.Int32).Load(); got != 1 {
					t.Errorf("job %d ran %d times, want once", j.ID, got)
				}
				wantAttempt := 1
				if recovered {
					wantAttempt = 2 // the first attempt's lease was lost before it started
				}
				if j.Attempt != wantAttempt {
					t.Errorf("job %d succeeded at attempt %d, want %d", j.ID, j.Attempt, wantAttempt)
				}
			}
			want := 0
			if recovered {
				want = len(res)
			}
			if got := w.Stats().LostBeforeStart; got != want {
				t.Errorf("LostBeforeStart = %d, want %d", got, want)
			}
			st.mu.Lock()
			renewed := st.renewed
			st.mu.Unlock()
			if !renewed {
				t.Error("no heartbeat renewed the slow fetch's jobs before they started")
			}
		})
	}
}

// beatStore counts the Heartbeat calls that carry jobs, and fails them
// while failing is set.
type beatStore struct {
	jobs.Store
	beats   atomic.Int32
	failing atomic.Bool
}

// notifyingBeatStore is a beatStore that claims notifications (it sends
// none), as pgstore does.
type notifyingBeatStore struct{ beatStore }

func (s *notifyingBeatStore) Listen(ctx context.Context) (<-chan jobs.Notification, error) {
	ch := make(chan jobs.Notification)
	go func() {
		<-ctx.Done()
		close(ch)
	}()
	return ch, nil
}

func (s *beatStore) Heartbeat(ctx context.Context, now time.Time, owner string, held []jobs.Attempt, lease time.Duration) ([]int64, []int64, error) {
	if len(held) > 0 {
		s.beats.Add(1)
	}
	if s.failing.Load() {
		return nil, nil, fmt.Errorf("%w: test outage", jobs.ErrUnavailable)
	}
	return s.Store.Heartbeat(ctx, now, owner, held, lease)
}

// With a store that notifies cancellations, maintenance extends only the
// leases about to run out (within a heartbeat interval), so a worker that
// holds jobs does not rewrite every one of them each maintenance pass; the
// heartbeat loop extends them all, every HeartbeatInterval.
func TestMaintenanceLeavesFreshLeases(t *testing.T) {
	cfg := fastWorker()
	cfg.Lease = 30 * time.Second
	cfg.HeartbeatInterval = 10 * time.Second // no heartbeat tick during the test
	cfg.MaintenanceInterval = 10 * time.Millisecond
	st := &notifyingBeatStore{beatStore{Store: openStore(t)}}
	c := jobs.NewClient(st, jobs.ClientConfig{})
	reg := jobs.NewRegistry()
	started, release := make(chan struct{}), make(chan struct{})
	reg.Handle("hold", jobs.HandlerFunc(func(ctx context.Context, _ *jobs.Job) error {
		close(started)
		<-release
		return nil
	}))
	j := enqueue(t, c, jobs.NewJob{Kind: "hold"})
	w := startWorker(t, st, reg, cfg)
	<-started
	passes := w.Stats().MaintenancePasses
	deadline := time.Now().Add(10 * time.Second)
	for w.Stats().MaintenancePasses < passes+10 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if got := w.Stats().MaintenancePasses - passes; got < 10 {
		t.Fatalf("only %d maintenance passes in 10s", got)
	}
	if n := st.beats.Load(); n != 0 {
		t.Errorf("%d heartbeats carried jobs while the lease had %v or more left, want none", n, cfg.Lease-cfg.HeartbeatInterval)
	}
	close(release)
	waitState(t, c, j.ID, jobs.StateSucceeded)
}

// While heartbeats fail, a running job keeps going as long as its own
// lease lasts, and its context is canceled once the lease has run out
// (another worker may have the job by then).
func TestFailingHeartbeatsCancelJobsWhoseLeaseRanOut(t *testing.T) {
	cfg := fastWorker()
	cfg.Lease = 2 * time.Second
	cfg.HeartbeatInterval = 50 * time.Millisecond
	cfg.MaintenanceInterval = time.Hour
	st := &beatStore{Store: openStore(t)}
	c := jobs.NewClient(st, jobs.ClientConfig{})
	reg := jobs.NewRegistry()
	type result struct {
		after time.Duration
		cause error
	}
	done := make(chan result, 1)
	reg.Handle("hold", jobs.HandlerFunc(func(ctx context.Context, _ *jobs.Job) error {
		st.failing.Store(true)
		start := time.Now()
		select {
		case <-ctx.Done():
			done <- result{time.Since(start), context.Cause(ctx)}
		case <-time.After(20 * time.Second):
			done <- result{time.Since(start), nil}
		}
		return ctx.Err()
	}))
	enqueue(t, c, jobs.NewJob{Kind: "hold"})
	startWorker(t, st, reg, cfg)
	r := <-done
	if r.cause == nil || !strings.Contains(r.cause.Error(), "lease lost") {
		t.Fatalf("handler context ended after %v with cause %v, want the lease lost", r.after, r.cause)
	}
	// The lease counts from before the fetch, so the job may lose it a
	// little before a whole lease after its handler started; not at the
	// first failed heartbeats.
	if r.after < cfg.Lease/2 {
		t.Errorf("handler canceled %v after it started, with a %v lease", r.after, cfg.Lease)
	}
	if n := st.beats.Load(); n < 2 {
		t.Errorf("%d heartbeats, want several failed ones", n)
	}
	st.failing.Store(false)
}

// With a store that does not notify (SQLite), maintenance passes extend
// every lease, so a cancellation request reaches a running job within a
// pass or two, not only at the next heartbeat tick.
func TestCancelWithoutNotificationsWithinMaintenancePass(t *testing.T) {
	t.Run("NoNotifier", func(t *testing.T) {
		st := &beatStore{Store: openStore(t)}
		testCancelWithinMaintenancePass(t, st, st)
	})
	// A store whose Listen fails gives no notifications either.
	t.Run("ListenFails", func(t *testing.T) {
		st := deafStore{openStore(t)}
		testCancelWithinMaintenancePass(t, st, st)
	})
}

// deafStore is a Notifier that cannot listen.
type deafStore struct{ jobs.Store }

func (deafStore) Listen(context.Context) (<-chan jobs.Notification, error) {
	return nil, fmt.Errorf("%w: test: no LISTEN", jobs.ErrUnavailable)
}

// testCancelWithinMaintenancePass runs a worker on st and cancels its
// running job through canceler (st, or another Store on the same file),
// which must reach the job within a few maintenance passes.
func testCancelWithinMaintenancePass(t *testing.T, st, canceler jobs.Store) {
	cfg := fastWorker()
	cfg.Lease = 30 * time.Second
	cfg.HeartbeatInterval = 10 * time.Second // no heartbeat tick during the test
	cfg.MaintenanceInterval = 20 * time.Millisecond
	c := jobs.NewClient(st, jobs.ClientConfig{})
	reg := jobs.NewRegistry()
	started := make(chan struct{})
	reg.Handle("hold", jobs.HandlerFunc(func(ctx context.Context, _ *jobs.Job) error {
		close(started)
		select {
		case <-ctx.Done():
		case <-time.After(cfg.HeartbeatInterval):
		}
		return ctx.Err()
	}))
	j := enqueue(t, c, jobs.NewJob{Kind: "hold"})
	startWorker(t, st, reg, cfg)
	<-started
	begin := time.Now()
	if _, err := jobs.NewClient(canceler, jobs.ClientConfig{}).Cancel(context.Background(), j.ID); err != nil {
		t.Fatal(err)
	}
	waitState(t, c, j.ID, jobs.StateCanceled)
	if d := time.Since(begin); d >= cfg.HeartbeatInterval/2 {
		t.Errorf("the cancellation took %v, want it within a few %v maintenance passes", d, cfg.MaintenanceInterval)
	}
}

// stallBeatStore delays the answer of the first heartbeat, after armed is
// set, that carries job id at attempt 1: it signals stalled, waits until
// the job's outcome was recorded (recorded), asks the store (which then
// answers that the hold is lost), signals answered, and returns the answer
// only once release is closed. Fetches after armed wait for answered, so
// that the store answers before the job can be fetched again. The next
// heartbeat call closes next: beats are serialized, so by then the worker
// has acted on the delayed answer.
type stallBeatStore struct {
	jobs.Store
	id       atomic.Int64
	armed    atomic.Bool
	stalled  chan struct{}
	recorded chan struct{}
	answered chan struct{}
	release  chan struct{}
	next     chan struct{}
	once     sync.Once
	returned atomic.Bool // the delayed answer was returned
	nextOnce sync.Once
}

func (s *stallBeatStore) Heartbeat(ctx context.Context, now time.Time, owner string, held []jobs.Attempt, lease time.Duration) ([]int64, []int64, error) {
	hold := false
	for _, a := range held {
		if s.armed.Load() && a.ID == s.id.Load() && a.Attempt == 1 {
			s.once.Do(func() { hold = true })
		}
	}
	if !hold {
		if s.returned.Load() {
			s.nextOnce.Do(func() { close(s.next) })
		}
		return s.Store.Heartbeat(ctx, now, owner, held, lease)
	}
	close(s.stalled)
	<-s.recorded
	lost, cancel, err := s.Store.Heartbeat(ctx, now, owner, held, lease)
	close(s.answered)
	<-s.release
	s.returned.Store(true)
	return lost, cancel, err
}

func (s *stallBeatStore) Fetch(ctx context.Context, now time.Time, queue, owner string, limit int, lease time.Duration) ([]*jobs.Job, error) {
	if s.armed.Load() {
		select {
		case <-s.answered:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return s.Store.Fetch(ctx, now, queue, owner, limit, lease)
}

// A heartbeat's answer concerns the hold it was sent for. One sent during
// a job's first run that returns after the same worker started the job
// again reports the job lost (the first run's outcome moved it on), and
// must not cancel the new run: whether the first run failed and the job
// runs at its next attempt (retry), or was withheld and runs at the same
// attempt again (released, which gives the attempt back).
func TestStaleHeartbeatAnswerSparesNextRun(t *testing.T) {
	for _, tc := range []struct {
		name        string
		first       error
		wantAttempt int
	}{
		{"retry", errors.New("first run fails"), 2},
		{"released", withheld{time.Millisecond}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := fastWorker()
			cfg.HeartbeatInterval = 20 * time.Millisecond
			cfg.MaintenanceInterval = time.Hour
			st := &stallBeatStore{Store: openStore(t), stalled: make(chan struct{}), recorded: make(chan struct{}),
				answered: make(chan struct{}), release: make(chan struct{}), next: make(chan struct{})}
			var once sync.Once
			cfg.OnRecorded = func(os []jobs.Outcome, applied []bool) {
				for i, o := range os {
					if o.ID == st.id.Load() && applied[i] {
						once.Do(func() { close(st.recorded) })
					}
				}
			}
			c := jobs.NewClient(st, jobs.ClientConfig{})
			reg := jobs.NewRegistry()
			second := make(chan struct{})
			var runs atomic.Int32
			var secondCause atomic.Pointer[error]
			reg.Handle("twice", jobs.HandlerFunc(func(ctx context.Context, j *jobs.Job) error {
				if runs.Add(1) == 1 {
					st.armed.Store(true)
					select {
					case <-st.stalled: // a heartbeat for this run is in flight
					case <-time.After(10 * time.Second):
						t.Error("no heartbeat carried the first run within 10s")
					}
					return tc.first
				}
				close(second)
				// Run until the worker has acted on the delayed answer (the
				// next heartbeat began), or was canceled by it.
				select {
				case <-ctx.Done():
				case <-st.next:
				case <-time.After(10 * time.Second):
					t.Error("no heartbeat followed the delayed one within 10s")
				}
				if ctx.Err() != nil {
					err := context.Cause(ctx)
					secondCause.Store(&err)
					return ctx.Err()
				}
				return nil
			}))
			j := enqueue(t, c, jobs.NewJob{Kind: "twice", BackoffMin: time.Millisecond, BackoffMax: time.Millisecond})
			st.id.Store(j.ID)
			startWorker(t, st, reg, cfg)
			select {
			case <-second:
			case <-time.After(10 * time.Second):
				close(st.release)
				t.Fatal("the job did not run a second time within 10s")
			}
			close(st.release) // the stale answer arrives: the first run's hold is lost
			done := waitState(t, c, j.ID, jobs.StateSucceeded)
			if p := secondCause.Load(); p != nil {
				t.Fatalf("the second run was canceled: %v", *p)
			}
			if done.Attempt != tc.wantAttempt {
				t.Errorf("succeeded at attempt %d, want %d", done.Attempt, tc.wantAttempt)
			}
		})
	}
}

// calledSet records which jobs' handlers were called.
type calledSet struct {
	mu  sync.Mutex
	ids map[int64]bool
}

func (c *calledSet) add(id int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ids == nil {
		c.ids = map[int64]bool{}
	}
	c.ids[id] = true
}

func (c *calledSet) has(id int64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ids[id]
}

// rateLimitedPair enqueues two jobs in a queue that starts one job every
// 20s: the second is fetched at once and waits for the rate limiter, held
// but not started. Its handler records the call and blocks until its
// context ends.
func rateLimitedPair(t *testing.T, c *jobs.Client, reg *jobs.Registry, called *calledSet) (first, second *jobs.Job) {
	t.Helper()
	if _, err := c.PutQueue(context.Background(), jobs.QueueConfig{Name: "slow", RateLimit: 0.05, RateBurst: 1}); err != nil {
		t.Fatal(err)
	}
	reg.Handle("wait", jobs.HandlerFunc(func(ctx context.Context, j *jobs.Job) error {
		called.add(j.ID)
		if j.Payload != nil && string(j.Payload) == `"quick"` {
			return nil
		}
		<-ctx.Done()
		return ctx.Err()
	}))
	res, err := c.EnqueueMany(context.Background(), "slow", []jobs.NewJob{
		{Kind: "wait", Payload: []byte(`"quick"`)},
		{Kind: "wait"},
	})
	if err != nil {
		t.Fatal(err)
	}
	return res[0].Job, res[1].Job
}

// A cancellation requested while a fetched job waits for its queue's rate
// limit, before its handler starts, ends the job canceled at once, without
// waiting for its turn and without calling the handler. On SQLite the
// request reaches the worker with a maintenance pass's heartbeat. (The
// worker used to drop a request for a job whose handler had not started:
// the job then ran until a later heartbeat, and a quick handler
// succeeded.)
func TestCancelWhileWaitingForRateLimit(t *testing.T) {
	st := openStore(t)
	c := jobs.NewClient(st, jobs.ClientConfig{})
	reg := jobs.NewRegistry()
	var called calledSet
	first, second := rateLimitedPair(t, c, reg, &called)
	startWorker(t, st, reg, fastWorker("slow"))
	waitState(t, c, first.ID, jobs.StateSucceeded)
	waitState(t, c, second.ID, jobs.StateRunning) // fetched, waiting for the limiter
	if _, err := c.Cancel(context.Background(), second.ID); err != nil {
		t.Fatal(err)
	}
	j := waitState(t, c, second.ID, jobs.StateCanceled) // well before its turn, 20s on
	if called.has(second.ID) {
		t.Errorf("the handler of job %d ran after its cancellation was requested (reason %q)", second.ID, j.Reason)
	}
}

// fetchHookStore runs onFetch, if set, after a fetch that returned jobs.
type fetchHookStore struct {
	jobs.Store
	onFetch func(got []*jobs.Job)
}

func (s *fetchHookStore) Fetch(ctx context.Context, now time.Time, queue, owner string, limit int, lease time.Duration) ([]*jobs.Job, error) {
	got, err := s.Store.Fetch(ctx, now, queue, owner, limit, lease)
	if err == nil && len(got) > 0 && s.onFetch != nil {
		s.onFetch(got)
	}
	return got, err
}

// chanNotifyStore delivers the notifications sent on events, as pgstore
// delivers its listener's. A send returns once the worker has received
// the notification.
type chanNotifyStore struct {
	fetchHookStore
	events chan jobs.Notification
}

func (s *chanNotifyStore) Listen(ctx context.Context) (<-chan jobs.Notification, error) {
	out := make(chan jobs.Notification)
	go func() {
		defer close(out)
		for {
			select {
			case ev := <-s.events:
				select {
				case out <- ev:
				case <-ctx.Done():
					return
				}
			case <-ctx.Done():
				return
			}
		}
	}()
	return out, nil
}

// notifyWorker returns worker settings under which only a notification
// can bring a cancellation within the test: heartbeats every 10s, leases
// of 30s (so maintenance, on a notifying store, extends none).
func notifyWorker(queues ...string) jobs.WorkerConfig {
	cfg := fastWorker(queues...)
	cfg.Lease = 30 * time.Second
	cfg.HeartbeatInterval = 10 * time.Second
	return cfg
}

// A cancellation notification for a job that waits for its queue's rate
// limit ends it at once: canceled, handler not called (nor OnAttempt),
// long before the next heartbeat or its turn.
func TestCancelNotificationWhileWaitingForRateLimit(t *testing.T) {
	st := &chanNotifyStore{fetchHookStore: fetchHookStore{Store: openStore(t)}, events: make(chan jobs.Notification)}
	c := jobs.NewClient(st, jobs.ClientConfig{})
	reg := jobs.NewRegistry()
	var called calledSet
	first, second := rateLimitedPair(t, c, reg, &called)
	cfg := notifyWorker("slow")
	var attempted calledSet
	cfg.OnAttempt = func(j *jobs.Job, _ jobs.Outcome, _ time.Duration) { attempted.add(j.ID) }
	startWorker(t, st, reg, cfg)
	waitState(t, c, first.ID, jobs.StateSucceeded)
	waitState(t, c, second.ID, jobs.StateRunning)
	begin := time.Now()
	if _, err := c.Cancel(context.Background(), second.ID); err != nil {
		t.Fatal(err)
	}
	st.events <- jobs.Notification{CancelID: second.ID}
	waitState(t, c, second.ID, jobs.StateCanceled)
	if d := time.Since(begin); d >= cfg.HeartbeatInterval/2 {
		t.Errorf("the cancellation took %v; the notification was not applied", d)
	}
	if called.has(second.ID) {
		t.Errorf("the handler of job %d ran after its cancellation was requested", second.ID)
	}
	if !attempted.has(first.ID) || attempted.has(second.ID) {
		t.Errorf("OnAttempt for the job that ran: %v, for the one that never started: %v", attempted.has(first.ID), attempted.has(second.ID))
	}
}

// A cancellation notification that arrives after a fetch claimed the job
// but before the worker holds it (here: while the fetch call is still
// returning) is kept and applied when the job is dispatched: the job ends
// canceled without its handler running.
func TestCancelNotificationBeforeDispatch(t *testing.T) {
	st := &chanNotifyStore{fetchHookStore: fetchHookStore{Store: openStore(t)}, events: make(chan jobs.Notification)}
	c := jobs.NewClient(st, jobs.ClientConfig{})
	reg := jobs.NewRegistry()
	var called calledSet
	reg.Handle("wait", jobs.HandlerFunc(func(ctx context.Context, j *jobs.Job) error {
		called.add(j.ID)
		<-ctx.Done()
		return ctx.Err()
	}))
	j := enqueue(t, c, jobs.NewJob{Kind: "wait"})
	var once sync.Once
	st.onFetch = func(got []*jobs.Job) {
		once.Do(func() {
			if _, err := c.Cancel(context.Background(), j.ID); err != nil {
				t.Error(err)
			}
			// The relay hands on one notification at a time: once the
			// third send returns, the worker has received the second, so
			// it has done with the cancellation before this fetch returns.
			st.events <- jobs.Notification{CancelID: j.ID}
			st.events <- jobs.Notification{}
			st.events <- jobs.Notification{}
		})
	}
	cfg := notifyWorker()
	begin := time.Now()
	startWorker(t, st, reg, cfg)
	waitState(t, c, j.ID, jobs.StateCanceled)
	if d := time.Since(begin); d >= cfg.HeartbeatInterval/2 {
		t.Errorf("the cancellation took %v; the early notification was lost", d)
	}
	if called.has(j.ID) {
		t.Errorf("the handler ran after the cancellation was requested")
	}
}

// A cancellation requested while a slow fetch is in flight reaches the
// worker with the renewal of that fetch's leases (fetchHookStore hides
// sqlitestore's notifications), and the job ends canceled without its
// handler running.
func TestCancelDuringSlowFetch(t *testing.T) {
	cfg := fastWorker()
	cfg.Lease = 3 * time.Second
	cfg.HeartbeatInterval = 100 * time.Millisecond
	cfg.MaintenanceInterval = time.Hour
	st := &fetchHookStore{Store: openStore(t)}
	c := jobs.NewClient(st, jobs.ClientConfig{})
	reg := jobs.NewRegistry()
	var called calledSet
	reg.Handle("x", jobs.HandlerFunc(func(_ context.Context, j *jobs.Job) error {
		called.add(j.ID)
		return nil
	}))
	j := enqueue(t, c, jobs.NewJob{Kind: "x"})
	var once sync.Once
	st.onFetch = func([]*jobs.Job) {
		once.Do(func() {
			if _, err := c.Cancel(context.Background(), j.ID); err != nil {
				t.Error(err)
			}
			time.Sleep(2 * cfg.HeartbeatInterval) // slow: the worker renews the leases
		})
	}
	startWorker(t, st, reg, cfg)
	waitState(t, c, j.ID, jobs.StateCanceled)
	if called.has(j.ID) {
		t.Errorf("the handler ran after the cancellation was requested")
	}
}

// A job whose deadline passes while it waits for its queue's rate limit
// ends expired at its deadline, without its handler running.
func TestDeadlinePassesWhileWaitingForRateLimit(t *testing.T) {
	st := openStore(t)
	c := jobs.NewClient(st, jobs.ClientConfig{})
	reg := jobs.NewRegistry()
	var called calledSet
	reg.Handle("wait", jobs.HandlerFunc(func(ctx context.Context, j *jobs.Job) error {
		called.add(j.ID)
		return nil
	}))
	if _, err := c.PutQueue(context.Background(), jobs.QueueConfig{Name: "slow", RateLimit: 0.05, RateBurst: 1}); err != nil {
		t.Fatal(err)
	}
	res, err := c.EnqueueMany(context.Background(), "slow", []jobs.NewJob{
		{Kind: "wait"},
		{Kind: "wait", Deadline: time.Now().Add(2 * time.Second)},
	})
	if err != nil {
		t.Fatal(err)
	}
	startWorker(t, st, reg, fastWorker("slow"))
	j := waitState(t, c, res[1].Job.ID, jobs.StateExpired) // its turn would come 20s on
	if called.has(j.ID) {
		t.Error("the handler ran after the deadline")
	}
	// Ended by the worker at its start (attempt 1), not released to
	// waiting (attempt given back) for maintenance to expire.
	if j.Reason != "deadline passed before the job could run" || j.Attempt != 1 {
		t.Errorf("reason %q, attempt %d", j.Reason, j.Attempt)
	}
}

// A job scheduled for later, and a retry's backoff, start when they come
// due, not at the fetch loop's next poll: with these poll intervals a loop
// that only polled would find a job due 1.6s after it went idle at about
// 3.15s (polls at 0, 50, 150, 350, 750, 1550, 3150ms), 1.55s late. The
// store (jobs.Lookahead) tells the loop when to look.
func TestScheduledJobsStartOnTime(t *testing.T) {
	const delay, late = 1600 * time.Millisecond, 750 * time.Millisecond
	cfg := fastWorker()
	cfg.PollInterval, cfg.MaxPollInterval = 50*time.Millisecond, 5*time.Second
	t.Run("RunAt", func(t *testing.T) {
		st := openStore(t)
		c := jobs.NewClient(st, jobs.ClientConfig{})
		started := make(chan time.Time, 1)
		reg := jobs.NewRegistry()
		reg.Handle("k", jobs.HandlerFunc(func(context.Context, *jobs.Job) error { started <- time.Now(); return nil }))
		runAt := time.Now().Add(delay)
		enqueue(t, c, jobs.NewJob{Kind: "k", RunAt: runAt})
		startWorker(t, st, reg, cfg)
		got := <-started
		if d := got.Sub(runAt); d < 0 || d > late {
			t.Errorf("job started %v after its RunAt, want 0 to %v", d, late)
		}
	})
	t.Run("Retry", func(t *testing.T) {
		st := openStore(t)
		c := jobs.NewClient(st, jobs.ClientConfig{})
		started := make(chan time.Time, 2)
		reg := jobs.NewRegistry()
		reg.Handle("k", jobs.HandlerFunc(func(_ context.Context, j *jobs.Job) error {
			started <- time.Now()
			if j.Attempt == 1 {
				return retryLater{delay}
			}
			return nil
		}))
		startWorker(t, st, reg, cfg)
		j := enqueue(t, c, jobs.NewJob{Kind: "k", MaxAttempts: 2, BackoffMin: time.Millisecond, BackoffMax: time.Hour})
		first := <-started
		second := <-started
		if d := second.Sub(first); d < delay || d > delay+late {
			t.Errorf("retry started %v after the first attempt, want %v to %v", d, delay, delay+late)
		}
		waitState(t, c, j.ID, jobs.StateSucceeded)
	})
	t.Run("RetryAfterLongRun", func(t *testing.T) {
		// While an attempt runs for 2s the fetch loop, with free slots,
		// backs off to a wait that ends at 3150ms; the retry comes due at
		// about 2.3s. Recording the Retry wakes the loop to look again.
		const run, retry = 2 * time.Second, 300 * time.Millisecond
		st := openStore(t)
		c := jobs.NewClient(st, jobs.ClientConfig{})
		started := make(chan time.Time, 2)
		ended := make(chan time.Time, 1)
		reg := jobs.NewRegistry()
		reg.Handle("k", jobs.HandlerFunc(func(_ context.Context, j *jobs.Job) error {
			started <- time.Now()
			if j.Attempt == 1 {
				time.Sleep(run)
				ended <- time.Now()
				return retryLater{retry}
			}
			return nil
		}))
		j := enqueue(t, c, jobs.NewJob{Kind: "k", MaxAttempts: 2, BackoffMin: time.Millisecond, BackoffMax: time.Hour})
		startWorker(t, st, reg, cfg)
		<-started
		end := <-ended
		second := <-started
		if d := second.Sub(end); d < retry || d > retry+late {
			t.Errorf("retry started %v after the first attempt ended, want %v to %v", d, retry, retry+late)
		}
		waitState(t, c, j.ID, jobs.StateSucceeded)
	})
}

// On SQLite the store's in-process notifications (sqlitestore's Listen)
// wake an idle worker for a job enqueued through the same Store, and carry
// a cancellation to the running job at once. The poll, heartbeat and
// maintenance intervals here are far longer than the latencies asserted:
// without the notifications each step would wait for one of them (a poll
// due 1.55s after the enqueue, a maintenance pass or heartbeat 10s away).
// (A job enqueued for later: TestScheduledEnqueuesDoNotFetch.)
func TestLocalNotificationsWakeWorker(t *testing.T) {
	const late = 500 * time.Millisecond
	cfg := fastWorker()
	cfg.PollInterval, cfg.MaxPollInterval = 50*time.Millisecond, 10*time.Second
	cfg.Lease, cfg.HeartbeatInterval, cfg.MaintenanceInterval = 30*time.Second, 10*time.Second, 10*time.Second
	st := &fetchCountStore{Store: openStore(t)}
	c := jobs.NewClient(st, jobs.ClientConfig{})
	started := make(chan time.Time, 2)
	canceled := make(chan time.Time, 1)
	reg := jobs.NewRegistry()
	reg.Handle("k", jobs.HandlerFunc(func(context.Context, *jobs.Job) error { started <- time.Now(); return nil }))
	reg.Handle("hold", jobs.HandlerFunc(func(ctx context.Context, _ *jobs.Job) error {
		started <- time.Now()
		<-ctx.Done()
		canceled <- time.Now()
		return ctx.Err()
	}))
	startWorker(t, st, reg, cfg)
	st.waitIdle(6) // polls at 0, 50, 150, 350, 750, 1550; next at 3150ms

	at := time.Now()
	enqueue(t, c, jobs.NewJob{Kind: "k"})
	if d := (<-started).Sub(at); d > late {
		t.Errorf("a job enqueued while the worker idled started after %v, want under %v", d, late)
	}

	j := enqueue(t, c, jobs.NewJob{Kind: "hold"})
	<-started
	at = time.Now()
	if _, err := c.Cancel(context.Background(), j.ID); err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-canceled:
		if d := got.Sub(at); d > late {
			t.Errorf("the running job's context ended %v after Cancel, want under %v", d, late)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the running job's context did not end within 5s of Cancel")
	}
	waitState(t, c, j.ID, jobs.StateCanceled)
}

// Another process writing the same SQLite file notifies nobody here
// (sqlitestore is a LocalNotifier), so a cancellation requested through it
// still reaches the running job within a maintenance pass, as on a store
// without notifications, not at the next heartbeat.
func TestCancelFromAnotherProcessWithinMaintenancePass(t *testing.T) {
	path := filepath.Join(t.TempDir(), "jobs.db")
	open := func() *sqlitestore.Store {
		st, err := sqlitestore.Open(context.Background(), path, sqlitestore.Config{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		return st
	}
	st, other := open(), open() // other stands for another process
	testCancelWithinMaintenancePass(t, st, other)
}

// fetchCountStore counts Fetch calls. It embeds the *sqlitestore.Store, so
// that the worker still sees its optional interfaces (Notifier, Lookahead).
type fetchCountStore struct {
	*sqlitestore.Store
	fetches atomic.Int64
}

func (s *fetchCountStore) Fetch(ctx context.Context, now time.Time, queue, owner string, limit int, lease time.Duration) ([]*jobs.Job, error) {
	defer s.fetches.Add(1)
	return s.Store.Fetch(ctx, now, queue, owner, limit, lease)
}

// waitIdle returns once a worker started on a fresh store has made n
// fetches, and 50ms more: its fetch loop, with nothing to claim, is then in
// the wait that follows the nth poll.
func (s *fetchCountStore) waitIdle(n int64) {
	for s.fetches.Load() < n {
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond)
}

// Jobs enqueued for later wake an idle worker only to shorten its wait
// (the notification carries their RunAt): it fetches when they come due,
// not once per enqueue, and not at its next poll.
func TestScheduledEnqueuesDoNotFetch(t *testing.T) {
	cfg := fastWorker()
	cfg.PollInterval, cfg.MaxPollInterval = 50*time.Millisecond, 10*time.Second
	st := &fetchCountStore{Store: openStore(t)}
	c := jobs.NewClient(st, jobs.ClientConfig{})
	started := make(chan time.Time, 1)
	reg := jobs.NewRegistry()
	reg.Handle("k", jobs.HandlerFunc(func(context.Context, *jobs.Job) error { started <- time.Now(); return nil }))
	startWorker(t, st, reg, cfg)
	// Polls at 0, 50, 150, 350, 750 and 1550ms; then the loop waits until
	// 3150ms (its lookahead finds nothing).
	st.waitIdle(6)
	before := st.fetches.Load()
	runAt := time.Now().Add(300 * time.Millisecond)
	for i := range 200 {
		enqueue(t, c, jobs.NewJob{Kind: "k", RunAt: runAt.Add(time.Duration(i) * time.Hour)})
	}
	// Found only at the poll, it would start about 1.2s late.
	if got := <-started; got.Sub(runAt) < 0 || got.Sub(runAt) > 500*time.Millisecond {
		t.Errorf("the first scheduled job started %v after its RunAt, want 0 to 500ms", got.Sub(runAt))
	}
	if n := st.fetches.Load() - before; n > 10 {
		t.Errorf("%d fetches for 200 scheduled enqueues and one due job, want a few", n)
	}
}

// With a clock that does not move (WorkerConfig.Now), a job scheduled just
// after it is never claimable; the loop must still wait PollInterval
// between fetches rather than spin on a wait of a microsecond.
func TestLookaheadDoesNotSpin(t *testing.T) {
	frozen := time.Now()
	cfg := fastWorker()
	cfg.PollInterval, cfg.MaxPollInterval = 20*time.Millisecond, 200*time.Millisecond
	cfg.Now = func() time.Time { return frozen }
	st := &fetchCountStore{Store: openStore(t)}
	c := jobs.NewClient(st, jobs.ClientConfig{Now: cfg.Now})
	enqueue(t, c, jobs.NewJob{Kind: "k", RunAt: frozen.Add(time.Microsecond)})
	startWorker(t, st, jobs.NewRegistry(), cfg)
	time.Sleep(time.Second)
	// At most one fetch per PollInterval: 50 in a second.
	if n := st.fetches.Load(); n > 75 {
		t.Errorf("%d fetches in one second with a 20ms PollInterval", n)
	}
}

// slowFirstCompleteStore returns from its first Complete call only 2s
// after the outcomes were written.
type slowFirstCompleteStore struct {
	*sqlitestore.Store
	once sync.Once
}

func (s *slowFirstCompleteStore) Complete(ctx context.Context, now time.Time, owner string, outcomes []jobs.Outcome) ([]bool, error) {
	applied, err := s.Store.Complete(ctx, now, owner, outcomes)
	s.once.Do(func() { time.Sleep(2 * time.Second) })
	return applied, err
}

// While the write of a retry's outcome has committed but not returned,
// the same worker may fetch the job again and finish that attempt too.
// Recording the first outcome must not drop the new attempt's hold: the
// second outcome's record then wakes the fetch loop for the third attempt
// (due at once). Had it been dropped, the third attempt would wait for the
// loop's next poll, at about 3.2s.
func TestRecordKeepsNewerHold(t *testing.T) {
	cfg := fastWorker()
	cfg.PollInterval, cfg.MaxPollInterval = 50*time.Millisecond, 10*time.Second
	st := &slowFirstCompleteStore{Store: openStore(t)}
	c := jobs.NewClient(st, jobs.ClientConfig{})
	var mu sync.Mutex
	var starts []time.Time
	reg := jobs.NewRegistry()
	reg.Handle("k", jobs.HandlerFunc(func(_ context.Context, j *jobs.Job) error {
		mu.Lock()
		starts = append(starts, time.Now())
		mu.Unlock()
		if j.Attempt < 3 {
			return errors.New("again")
		}
		return nil
	}))
	j := enqueue(t, c, jobs.NewJob{Kind: "k", MaxAttempts: 3, BackoffMin: time.Microsecond, BackoffMax: time.Microsecond})
	startWorker(t, st, reg, cfg)
	waitState(t, c, j.ID, jobs.StateSucceeded)
	mu.Lock()
	defer mu.Unlock()
	if len(starts) != 3 {
		t.Fatalf("%d attempts, want 3", len(starts))
	}
	if d := starts[2].Sub(starts[0]); d > 2500*time.Millisecond {
		t.Errorf("the third attempt started %v after the first, want about 2s (the slow write), not the next poll", d)
	}
}

// stallOnceBeatStore blocks the heartbeats that start after armed is set
// until release is closed (or their ctx ends).
type stallOnceBeatStore struct {
	*sqlitestore.Store
	armed   atomic.Bool
	release chan struct{}
}

func (s *stallOnceBeatStore) Heartbeat(ctx context.Context, now time.Time, owner string, held []jobs.Attempt, lease time.Duration) ([]int64, []int64, error) {
	if s.armed.Load() {
		select {
		case <-s.release:
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		}
	}
	return s.Store.Heartbeat(ctx, now, owner, held, lease)
}

// A job whose lease this worker lost (its heartbeat stalled; another
// node's maintenance recovered the job) and that this worker then fetched
// again has two attempts here for a while. The older one must neither
// take the newer one's hold with it when it ends (the newer one would get
// no heartbeats, and be recovered and run a third time while it runs),
// nor run on: the new fetch proves its lease is gone.
func TestRefetchedJobKeepsNewHold(t *testing.T) {
	cfg := fastWorker()
	cfg.Lease, cfg.HeartbeatInterval, cfg.MaintenanceInterval = 600*time.Millisecond, 100*time.Millisecond, time.Hour
	st := &stallOnceBeatStore{Store: openStore(t), release: make(chan struct{})}
	c := jobs.NewClient(st, jobs.ClientConfig{})
	first, second, done := make(chan struct{}), make(chan struct{}), make(chan struct{})
	firstEnded := make(chan error, 1)
	var secondOnce sync.Once // a later attempt only runs if the test fails
	reg := jobs.NewRegistry()
	reg.Handle("k", jobs.HandlerFunc(func(ctx context.Context, j *jobs.Job) error {
		if j.Attempt == 1 {
			close(first)
			select {
			case <-ctx.Done():
				firstEnded <- context.Cause(ctx)
			case <-second: // had it not been stopped, it would end here, "successfully"
				firstEnded <- nil
			}
			return nil
		}
		secondOnce.Do(func() { close(second) })
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-done:
			return nil
		}
	}))
	j := enqueue(t, c, jobs.NewJob{Kind: "k", MaxAttempts: 5})
	startWorker(t, st, reg, cfg)
	<-first
	st.armed.Store(true)
	time.Sleep(cfg.Lease + 300*time.Millisecond) // the lease runs out while the heartbeat stalls
	if n, err := st.RecoverLeases(context.Background(), time.Now()); err != nil || n != 1 {
		t.Fatalf("RecoverLeases = %d, %v; want the job back", n, err)
	}
	<-second // fetched again by the same worker
	select {
	case cause := <-firstEnded:
		if cause == nil {
			t.Errorf("the first attempt ran on after the job was fetched again")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the first attempt did not end")
	}
	st.armed.Store(false)
	close(st.release)
	// The second attempt's lease must be kept: after two leases' time
	// nothing is recoverable, and the job is still running, attempt 2.
	time.Sleep(2 * cfg.Lease)
	if n, err := st.RecoverLeases(context.Background(), time.Now()); err != nil || n != 0 {
		t.Errorf("RecoverLeases = %d, %v; want 0: the second attempt's lease lapsed", n, err)
	}
	if got, err := c.Get(context.Background(), j.ID); err != nil || got.State != jobs.StateRunning || got.Attempt != 2 {
		t.Errorf("job = %+v, %v; want running, attempt 2", got, err)
	}
	close(done)
	waitState(t, c, j.ID, jobs.StateSucceeded)
}

// TestQueueStoredWithLongMaxWait: a queue stored before MaxWait had its
// bound (here written into the database directly) still starts, reloads,
// pauses and waits: its MaxWait counts as MaxQueueWait.
func TestQueueStoredWithLongMaxWait(t *testing.T) {
	path := filepath.Join(t.TempDir(), "jobs.db")
	ctx := context.Background()
	st, err := sqlitestore.Open(ctx, path, sqlitestore.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	c := jobs.NewClient(st, jobs.ClientConfig{})
	if _, err := c.PutQueue(ctx, jobs.QueueConfig{Name: "old", Policy: jobs.FullWait, MaxWait: jobs.MaxQueueWait}); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`UPDATE queues SET max_wait = ? WHERE name = 'old'`, int64(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if q, err := c.Queue(ctx, "old"); err != nil || q.MaxWait != time.Hour {
		t.Fatalf("stored queue: %+v, %v, want MaxWait 1h", q, err)
	}
	reg := jobs.NewRegistry()
	reg.Handle("x", jobs.HandlerFunc(func(context.Context, *jobs.Job) error { return nil }))
	startWorker(t, st, reg, fastWorker("old")) // fails the test if Start fails
	q, err := c.SetPaused(ctx, "old", true)
	if err != nil || !q.Paused || q.MaxWait != jobs.MaxQueueWait {
		t.Fatalf("SetPaused: %+v, %v, want paused with MaxWait %v", q, err, jobs.MaxQueueWait)
	}
}
