package pgstore

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sluicehq/sluice/jobs"
)

// lockQueue holds the row lock of queue (as an Enqueue on another node
// would) until release is called.
func lockQueue(t *testing.T, s *Store, queue string) (release func()) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, testURL(t))
	if err != nil {
		t.Fatal(err)
	}
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, expand(`SELECT 1 FROM {s}.queues WHERE name = $1 FOR UPDATE`, s.schema), queue); err != nil {
		t.Fatal(err)
	}
	released := false
	release = func() {
		if released {
			return
		}
		released = true
		if err := tx.Rollback(ctx); err != nil {
			t.Error(err)
		}
		conn.Close(ctx)
	}
	t.Cleanup(release)
	return release
}

// enqState reports how many Enqueue calls of queue wait for their turn
// and whether a round runs (or is about to).
func enqState(s *Store, queue string) (pending int, busy bool) {
	s.enqMu.Lock()
	defer s.enqMu.Unlock()
	q := s.enqQueues[queue]
	if q == nil {
		return 0, false
	}
	return len(q.pending), q.busy
}

// waitEnqState waits until queue's calls are in the given state.
func waitEnqState(t *testing.T, s *Store, queue string, pending int, busy bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; {
		p, b := enqState(s, queue)
		if p == pending && b == busy {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("Enqueue calls of %q: %d pending, busy %v; want %d, %v", queue, p, b, pending, busy)
		}
		time.Sleep(time.Millisecond)
	}
}

type enqOut struct {
	res []jobs.EnqueueResult
	err error
}

// goEnqueue starts an Enqueue call and returns where its outcome arrives.
func goEnqueue(ctx context.Context, t *testing.T, s *Store, queue string, ns ...jobs.NewJob) <-chan enqOut {
	t.Helper()
	batch := normalized(t, t0, queue, ns...)
	ch := make(chan enqOut, 1)
	go func() {
		res, err := s.Enqueue(ctx, t0, queue, batch)
		ch <- enqOut{res, err}
	}()
	return ch
}

// xmin returns the ID of the transaction that inserted job id.
func xmin(t *testing.T, s *Store, id int64) string {
	t.Helper()
	var x string
	err := s.pool.QueryRow(context.Background(), expand(`SELECT xmin::text FROM {s}.jobs WHERE id = $1`, s.schema), id).Scan(&x)
	if err != nil {
		t.Fatal(err)
	}
	return x
}

