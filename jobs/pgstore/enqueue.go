package pgstore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sluicehq/sluice/jobs"
)

// Enqueue implements jobs.Store. Each job is normalized again (a no-op for
// normalized jobs); a job whose Queue is neither "" nor queue is a
// *jobs.ValidationError.
//
// The queue's row stays locked until the transaction ends, so concurrent
// Enqueue calls into one queue, from any node, take turns: the capacity
// check and the idempotency lookup see every job enqueued before.
//
// Within one Store, concurrent calls into one queue share transactions
// (group commit): the calls that arrive while a transaction of their
// queue runs are written together by the next one (up to 5,000 jobs), by
// a goroutine of the Store. Each call keeps its own outcome, exactly as
// if the calls had run one after another in arrival order: a call refused
// as full inserts nothing and does not stop the others; a job's
// idempotency key binds for the calls after it. Under FullShed a
// transaction writes at most one call that has to shed (shedding costs
// round trips per job) and leaves the calls after it to the next one. A
// failure of the transaction itself (the database away, a timeout) fails
// every call in it; a call whose data the database refuses fails alone
// (the others are then written one by one).
//
// Each call is bounded by ctx and Config.Timeout from its start,
// including its wait for its turn. A call that gives up before a round
// took it inserts nothing. One that gives up while its
// transaction runs returns at once; if it was the last call that
// transaction was still serving, the transaction is canceled and inserts
// nothing, else its jobs may have been inserted (as when a COMMIT is cut
// short): enqueue with idempotency keys to retry safely.
//
// Under FullShed the job shed is the one that would run last: the lowest
// priority, then the latest RunAt, then the highest ID (a job locked by a
// concurrent Fetch or Cancel at that moment is passed over). A key's
// binding starts when its job is created: a duplicate within the window
// does not extend it. A refusal's RetryAfter is estimated from the
// queue's completions in the last 10s.
//
// Cost: one transaction of four round trips for all the calls it
// writes, whatever their sizes; one more for the first refusal, and,
// under FullShed, three statements per job that sheds.
func (s *Store) Enqueue(ctx context.Context, now time.Time, queue string, nj []jobs.NewJob) ([]jobs.EnqueueResult, error) {
	const op = "enqueue"
	queue, batch, err := jobs.NormalizeBatch(now, queue, nj)
	if err != nil {
		return nil, err
	}
	if len(batch) == 0 {
		return nil, nil
	}
	ctx, cancel, err := s.begin(ctx, op)
	if err != nil {
		return nil, err
	}
	defer cancel()

	c := &enqCall{ctx: ctx, now: now, batch: batch, done: make(chan struct{})}
	s.enqMu.Lock()
	q := s.enqQueues[queue]
	if q == nil {
		q = &enqQueue{}
		s.enqQueues[queue] = q
	}
	if !q.busy {
		s.mu.Lock()
		closed := s.closed
		if !closed {
			s.rounds.Add(1)
		}
		s.mu.Unlock()
		if closed {
			if len(q.pending) == 0 {
				delete(s.enqQueues, queue)
			}
			s.enqMu.Unlock()
			return nil, fmt.Errorf("pgstore: %s: %w", op, jobs.ErrClosed)
		}
		q.busy = true
		go s.runRounds(queue, q)
	}
	q.pending = append(q.pending, c)
	s.enqMu.Unlock()

	select {
	case <-c.done:
		return c.results, c.err
	case <-ctx.Done():
	}
	s.enqMu.Lock()
	if !c.taken {
		// Still waiting for its turn: withdraw.
		q.pending = slices.DeleteFunc(q.pending, func(p *enqCall) bool { return p == c })
		s.enqMu.Unlock()
		return nil, s.wrap(ctx, op, ctx.Err())
	}
	s.enqMu.Unlock()
	select {
	case <-c.done: // finished as ctx ended
		return c.results, c.err
	default:
		return nil, s.wrap(ctx, op, ctx.Err())
	}
}

// maxRoundJobs bounds the jobs one shared Enqueue transaction writes,
// unless its first call alone has more.
const maxRoundJobs = 5000

// enqCall is one Enqueue call waiting for, or in, a round: one
// transaction writing the calls of one queue.
type enqCall struct {
	ctx   context.Context // the caller's, bounded by Config.Timeout
	now   time.Time
	batch []jobs.NewJob

	// Written by the round before it closes done.
	results []jobs.EnqueueResult
	err     error

	done  chan struct{} // closed when results and err are final
	taken bool          // guarded by Store.enqMu: in a round, no longer in pending
}

