package chaos_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sluicehq/sluice/chaos"
	"github.com/sluicehq/sluice/jobs"
	"github.com/sluicehq/sluice/jobs/pgstore"
)

// pgURL returns the server the PostgreSQL tests use: $SLUICE_TEST_PG.
// Without it the test is skipped, or fails when $SLUICE_TEST_PG_REQUIRED
// is set (so that CI never skips them silently).
func pgURL(t *testing.T) string {
	t.Helper()
	u := os.Getenv("SLUICE_TEST_PG")
	if u == "" {
		const hint = "set SLUICE_TEST_PG=postgres://postgres@127.0.0.1:5432/test?sslmode=disable to run the PostgreSQL chaos tests"
		if os.Getenv("SLUICE_TEST_PG_REQUIRED") != "" {
			t.Fatal("SLUICE_TEST_PG_REQUIRED is set but SLUICE_TEST_PG is not: " + hint)
		}
		t.Skip(hint)
	}
	return u
}

// pgSchema returns the name of a schema nobody uses; it is dropped, with
// everything in it, when the test ends (kept for a post-mortem when the
// test failed and CHAOS_DIR is set). Call it before anything that uses
// the schema registers its own cleanup, so that the drop runs last.
func pgSchema(t *testing.T, url string) string {
	t.Helper()
	schema := fmt.Sprintf("sluice_chaos_%012x", rand.Uint64()&(1<<48-1))
	t.Cleanup(func() {
		if t.Failed() && os.Getenv("CHAOS_DIR") != "" {
			t.Logf("schema %s kept for a post-mortem: DROP SCHEMA %s CASCADE when done", schema, schema)
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, url)
		if err != nil {
			t.Errorf("dropping schema %s: %v", schema, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, `DROP SCHEMA IF EXISTS "`+schema+`" CASCADE`); err != nil {
			t.Errorf("dropping schema %s: %v", schema, err)
		}
	})
	return schema
}

// openPG opens a store on url in schema (creating it), closed at cleanup.
func openPG(t *testing.T, url, schema string, cfg pgstore.Config) *pgstore.Store {
	t.Helper()
	cfg.Schema = schema
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := pgstore.Open(ctx, url, cfg)
	if err != nil {
		t.Fatalf("pgstore.Open: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// multiNodeConfig is the plan of a multi-node run.
type multiNodeConfig struct {
	jobs       int
	kills      int           // SIGKILLs of node 0, each followed by a restart
	terms      int           // SIGTERMs of node 1, each followed by a restart
	minGap     time.Duration // between two events ...
	maxGap     time.Duration // ... a seeded random time in this range
	finalLimit time.Duration // bound on the wait for every job to end
}

func defaultMultiNode() multiNodeConfig {
	cfg := multiNodeConfig{
		jobs:       3000,
		kills:      3,
		terms:      2,
		minGap:     300 * time.Millisecond,
		maxGap:     1200 * time.Millisecond,
		finalLimit: 40 * time.Second,
	}
	if testing.Short() {
		cfg.jobs, cfg.kills, cfg.terms = 600, 2, 1
	}
	return cfg
}

// node is one of the three engines: a succession of incarnations.
type node struct {
	name string
	cur  *engine // the running incarnation
	incs []int   // every incarnation, in order
}

// TestMultiNodePostgres runs three engine processes on one PostgreSQL
// schema (each its own worker; LISTEN/NOTIFY wakes them, the leader row
// picks the one that recovers expired leases) while the test enqueues jobs
// through its own store. Node 0 is killed with SIGKILL and restarted a
// few times, node 1 stopped with SIGTERM and restarted, node 2 runs
// throughout; then the three finish every job, stop gracefully, and the
// Checker judges the effect log: nothing lost, a job run again only when
// a kill explains it, no attempt used by a graceful stop.
func TestMultiNodePostgres(t *testing.T) {
	url := pgURL(t)
	schema := pgSchema(t, url)
	st := openPG(t, url, schema, pgstore.Config{})
	t.Setenv(enginePGSchemaEnv, schema) // the engines inherit it: they open url in schema

	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("CHAOS_SEED"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("CHAOS_SEED: %v", err)
		}
		seed = n
	}
	t.Logf("seed %d (repeat the schedule with CHAOS_SEED=%d), schema %s", seed, seed, schema)
	dir := t.TempDir()
	if keep := os.Getenv("CHAOS_DIR"); keep != "" {
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
		db:   url,
		log:  filepath.Join(dir, "effects.log"),
		seed: seed,
		rng:  rand.New(rand.NewPCG(seed, 0x5eed)),
		cli:  jobs.NewClient(st, jobs.ClientConfig{}),
	}
	elog, err := chaos.OpenEffectLog(l.log)
	if err != nil {
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
	})

	cfg := defaultMultiNode()
	began := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
	defer cancel()

	// Incarnation numbers are unique across the nodes: the checker keys
	// on them.
	nextInc := 0
	startNode := func(n *node) {
		nextInc++
		n.cur = l.start(ctx, nextInc)
		n.incs = append(n.incs, nextInc)
	}
	nodes := make([]*node, 3)
	for i := range nodes {
		nodes[i] = &node{name: fmt.Sprintf("node%d", i)}
		startNode(nodes[i])
	}

	// The schedule: kills of node 0 and stops of node 1, alternating.
	var events []syscall.Signal
	for k, s := 0, 0; k < cfg.kills || s < cfg.terms; {
		if k < cfg.kills {
			events = append(events, syscall.SIGKILL)
			k++
		}
		if s < cfg.terms {
			events = append(events, syscall.SIGTERM)
			s++
		}
	}
	// Spread the jobs over the schedule (a restart takes about a second
	// under -race): see loop.run for the arithmetic.
	span := time.Duration(len(events)) * (time.Second + (cfg.minGap+cfg.maxGap)/2)
	pause := 2 * span / time.Duration(max(1, cfg.jobs*2/9))
	type result struct {
		n   int
		err error
	}
	enq := make(chan result, 1) // the enqueuer's only send
	go func() {
		n, err := l.enqueue(ctx, cfg.jobs, pause, seed)
		enq <- result{n, err}
	}()
	received := false
	defer func() { // after a Fatal: stop the enqueuer and wait for it
		if !received {
			cancel()
			<-enq
		}
	}()

	busyKills := 0
	for _, sig := range events {
		gap := cfg.minGap + time.Duration(l.rng.Int64N(int64(cfg.maxGap-cfg.minGap)+1))
		time.Sleep(gap)
		n := nodes[1]
		if sig == syscall.SIGKILL {
			n = nodes[0]
			// Strike while the victim holds jobs, so that the kill has
			// work in flight to lose (bounded: kill anyway after 2s).
			if waitHolding(ctx, st, n.cur.inc, 2*time.Second) {
				busyKills++
			}
		}
		l.end(n.cur, sig)
		startNode(n)
	}

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
	err = waitQueueIdle(idleCtx, st)
	idleCancel()
	if err != nil {
		t.Fatalf("after the schedule: %v", err)
	}
	for _, n := range nodes {
		l.end(n.cur, syscall.SIGTERM)
	}
	elapsed := time.Since(began)

	lg, err := chaos.ReadLogFile(l.log)
	if err != nil {
		t.Fatal(err)
	}
	final, err := chaos.Snapshot(ctx, st, "")
	if err != nil {
		t.Fatal(err)
	}
	rep := chaos.Checker{}.Check(lg, final)

	// Who ran what: done lines per node.
	nodeOf := make(map[int]int)
	for i, n := range nodes {
		for _, inc := range n.incs {
			nodeOf[inc] = i
		}
	}
	ran := make([]int, len(nodes))
	for _, e := range lg.Events {
		if e.Op == chaos.OpDone {
			ran[nodeOf[e.Incarnation]]++
		}
	}
	retried := 0
	for _, j := range final {
		if j.Attempt > 1 {
			retried++
		}
	}
	var per []string
	for i, n := range nodes {
		per = append(per, fmt.Sprintf("%s %d (incarnations %v)", n.name, ran[i], n.incs))
	}
	t.Logf("multi-node: %d jobs accepted, 3 nodes, %d SIGKILLs (%d while the victim held jobs), %d SIGTERMs, elapsed %v",
		r.n, cfg.kills, busyKills, cfg.terms, elapsed.Round(time.Millisecond))
	t.Logf("jobs run per node: %s", strings.Join(per, ", "))
	t.Logf("allowed duplicates %d %v; runs in flight at kills %d; jobs that needed more than one attempt %d",
		len(rep.AllowedDuplicates), rep.AllowedDuplicates, rep.InFlightAtKill, retried)
	t.Logf("report: %s", rep)

	// An unexplained duplicate here is a lease lost by a live node: its
	// job was recovered and run again while the node was still going to
	// record it (a stalled heartbeat or completion, as a lock wait of a
	// second or more would cause with a 1s lease).
	if err := rep.Err(); err != nil {
		t.Fatal(err)
	}
	if rep.Accepted != cfg.jobs || rep.Completed != cfg.jobs {
		t.Errorf("accepted %d, completed %d, want %d", rep.Accepted, rep.Completed, cfg.jobs)
	}
	if want := 3 + cfg.kills + cfg.terms; rep.Incarnations != want || rep.Kills != cfg.kills || rep.Stops != want-cfg.kills {
		t.Errorf("incarnations %d (kills %d, stops %d), want %d (kills %d, stops %d)",
			rep.Incarnations, rep.Kills, rep.Stops, want, cfg.kills, want-cfg.kills)
	}
	if len(rep.Interrupted) != 0 {
		// The drain deadline (3s) is far above a handler's 20ms.
		t.Errorf("runs interrupted by a graceful stop: %v", rep.Interrupted)
	}
	if len(rep.Unacknowledged) != 0 {
		t.Errorf("jobs run but never acknowledged to the enqueuer: %v", rep.Unacknowledged)
	}
	if retried+len(rep.AllowedDuplicates) == 0 {
		// Each kill waited for the victim to hold a job: a recovered lease
		// shows as a job at attempt 2 or more.
		t.Errorf("no kill cost a job an attempt or a rerun: the run did not test what it should")
	}
	for i, n := range ran {
		if n == 0 {
			t.Errorf("%s ran no job: the work was not shared", nodes[i].name)
		}
	}
}

// waitHolding waits up to limit until incarnation inc's worker holds a
// running job, and reports whether it did.
func waitHolding(ctx context.Context, st *pgstore.Store, inc int, limit time.Duration) bool {
	owner := fmt.Sprintf("chaos-engine-%d", inc) // engineMain's worker ID
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	for {
		running, err := st.List(ctx, jobs.ListFilter{State: jobs.StateRunning, Limit: 1000})
		if err == nil && slices.ContainsFunc(running, func(j *jobs.Job) bool { return j.LeaseOwner == owner }) {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// waitQueueIdle waits until the default queue has no waiting and no
// running job.
func waitQueueIdle(ctx context.Context, st jobs.Store) error {
	for {
		s, err := st.QueueStats(ctx, jobs.DefaultQueue, time.Now())
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