// Concurrent Enqueue calls into one queue share a transaction, and each
// keeps the outcome it would have had alone, in arrival order.
func TestEnqueueGroupCommit(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := open(t, Config{})
	if err := s.PutQueue(ctx, jobs.QueueConfig{Name: "g", Capacity: 10}); err != nil {
		t.Fatal(err)
	}
	mustEnqueue(t, s, t0, "g", jobs.NewJob{Kind: "pre"}) // 1 waiting

	release := lockQueue(t, s, "g")
	lead := goEnqueue(ctx, t, s, "g", jobs.NewJob{Kind: "lead"})
	waitEnqState(t, s, "g", 0, true) // the leader's round waits for the lock

	// The calls arrive one by one, so their order is known.
	add := func(ctx context.Context, ns ...jobs.NewJob) <-chan enqOut {
		p, _ := enqState(s, "g")
		ch := goEnqueue(ctx, t, s, "g", ns...)
		waitEnqState(t, s, "g", p+1, true)
		return ch
	}
	p := []byte(`{"n":1}`)
	c1 := add(ctx, jobs.NewJob{Kind: "a", IdempotencyKey: "x", Payload: p})
	c2 := add(ctx, jobs.NewJob{Kind: "a", IdempotencyKey: "x", Payload: []byte(`{ "n": 1 }`)}) // same job
	c3 := add(ctx, jobs.NewJob{Kind: "b", IdempotencyKey: "x", Payload: p})                    // conflict
	c4 := add(ctx, jobs.NewJob{Kind: "plain"}, jobs.NewJob{Kind: "plain"})
	var big []jobs.NewJob
	for range 20 {
		big = append(big, jobs.NewJob{Kind: "big"})
	}
	c5 := add(ctx, big...) // does not fit: refused alone
	c6 := add(ctx, jobs.NewJob{Kind: "last", IdempotencyKey: "y"})
	wctx, withdraw := context.WithCancel(ctx)
	c7 := add(wctx, jobs.NewJob{Kind: "withdrawn"})
	withdraw()
	if o := <-c7; !errors.Is(o.err, context.Canceled) || o.res != nil {
		t.Errorf("withdrawn call = %v, %v; want context.Canceled", o.res, o.err)
	}
	waitEnqState(t, s, "g", 6, true)

	release()
	ol := <-lead
	o1, o2, o3, o4, o5, o6 := <-c1, <-c2, <-c3, <-c4, <-c5, <-c6
	for i, o := range []enqOut{ol, o1, o2, o3, o4, o6} {
		if o.err != nil {
			t.Fatalf("call %d: %v", i, o.err)
		}
	}
	if !o2.res[0].Duplicate || o2.res[0].Job.ID != o1.res[0].Job.ID {
		t.Errorf("same key and payload after a new job: %+v, want a duplicate of job %d", o2.res[0], o1.res[0].Job.ID)
	}
	if !errors.Is(o3.res[0].Err, jobs.ErrIdempotencyConflict) {
		t.Errorf("same key, other kind: %+v, want ErrIdempotencyConflict", o3.res[0])
	}
	var qf *jobs.QueueFullError
	if !errors.As(o5.err, &qf) || o5.res != nil {
		t.Errorf("20 jobs into a queue with 5 places: %v, %v; want a *QueueFullError", o5.res, o5.err)
	}

	// The six calls after the leader's, one transaction; IDs in arrival
	// order; nothing of the refused or withdrawn calls.
	ids := []int64{o1.res[0].Job.ID, o4.res[0].Job.ID, o4.res[1].Job.ID, o6.res[0].Job.ID}
	for k := 1; k < len(ids); k++ {
		if ids[k] <= ids[k-1] {
			t.Errorf("IDs %v do not follow the calls' order", ids)
		}
	}
	round := xmin(t, s, ids[0])
	for _, id := range ids[1:] {
		if x := xmin(t, s, id); x != round {
			t.Errorf("job %d inserted by transaction %s, job %d by %s: want one transaction", ids[0], round, id, x)
		}
	}
	if x := xmin(t, s, ol.res[0].Job.ID); x == round {
		t.Errorf("the leader's job shares transaction %s with the calls that waited for it", x)
	}
	for _, id := range ids {
		j, err := s.Get(ctx, id)
		if err != nil || j.State != jobs.StateWaiting {
			t.Errorf("Get(%d) = %+v, %v", id, j, err)
		}
	}
	all, err := s.List(ctx, jobs.ListFilter{Queue: "g", Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 6 { // pre, lead, a, plain×2, last
		t.Errorf("queue holds %d jobs, want 6", len(all))
	}
	for _, j := range all {
		if j.Kind == "big" || j.Kind == "withdrawn" || j.Kind == "b" {
			t.Errorf("job %d of kind %q was inserted", j.ID, j.Kind)
		}
	}
	if p, b := enqState(s, "g"); p != 0 || b {
		t.Errorf("after the calls: %d pending, busy %v", p, b)
	}
}

// A call whose ctx ends while its shared transaction runs returns at
// once; the transaction goes on for the calls still waiting for it, and
// the last one to give up cancels it.
func TestEnqueueGiveUpInRound(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := open(t, Config{})
	mustEnqueue(t, s, t0, "g", jobs.NewJob{Kind: "pre"})

	release := lockQueue(t, s, "g")
	lctx, cancelLead := context.WithCancel(ctx)
	lead := goEnqueue(lctx, t, s, "g", jobs.NewJob{Kind: "lead"})
	waitEnqState(t, s, "g", 0, true)
	actx, cancelA := context.WithCancel(ctx)
	a := goEnqueue(actx, t, s, "g", jobs.NewJob{Kind: "a"})
	waitEnqState(t, s, "g", 1, true)
	b := goEnqueue(ctx, t, s, "g", jobs.NewJob{Kind: "b"})
	waitEnqState(t, s, "g", 2, true)

	// The leader is alone in its transaction: giving up cancels it.
	cancelLead()
	if o := <-lead; !errors.Is(o.err, context.Canceled) {
		t.Fatalf("first call that gave up: %v, want context.Canceled", o.err)
	}
	waitEnqState(t, s, "g", 0, true) // a and b's transaction waits for the lock

	// a gives up while b still needs the transaction: a returns at once.
	cancelA()
	if o := <-a; !errors.Is(o.err, context.Canceled) || o.res != nil {
		t.Fatalf("a = %v, %v; want context.Canceled at once", o.res, o.err)
	}
	release()
	ob := <-b
	if ob.err != nil {
		t.Fatalf("b = %v", ob.err)
	}
	// The leader's job was never written; a's was (the documented
	// ambiguity of a call cut short while its transaction ran).
	all, err := s.List(ctx, jobs.ListFilter{Queue: "g"})
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, j := range all {
		kinds = append(kinds, j.Kind)
	}
	if strings.Join(kinds, ",") != "pre,a,b" {
		t.Errorf("queue holds %v, want pre, a, b", kinds)
	}
}

// Waiting for its turn counts against a call's Config.Timeout: a call
// queued behind a transaction stuck on a lock fails at its own timeout.
func TestEnqueueTurnBoundedByTimeout(t *testing.T) {
	t.Parallel()
	const timeout = 300 * time.Millisecond
	s := open(t, Config{Timeout: timeout})
	mustEnqueue(t, s, t0, "g", jobs.NewJob{Kind: "pre"})
	release := lockQueue(t, s, "g")
	defer release()
	start := time.Now()
	lead := goEnqueue(context.Background(), t, s, "g", jobs.NewJob{Kind: "lead"})
	waitEnqState(t, s, "g", 0, true)
	next := goEnqueue(context.Background(), t, s, "g", jobs.NewJob{Kind: "next"})
	for _, ch := range []<-chan enqOut{lead, next} {
		o := <-ch
		if !errors.Is(o.err, jobs.ErrUnavailable) {
			t.Errorf("call behind a locked queue: %v, want ErrUnavailable", o.err)
		}
	}
	if d := time.Since(start); d > timeout+timeout/2 {
		t.Errorf("both calls returned after %v, want about their timeout %v", d, timeout)
	}
}

// Under FullShed a transaction writes at most one call that sheds; the
// calls after it wait for the next, in order, and each still sheds.
func TestEnqueueShedOnePerRound(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := open(t, Config{})
	if err := s.PutQueue(ctx, jobs.QueueConfig{Name: "g", Capacity: 3, Policy: jobs.FullShed}); err != nil {
		t.Fatal(err)
	}
	low := mustEnqueue(t, s, t0, "g", jobs.NewJob{Kind: "low"}, jobs.NewJob{Kind: "low"}, jobs.NewJob{Kind: "low"})
	var (
		mu      sync.Mutex
		written []int // calls written by each transaction of the queue
	)
	s.testRound = func(queue string, n int, start bool) {
		mu.Lock()
		defer mu.Unlock()
		if !start {
			written = append(written, n)
		}
	}

	release := lockQueue(t, s, "g")
	lead := goEnqueue(ctx, t, s, "g", jobs.NewJob{Kind: "lead", Priority: 5})
	waitEnqState(t, s, "g", 0, true)
	var outs []<-chan enqOut
	for range 3 {
		p, _ := enqState(s, "g")
		outs = append(outs, goEnqueue(ctx, t, s, "g", jobs.NewJob{Kind: "high", Priority: 5}))
		waitEnqState(t, s, "g", p+1, true)
	}
	release()
	if o := <-lead; o.err != nil || o.res[0].Shed != low[2].ID {
		t.Fatalf("leader = %+v, %v; want it to shed job %d", o.res, o.err, low[2].ID)
	}
	var ids []int64
	for k, ch := range outs {
		o := <-ch
		if k < 2 {
			if o.err != nil || o.res[0].Shed == 0 {
				t.Fatalf("call %d = %+v, %v; want inserted, shedding a low job", k, o.res, o.err)
			}
			ids = append(ids, o.res[0].Job.ID)
			continue
		}
		// Nothing lower is left: refused, as it would be alone.
		var qf *jobs.QueueFullError
		if !errors.As(o.err, &qf) || !qf.Shed {
			t.Fatalf("call %d = %+v, %v; want a *QueueFullError with Shed", k, o.res, o.err)
		}
	}
	if ids[0] >= ids[1] {
		t.Errorf("IDs %v do not follow the calls' order", ids)
	}
	// The leader's, then one per call that had to shed (the third is
	// refused, still on the shed path).
	mu.Lock()
	defer mu.Unlock()
	if want := []int{1, 1, 1, 1}; !slices.Equal(written, want) {
		t.Errorf("calls written per transaction = %v, want %v", written, want)
	}
}

// A call whose data the database refuses fails alone; the calls that
// shared its transaction are written.
func TestEnqueueBadDataFailsAlone(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := open(t, Config{})
	mustEnqueue(t, s, t0, "g", jobs.NewJob{Kind: "pre"})
	// Stands for any value the server refuses (SQLSTATE class 22).
	if _, err := s.pool.Exec(ctx, expand(`
		CREATE FUNCTION {s}.poison() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN
			IF NEW.kind = 'poison' THEN
				RAISE EXCEPTION 'poisoned' USING ERRCODE = '22023';
			END IF;
			RETURN NEW;
		END $$;
		CREATE TRIGGER poison BEFORE INSERT ON {s}.jobs FOR EACH ROW EXECUTE FUNCTION {s}.poison()`, s.schema)); err != nil {
		t.Fatal(err)
	}
	release := lockQueue(t, s, "g")
	lead := goEnqueue(ctx, t, s, "g", jobs.NewJob{Kind: "lead"})
	waitEnqState(t, s, "g", 0, true)
	var outs []<-chan enqOut
	for _, kind := range []string{"good", "poison", "good2"} {
		p, _ := enqState(s, "g")
		outs = append(outs, goEnqueue(ctx, t, s, "g", jobs.NewJob{Kind: kind}))
		waitEnqState(t, s, "g", p+1, true)
	}
	release()
	if o := <-lead; o.err != nil {
		t.Fatal(o.err)
	}
	good, poison, good2 := <-outs[0], <-outs[1], <-outs[2]
	if good.err != nil || good2.err != nil {
		t.Errorf("good calls beside a bad one: %v, %v; want both written", good.err, good2.err)
	}
	if poison.err == nil || errors.Is(poison.err, jobs.ErrUnavailable) {
		t.Errorf("bad call: %v, want the database's refusal", poison.err)
	}
	all, err := s.List(ctx, jobs.ListFilter{Queue: "g"})
	if err != nil || len(all) != 4 {
		t.Errorf("queue holds %d jobs (%v), want pre, lead, good, good2", len(all), err)
	}
}

// Many callers, each calling again as soon as it returns: one round of a
// queue at a time, every call written once, and rounds that share.
func TestEnqueueRoundsOneAtATime(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := open(t, Config{MaxConns: 24})
	var (
		mu                     sync.Mutex
		in                     = map[string]int{}
		overlap, rounds, calls int
	)
	s.testRound = func(queue string, n int, start bool) {
		mu.Lock()
		defer mu.Unlock()
		if !start {
			in[queue]--
			return
		}
		in[queue]++
		if in[queue] > 1 {
			overlap++
		}
		rounds++
		calls += n
	}
	const callers, each = 16, 40
	var wg sync.WaitGroup
	ids := make(chan int64, callers*each)
	for g := range callers {
		queue := []string{"a", "b"}[g%2]
		batch := normalized(t, t0, queue, jobs.NewJob{Kind: "k"})
		wg.Go(func() {
			for range each {
				cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				res, err := s.Enqueue(cctx, t0, queue, batch)
				cancel()
				if err != nil {
					t.Error(err)
					return
				}
				ids <- res[0].Job.ID
			}
		})
	}
	wg.Wait()
	close(ids)
	seen := map[int64]bool{}
	for id := range ids {
		if seen[id] {
			t.Errorf("job %d returned twice", id)
		}
		seen[id] = true
	}
	all, err := s.List(ctx, jobs.ListFilter{Limit: 10 * callers * each})
	if err != nil {
		t.Fatal(err)
	}
	if len(seen) != callers*each || len(all) != callers*each {
		t.Errorf("%d IDs returned, %d jobs stored; want %d", len(seen), len(all), callers*each)
	}
	mu.Lock()
	defer mu.Unlock()
	if overlap != 0 {
		t.Errorf("%d rounds started while another round of their queue ran", overlap)
	}
	if calls != callers*each {
		t.Errorf("rounds wrote %d calls, want %d", calls, callers*each)
	}
	t.Logf("%d calls in %d rounds", calls, rounds)
	if rounds >= calls {
		t.Errorf("%d calls took %d rounds: none shared", calls, rounds)
	}
}