// enqQueue is the calls of one queue that wait for a round.
type enqQueue struct {
	pending []*enqCall // guarded by Store.enqMu; arrival order
	// busy is set while a runRounds goroutine serves the queue; when it
	// is clear, pending is empty. Guarded by Store.enqMu.
	busy bool
}

// runRounds writes q's pending calls, a round (one transaction) at a
// time, until none is left. One runs per busy queue; Close waits for it.
func (s *Store) runRounds(queue string, q *enqQueue) {
	defer s.rounds.Done()
	for {
		var calls, gone []*enqCall
		jobsIn := 0
		s.enqMu.Lock()
		for len(q.pending) > 0 {
			c := q.pending[0]
			if len(calls) > 0 && jobsIn+len(c.batch) > maxRoundJobs {
				break
			}
			q.pending[0] = nil
			q.pending = q.pending[1:]
			c.taken = true
			if c.ctx.Err() != nil {
				gone = append(gone, c) // gave up already: not written
				continue
			}
			calls = append(calls, c)
			jobsIn += len(c.batch)
		}
		if len(calls) == 0 && len(gone) == 0 {
			q.pending = nil
			q.busy = false
			delete(s.enqQueues, queue)
			s.enqMu.Unlock()
			return
		}
		s.enqMu.Unlock()

		for _, c := range gone {
			c.err = s.wrap(c.ctx, "enqueue", c.ctx.Err())
			close(c.done)
		}
		if len(calls) == 0 {
			continue
		}
		if s.testRound != nil {
			s.testRound(queue, len(calls), true)
		}
		written := s.writeRound(queue, calls)
		if s.testRound != nil {
			s.testRound(queue, written, false)
		}
		if later := calls[written:]; len(later) > 0 {
			// Deferred to the next round, ahead of the calls that came
			// after them.
			s.enqMu.Lock()
			for _, c := range later {
				c.taken = false
			}
			q.pending = append(slices.Clone(later), q.pending...)
			s.enqMu.Unlock()
		}
		for _, c := range calls[:written] {
			close(c.done)
		}
	}
}

// writeRound writes calls in one transaction and sets the outcome of the
// first written of them (at least one); the others are for a later
// round. A call whose data the database refuses fails alone: the calls
// are then written one transaction each.
func (s *Store) writeRound(queue string, calls []*enqCall) (written int) {
	err := s.roundTx(queue, calls, &written)
	if err == nil {
		return written
	}
	if len(calls) > 1 && dataError(err) {
		for k := range calls {
			n := 0
			_ = s.roundTx(queue, calls[k:k+1], &n) // sets the call's outcome
		}
	}
	return len(calls)
}

// roundTx runs one transaction for calls, under a context that Close,
// Config.Timeout or the end of the last of the calls' contexts cancels
// (nobody waits for it then). It sets *written and the written calls'
// outcomes; when the transaction fails it sets every call's error (as
// its caller sees it) and returns the failure.
func (s *Store) roundTx(queue string, calls []*enqCall, written *int) error {
	const op = "enqueue"
	var (
		ctx    context.Context
		cancel context.CancelFunc
	)
	if s.timeout > 0 {
		ctx, cancel = context.WithTimeout(s.bg, s.timeout)
	} else {
		ctx, cancel = context.WithCancel(s.bg)
	}
	defer cancel() // also unlinks ctx from s.bg
	var left atomic.Int64
	left.Store(int64(len(calls)))
	stops := make([]func() bool, 0, len(calls))
	for _, c := range calls {
		stops = append(stops, context.AfterFunc(c.ctx, func() {
			if left.Add(-1) == 0 {
				cancel()
			}
		}))
	}
	defer func() {
		for _, stop := range stops {
			stop()
		}
	}()
	err := s.inTx(ctx, op, func(ctx context.Context, tx pgx.Tx) error {
		var err error
		*written, err = s.enqueueTx(ctx, tx, queue, calls)
		return err
	})
	if err != nil {
		for _, c := range calls {
			c.results, c.err = nil, s.wrap(ctx, op, err)
			if c.ctx.Err() != nil || dataError(err) {
				c.err = s.wrap(c.ctx, op, err) // its own deadline or cancel, or its data
			}
		}
	}
	return err
}

// dataError reports an error about the data of a statement (SQLSTATE
// classes 22 and 23: a value the database cannot store): the calls that
// did not bring it should not fail with it.
func dataError(err error) bool {
	code := sqlState(err)
	return strings.HasPrefix(code, "22") || strings.HasPrefix(code, "23")
}

// jobRef names job i of call c of a round.
type jobRef struct{ c, i int }

// enqueueTx writes calls into queue within tx, as if each call ran alone
// in turn, and sets each call's results or refusal. Under FullShed it
// stops before the second call that has to shed and returns how many
// calls it wrote (the rest are for a later transaction). It returns only
// the errors that abort the transaction; it may run again (a retry), so
// it sets every call's outcome afresh.
func (s *Store) enqueueTx(ctx context.Context, tx pgx.Tx, queue string, calls []*enqCall) (written int, err error) {
	var (
		keys    []string
		hasKeys = map[string]bool{}
	)
	for _, c := range calls {
		c.results, c.err = make([]jobs.EnqueueResult, len(c.batch)), nil
		for _, n := range c.batch {
			if k := n.IdempotencyKey; k != "" && !hasKeys[k] {
				hasKeys[k] = true
				keys = append(keys, k)
			}
		}
	}

	// Round trip 2: create the queue if needed, lock its row, and find
	// the jobs the keys are bound to (after the lock, so that an Enqueue
	// that held it before is seen).
	defaults := jobs.QueueConfig{Name: queue}
	if err := defaults.Normalize(); err != nil {
		return 0, err
	}
	var (
		capacity, waiting, window int64
		policy                    string
		bound                     = map[string]*jobs.Job{}
	)
	b := &pgx.Batch{}
	b.Queue(s.q.queueEnsure, queueArgs(defaults)...)
	b.Queue(s.q.queueLock, queue).QueryRow(func(row pgx.Row) error {
		return row.Scan(&capacity, &policy, &window, &waiting)
	})
	if len(keys) > 0 {
		b.Queue(s.q.idempotent, queue, keys).Query(func(rows pgx.Rows) error {
			js, err := scanJobs(rows)
			for _, j := range js {
				bound[j.IdempotencyKey] = j
			}
			return err
		})
	}
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return 0, err
	}

	var (
		newByKey = map[string]jobRef{} // keys bound by jobs new in this round
		toInsert []jobRef              // accepted jobs not inserted yet, in order
		dups     = map[jobRef]jobRef{} // a duplicate -> the new job it duplicates
		sample   *retrySample          // for refusals, read once
	)
	// flush inserts toInsert in one statement.
	flush := func() error {
		if len(toInsert) == 0 {
			return nil
		}
		rows := make([]insertRow, len(toInsert))
		for k, r := range toInsert {
			rows[k] = insertRow{job: &calls[r.c].batch[r.i], created: nanos(calls[r.c].now)}
		}
		ids, err := s.insert(ctx, tx, queue, rows)
		if err != nil {
			return err
		}
		for k, r := range toInsert {
			calls[r.c].results[r.i].Job = newJob(ids[k], calls[r.c].batch[r.i], calls[r.c].now)
		}
		toInsert = toInsert[:0]
		return nil
	}
	refuse := func(c *enqCall, shed bool, need int64) error {
		if sample == nil {
			smp, err := s.retrySample(ctx, tx, c.now, queue)
			if err != nil {
				return err
			}
			sample = &smp
		}
		c.results, c.err = nil, sample.refusal(queue, capacity, shed, need)
		return nil
	}

	for ci, c := range calls {
		nowNS := nanos(c.now)
		var (
			fresh   []int              // indexes of the jobs to insert
			local   = map[string]int{} // keys bound by fresh jobs of c
			myDups  = map[int]jobRef{}
			refused bool
		)
		for i := range c.batch {
			n := &c.batch[i]
			k := n.IdempotencyKey
			if k == "" {
				fresh = append(fresh, i)
				continue
			}
			// The newest binding wins: c's own, then an earlier call's in
			// this round, then the database's.
			var of *jobs.NewJob
			ref, isNew := jobRef{ci, 0}, false
			if li, ok := local[k]; ok {
				ref, isNew, of = jobRef{ci, li}, true, &c.batch[li]
			} else if r, ok := newByKey[k]; ok && nanos(calls[r.c].now) > nowNS-window {
				ref, isNew, of = r, true, &calls[r.c].batch[r.i]
			}
			switch {
			case isNew:
				if of.Kind != n.Kind || !jobs.SamePayload(of.Payload, n.Payload) {
					c.results[i].Err = jobs.ErrIdempotencyConflict
				} else {
					myDups[i] = ref
				}
			case bound[k] != nil && nanos(bound[k].CreatedAt) > nowNS-window:
				old := bound[k]
				if old.Kind != n.Kind || !jobs.SamePayload(old.Payload, n.Payload) {
					c.results[i].Err = jobs.ErrIdempotencyConflict
				} else {
					dup := *old // each caller gets its own copy
					c.results[i] = jobs.EnqueueResult{Job: &dup, Duplicate: true}
				}
			default:
				local[k] = i
				fresh = append(fresh, i)
			}
		}

		switch {
		case len(fresh) == 0:
		case waiting+int64(len(fresh)) <= capacity:
			for _, i := range fresh {
				toInsert = append(toInsert, jobRef{ci, i})
			}
			waiting += int64(len(fresh))
		case jobs.FullPolicy(policy) != jobs.FullShed:
			if err := refuse(c, false, waiting+int64(len(fresh))-capacity); err != nil {
				return 0, err
			}
			refused = true
		case ci > 0:
			// Shedding costs round trips per job: only the first call of
			// a transaction may, so that one transaction's cost stays that
			// of one call. c and the calls after it wait for the next.
			for _, later := range calls[ci:] {
				later.results, later.err = nil, nil
			}
			if err := flush(); err != nil {
				return 0, err
			}
			s.fillDups(calls, dups)
			return ci, nil
		default:
			// Shedding sees the jobs of the calls before c as waiting:
			// insert them first. A refusal rolls back c's sheds alone.
			if err := flush(); err != nil {
				return 0, err
			}
			sp, err := tx.Begin(ctx)
			if err != nil {
				return 0, err
			}
			ids, victims, err := s.insertShedding(ctx, sp, nowNS, queue, c.batch, fresh, capacity, waiting)
			var qf *jobs.QueueFullError
			switch {
			case errors.As(err, &qf):
				if err := sp.Rollback(ctx); err != nil {
					return 0, err
				}
				c.results, c.err = nil, qf
				refused = true
			case err != nil:
				return 0, err
			default:
				if err := sp.Commit(ctx); err != nil {
					return 0, err
				}
				for k, i := range fresh {
					c.results[i].Job = newJob(ids[k], c.batch[i], c.now)
					c.results[i].Shed = victims[k]
					waiting++
					if victims[k] != 0 {
						waiting--
					}
				}
			}
		}
		if refused {
			continue
		}
		for k, i := range local {
			newByKey[k] = jobRef{ci, i}
		}
		for i, ref := range myDups {
			dups[jobRef{ci, i}] = ref
		}
	}
	if err := flush(); err != nil {
		return 0, err
	}
	s.fillDups(calls, dups)
	return len(calls), nil
}

// fillDups sets the results of duplicates of jobs new in this round: a
// copy of the job each duplicates.
func (s *Store) fillDups(calls []*enqCall, dups map[jobRef]jobRef) {
	for d, of := range dups {
		j := *calls[of.c].results[of.i].Job
		calls[d.c].results[d.i] = jobs.EnqueueResult{Job: &j, Duplicate: true}
	}
}

// newJob is job n, inserted at now with id, as Get will return it.
func newJob(id int64, n jobs.NewJob, now time.Time) *jobs.Job {
	stamp := fromNanos(nanos(now))
	j := &jobs.Job{ID: id, NewJob: n, State: jobs.StateWaiting, CreatedAt: stamp, UpdatedAt: stamp}
	j.RunAt = stored(n.RunAt)
	j.Deadline = stored(n.Deadline)
	return j
}

// insertRow is one job for insert, with its creation time in Unix ns.
type insertRow struct {
	job     *jobs.NewJob
	created int64
}

// insert inserts rows in one statement and returns their IDs in that
// order.
func (s *Store) insert(ctx context.Context, tx pgx.Tx, queue string, rows []insertRow) ([]int64, error) {
	m := len(rows)
	var (
		created                       = make([]int64, m)
		kinds, payloads, keys, groups = make([]string, m), make([]string, m), make([]string, m), make([]string, m)
		prios                         = make([]int16, m)
		runAts, deadlines, timeouts   = make([]int64, m), make([]int64, m), make([]int64, m)
		bmins, bmaxs                  = make([]int64, m), make([]int64, m)
		maxAttempts                   = make([]int32, m)
		cancelGroup                   = make([]bool, m)
	)
	for k, r := range rows {
		n := r.job
		created[k] = r.created
		kinds[k], payloads[k], keys[k], groups[k] = n.Kind, string(n.Payload), n.IdempotencyKey, n.Group
		prios[k] = int16(n.Priority)
		runAts[k], deadlines[k], timeouts[k] = nanos(n.RunAt), zeroNanos(n.Deadline), int64(n.AttemptTimeout)
		bmins[k], bmaxs[k] = int64(n.BackoffMin), int64(n.BackoffMax)
		maxAttempts[k] = int32(min(n.MaxAttempts, 1<<31-1))
		cancelGroup[k] = n.CancelGroupOnFailure
	}
	res, err := tx.Query(ctx, s.q.insertJobs, queue, created, kinds, payloads, prios, keys, runAts, deadlines,
		timeouts, maxAttempts, bmins, bmaxs, groups, cancelGroup)
	if err != nil {
		return nil, err
	}
	ids, err := pgx.CollectRows(res, pgx.RowTo[int64])
	if err != nil {
		return nil, err
	}
	if len(ids) != m {
		return nil, fmt.Errorf("inserted %d jobs, want %d", len(ids), m)
	}
	// One statement's identity values ascend in insertion order.
	slices.Sort(ids)
	return ids, nil
}

// insertShedding inserts batch[fresh...] one at a time into a queue that
// is or becomes full under FullShed, shedding a lower-priority waiting job
// for each one that does not fit. It fails with a *jobs.QueueFullError
// when a job finds none; the caller's rollback undoes the sheds.
// It returns the new jobs' IDs and, for each, the job it shed (or 0).
func (s *Store) insertShedding(ctx context.Context, tx pgx.Tx, nowNS int64, queue string, batch []jobs.NewJob, fresh []int, capacity, waiting int64) (ids, victims []int64, err error) {
	ids = make([]int64, 0, len(fresh))
	victims = make([]int64, 0, len(fresh))
	for _, i := range fresh {
		n := &batch[i]
		var victim int64
		if waiting+1 > capacity {
			err := tx.QueryRow(ctx, s.q.shedVictim, queue, int16(n.Priority)).Scan(&victim)
			if errors.Is(err, pgx.ErrNoRows) {
				now := fromNanos(nowNS)
				smp, err := s.retrySample(ctx, tx, now, queue)
				if err != nil {
					return nil, nil, err
				}
				return nil, nil, smp.refusal(queue, capacity, true, waiting+1-capacity)
			} else if err != nil {
				return nil, nil, err
			}
		}
		id, err := s.insert(ctx, tx, queue, []insertRow{{job: n, created: nowNS}})
		if err != nil {
			return nil, nil, err
		}
		ids = append(ids, id[0])
		waiting++
		if victim != 0 {
			reason := fmt.Sprintf("shed for job %d (priority %d) from full queue %q", id[0], n.Priority, queue)
			if _, err := tx.Exec(ctx, s.q.shed, victim, reason, nowNS); err != nil {
				return nil, nil, err
			}
			waiting--
		}
		victims = append(victims, victim)
	}
	return ids, victims, nil
}

// retryAfterWindow is how far back retrySample looks for completions,
// and retryAfterSample how many it looks at, at most.
const (
	retryAfterWindow = 10 * time.Second
	retryAfterSample = 100
)

// retrySample is a queue's recent completions: how many (up to
// retryAfterSample) finished in the retryAfterWindow before now, and
// when the oldest of them finished (Unix ns).
type retrySample struct {
	now       time.Time
	n, oldest int64
}

func (s *Store) retrySample(ctx context.Context, tx pgx.Tx, now time.Time, queue string) (retrySample, error) {
	smp := retrySample{now: now}
	err := tx.QueryRow(ctx, s.q.retryAfter, queue, nanos(now), int64(retryAfterWindow)).Scan(&smp.n, &smp.oldest)
	return smp, err
}

// refusal builds a refusal, with a Retry-After
// estimate: the time the sample's completion rate (over the last 10s, or
// over its last 100 completions if they were quicker) needs to free need
// places, between 10ms and 5 minutes; zero when nothing completed in the
// window.
func (smp retrySample) refusal(queue string, capacity int64, shed bool, need int64) error {
	e := &jobs.QueueFullError{Queue: queue, Capacity: int(capacity), Shed: shed}
	if smp.n > 0 {
		elapsed := retryAfterWindow
		if smp.n >= retryAfterSample {
			elapsed = max(time.Duration(nanos(smp.now)-smp.oldest), time.Nanosecond)
		}
		d := time.Duration(float64(max(need, 1)) * float64(elapsed) / float64(smp.n))
		e.RetryAfter = min(max(d, 10*time.Millisecond), 5*time.Minute)
	}
	return e
}
