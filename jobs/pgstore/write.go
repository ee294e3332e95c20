package pgstore

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
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
// Under FullShed the job shed is the one that would run last: the lowest
// priority, then the latest RunAt, then the highest ID (a job locked by a
// concurrent Fetch or Cancel at that moment is passed over). A key's
// binding starts when its job is created: a duplicate within the window
// does not extend it. A refusal's RetryAfter is estimated from the
// queue's completions in the last 10s.
//
// Cost: one transaction of four round trips, whatever the batch size;
// shedding adds three statements per job.
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
	var results []jobs.EnqueueResult
	err = s.inTx(ctx, op, func(ctx context.Context, tx pgx.Tx) error {
		var err error
		results, err = s.enqueueTx(ctx, tx, now, queue, batch)
		return err
	})
	if err != nil {
		return nil, s.wrap(ctx, op, err)
	}
	return results, nil
}

func (s *Store) enqueueTx(ctx context.Context, tx pgx.Tx, now time.Time, queue string, batch []jobs.NewJob) ([]jobs.EnqueueResult, error) {
	var (
		keys    []string
		hasKeys = map[string]bool{}
	)
	for _, n := range batch {
		if k := n.IdempotencyKey; k != "" && !hasKeys[k] {
			hasKeys[k] = true
			keys = append(keys, k)
		}
	}

	// Round trip 2: create the queue if needed, lock its row, and find
	// the jobs the keys are bound to (after the lock, so that an Enqueue
	// that held it before is seen).
	defaults := jobs.QueueConfig{Name: queue}
	if err := defaults.Normalize(); err != nil {
		return nil, err
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
		return nil, err
	}

	// Sort out duplicates and conflicts, in order: a job inserted by this
	// batch binds its key for the jobs after it.
	nowNS := nanos(now)
	stamp := fromNanos(nowNS)
	results := make([]jobs.EnqueueResult, len(batch))
	var (
		fresh    []int           // indexes of the jobs to insert
		dupOf    = map[int]int{} // result index -> index of the new job it duplicates
		newByKey = map[string]int{}
	)
	for i := range batch {
		n := &batch[i]
		if n.IdempotencyKey != "" {
			if k, ok := newByKey[n.IdempotencyKey]; ok {
				if batch[k].Kind != n.Kind || !samePayload(batch[k].Payload, n.Payload) {
					results[i].Err = jobs.ErrIdempotencyConflict
				} else {
					dupOf[i] = k
				}
				continue
			}
			if old := bound[n.IdempotencyKey]; old != nil && nanos(old.CreatedAt) > nowNS-window {
				if old.Kind != n.Kind || !samePayload(old.Payload, n.Payload) {
					results[i].Err = jobs.ErrIdempotencyConflict
				} else {
					results[i] = jobs.EnqueueResult{Job: old, Duplicate: true}
				}
				continue
			}
			newByKey[n.IdempotencyKey] = i
		}
		fresh = append(fresh, i)
	}

	// Capacity.
	var ids []int64
	switch {
	case len(fresh) == 0:
	case waiting+int64(len(fresh)) <= capacity:
		var err error
		if ids, err = s.insert(ctx, tx, nowNS, queue, batch, fresh); err != nil {
			return nil, err
		}
	case jobs.FullPolicy(policy) != jobs.FullShed:
		return nil, s.queueFull(ctx, tx, now, queue, capacity, false, waiting+int64(len(fresh))-capacity)
	default:
		var err error
		var victims []int64
		if ids, victims, err = s.insertShedding(ctx, tx, nowNS, queue, batch, fresh, capacity, waiting); err != nil {
			return nil, err
		}
		for k, i := range fresh {
			results[i].Shed = victims[k]
		}
	}

	for k, i := range fresh {
		n := batch[i]
		// The job as Get will return it.
		j := &jobs.Job{ID: ids[k], NewJob: n, State: jobs.StateWaiting, CreatedAt: stamp, UpdatedAt: stamp}
		j.RunAt = stored(n.RunAt)
		j.Deadline = stored(n.Deadline)
		results[i].Job = j
	}
	for i, k := range dupOf {
		j := *results[k].Job
		results[i] = jobs.EnqueueResult{Job: &j, Duplicate: true}
	}
	return results, nil
}

// insert inserts batch[fresh...] in one statement and returns their IDs
// in that order.
func (s *Store) insert(ctx context.Context, tx pgx.Tx, nowNS int64, queue string, batch []jobs.NewJob, fresh []int) ([]int64, error) {
	m := len(fresh)
	var (
		kinds, payloads, keys, groups = make([]string, m), make([]string, m), make([]string, m), make([]string, m)
		prios                         = make([]int16, m)
		runAts, deadlines, timeouts   = make([]int64, m), make([]int64, m), make([]int64, m)
		bmins, bmaxs                  = make([]int64, m), make([]int64, m)
		maxAttempts                   = make([]int32, m)
		cancelGroup                   = make([]bool, m)
	)
	for k, i := range fresh {
		n := &batch[i]
		kinds[k], payloads[k], keys[k], groups[k] = n.Kind, string(n.Payload), n.IdempotencyKey, n.Group
		prios[k] = int16(n.Priority)
		runAts[k], deadlines[k], timeouts[k] = nanos(n.RunAt), zeroNanos(n.Deadline), int64(n.AttemptTimeout)
		bmins[k], bmaxs[k] = int64(n.BackoffMin), int64(n.BackoffMax)
		maxAttempts[k] = int32(min(n.MaxAttempts, 1<<31-1))
		cancelGroup[k] = n.CancelGroupOnFailure
	}
	rows, err := tx.Query(ctx, s.q.insertJobs, queue, nowNS, kinds, payloads, prios, keys, runAts, deadlines,
		timeouts, maxAttempts, bmins, bmaxs, groups, cancelGroup)
	if err != nil {
		return nil, err
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
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
				return nil, nil, s.queueFull(ctx, tx, fromNanos(nowNS), queue, capacity, true, waiting+1-capacity)
			} else if err != nil {
				return nil, nil, err
			}
		}
		id, err := s.insert(ctx, tx, nowNS, queue, batch, []int{i})
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

// samePayload reports whether two JSON documents are the same, ignoring
// insignificant white space.
func samePayload(a, b json.RawMessage) bool {
	if bytes.Equal(a, b) {
		return true
	}
	var ca, cb bytes.Buffer
	if json.Compact(&ca, a) != nil || json.Compact(&cb, b) != nil {
		return false
	}
	return bytes.Equal(ca.Bytes(), cb.Bytes())
}

// retryAfterWindow is how far back queueFull looks for completions, and
// retryAfterSample how many it looks at, at most.
const (
	retryAfterWindow = 10 * time.Second
	retryAfterSample = 100
)

// queueFull builds the refusal, with a Retry-After estimate: the time the
// queue's completion rate over the last 10s (or over its last 100
// completions, if they were quicker) needs to free need places, between
// 10ms and 5 minutes; zero when nothing completed in the window.
func (s *Store) queueFull(ctx context.Context, tx pgx.Tx, now time.Time, queue string, capacity int64, shed bool, need int64) error {
	e := &jobs.QueueFullError{Queue: queue, Capacity: int(capacity), Shed: shed}
	var n, oldest int64
	if err := tx.QueryRow(ctx, s.q.retryAfter, queue, nanos(now), int64(retryAfterWindow)).Scan(&n, &oldest); err != nil {
		return err
	}
	if n > 0 {
		elapsed := retryAfterWindow
		if n >= retryAfterSample {
			elapsed = max(time.Duration(nanos(now)-oldest), time.Nanosecond)
		}
		d := time.Duration(float64(max(need, 1)) * float64(elapsed) / float64(n))
		e.RetryAfter = min(max(d, 10*time.Millisecond), 5*time.Minute)
	}
	return e
}

// Fetch implements jobs.Store. It returns the claimed jobs in run order
// (priority, RunAt, ID). Cost: one statement.
func (s *Store) Fetch(ctx context.Context, now time.Time, queue, owner string, limit int, lease time.Duration) ([]*jobs.Job, error) {
	const op = "fetch"
	if limit <= 0 {
		return nil, nil
	}
	ctx, cancel, err := s.begin(ctx, op)
	if err != nil {
		return nil, err
	}
	defer cancel()
	var out []*jobs.Job
	err = s.retry(ctx, op, func(ctx context.Context) error {
		rows, err := s.pool.Query(ctx, s.q.fetch, queue, owner, nanos(now.Add(lease)), nanos(now), int64(limit), priorities)
		if err != nil {
			return err
		}
		out, err = scanJobs(rows)
		return err
	})
	if err != nil {
		return nil, s.wrap(ctx, op, err)
	}
	slices.SortFunc(out, func(a, b *jobs.Job) int {
		if a.Priority != b.Priority {
			return b.Priority - a.Priority
		}
		if c := a.RunAt.Compare(b.RunAt); c != 0 {
			return c
		}
		return cmp.Compare(a.ID, b.ID)
	})
	return out, nil
}

// Heartbeat implements jobs.Store. Cost: one statement.
func (s *Store) Heartbeat(ctx context.Context, now time.Time, owner string, held []jobs.Attempt, lease time.Duration) (lost, cancelReq []int64, err error) {
	const op = "heartbeat"
	if len(held) == 0 {
		return nil, nil, nil
	}
	ctx, cancel, err := s.begin(ctx, op)
	if err != nil {
		return nil, nil, err
	}
	defer cancel()
	ids := make([]int64, len(held))
	attempts := make([]int32, len(held))
	for i, h := range held {
		ids[i], attempts[i] = h.ID, int32(h.Attempt)
	}
	kept := make(map[jobs.Attempt]bool, len(held))
	err = s.retry(ctx, op, func(ctx context.Context) error {
		clear(kept)
		cancelReq = nil
		rows, err := s.pool.Query(ctx, s.q.heartbeat, ids, owner, attempts, nanos(now.Add(lease)))
		if err != nil {
			return err
		}
		var (
			a   jobs.Attempt
			att int32
			req bool
		)
		_, err = pgx.ForEachRow(rows, []any{&a.ID, &att, &req}, func() error {
			a.Attempt = int(att)
			kept[a] = true
			if req {
				cancelReq = append(cancelReq, a.ID)
			}
			return nil
		})
		return err
	})
	if err != nil {
		return nil, nil, s.wrap(ctx, op, err)
	}
	for _, h := range held {
		if !kept[h] {
			lost = append(lost, h.ID)
		}
	}
	return lost, cancelReq, nil
}

// Complete implements jobs.Store. A Retry or Released outcome for a job
// whose cancellation was requested ends it StateCanceled rather than
// running it again. An outcome of an unknown kind fails the whole call.
//
// Cost: one transaction: one statement for the first outcome of each job,
// whatever their kinds; one more for the second outcomes of jobs that
// have several in the batch (normally stale, fenced off), and so on; one
// more round trip for the group cancellations of final failures. The
// group cancellations run after every outcome of the batch.
func (s *Store) Complete(ctx context.Context, now time.Time, owner string, outcomes []jobs.Outcome) ([]bool, error) {
	const op = "complete"
	for i, o := range outcomes {
		if o.Kind < jobs.Succeeded || o.Kind > jobs.Expired {
			return nil, &jobs.ValidationError{Field: "outcome", Msg: fmt.Sprintf("outcome %d (job %d) has unknown kind %d", i, o.ID, o.Kind)}
		}
	}
	if len(outcomes) == 0 {
		return nil, nil
	}
	ctx, cancel, err := s.begin(ctx, op)
	if err != nil {
		return nil, err
	}
	defer cancel()
	nowNS := nanos(now)

	// Split the outcomes into rounds: round r holds the r-th outcome of
	// each job, so that a job appears at most once per statement, and
	// later outcomes of a job are applied after (and fenced by) earlier
	// ones, as if applied one by one.
	var rounds [][]int
	seen := make(map[int64]int, len(outcomes))
	for i, o := range outcomes {
		r := seen[o.ID]
		seen[o.ID] = r + 1
		if r == len(rounds) {
			rounds = append(rounds, nil)
		}
		rounds[r] = append(rounds[r], i)
	}

	var applied []bool
	err = s.inTx(ctx, op, func(ctx context.Context, tx pgx.Tx) error {
		applied = make([]bool, len(outcomes))
		type failure struct {
			id    int64
			group string
		}
		var failures []failure
		for _, round := range rounds {
			m := len(round)
			var (
				ids, runAts   = make([]int64, m), make([]int64, m)
				attempts      = make([]int32, m)
				kinds         = make([]int16, m)
				errs, reasons = make([]string, m), make([]string, m)
				index         = make(map[int64]int, m)
			)
			for k, i := range round {
				o := outcomes[i]
				ids[k], attempts[k], kinds[k] = o.ID, int32(o.Attempt.Attempt), int16(o.Kind)
				runAt := o.RunAt
				if runAt.IsZero() {
					runAt = now
				}
				runAts[k], errs[k], reasons[k] = nanos(runAt), o.Error, o.Reason
				if o.Kind == jobs.Released && o.RunAt.IsZero() {
					runAts[k] = 0 // keep the job's place in line
				}
				index[o.ID] = i
			}
			rows, err := tx.Query(ctx, s.q.complete, ids, owner, attempts, kinds, runAts, errs, reasons, nowNS)
			if err != nil {
				return err
			}
			var (
				id           int64
				state, group string
				cancelGroup  bool
			)
			_, err = pgx.ForEachRow(rows, []any{&id, &state, &group, &cancelGroup}, func() error {
				if i, ok := index[id]; ok {
					applied[i] = true
				}
				if jobs.State(state) == jobs.StateFailed && cancelGroup && group != "" {
					failures = append(failures, failure{id, group})
				}
				return nil
			})
			if err != nil {
				return err
			}
		}
		if len(failures) == 0 {
			return nil
		}
		b := &pgx.Batch{}
		for _, f := range failures {
			s.queueGroupCancel(b, f.group, f.id, nowNS)
		}
		return tx.SendBatch(ctx, b).Close()
	})
	if err != nil {
		return nil, s.wrap(ctx, op, err)
	}
	return applied, nil
}

// queueGroupCancel queues the statements that cancel group's waiting jobs
// and request the cancellation of its running ones, because job failed.
func (s *Store) queueGroupCancel(b *pgx.Batch, group string, job, nowNS int64) {
	reason := fmt.Sprintf("group %q canceled: job %d failed", group, job)
	b.Queue(s.q.groupCancelWaiting, group, reason, nowNS)
	b.Queue(s.q.groupCancelRunning, group, reason, nowNS)
}

// Cancel implements jobs.Store. A second Cancel of a running job keeps the
// first reason. Requesting the cancellation of a running job notifies
// listeners (see Listen).
func (s *Store) Cancel(ctx context.Context, now time.Time, id int64, reason string) (*jobs.Job, error) {
	const op = "cancel"
	ctx, cancel, err := s.begin(ctx, op)
	if err != nil {
		return nil, err
	}
	defer cancel()
	var j *jobs.Job
	err = s.retry(ctx, op, func(ctx context.Context) error {
		var err error
		j, err = scanJob(s.pool.QueryRow(ctx, s.q.cancel, id, nanos(now), reason))
		if errors.Is(err, pgx.ErrNoRows) {
			// Terminal, or unknown: read it as it is now.
			j, err = scanJob(s.pool.QueryRow(ctx, s.q.get, id))
			if errors.Is(err, pgx.ErrNoRows) {
				return jobs.ErrNotFound
			}
		}
		return err
	})
	if err != nil {
		return nil, s.wrap(ctx, op, err)
	}
	return j, nil
}

// RecoverLeases implements jobs.Store. A recovered job whose cancellation
// was requested ends StateCanceled; one that fails for good applies its
// group's CancelGroupOnFailure rule, as in Complete. LastError says the
// lease expired. Cost: one statement over the running jobs (indexed),
// plus one round trip for group cancellations.
func (s *Store) RecoverLeases(ctx context.Context, now time.Time) (int, error) {
	const op = "recover leases"
	ctx, cancel, err := s.begin(ctx, op)
	if err != nil {
		return 0, err
	}
	defer cancel()
	nowNS := nanos(now)
	n := 0
	err = s.inTx(ctx, op, func(ctx context.Context, tx pgx.Tx) error {
		n = 0
		rows, err := tx.Query(ctx, s.q.recover, nowNS)
		if err != nil {
			return err
		}
		b := &pgx.Batch{}
		var (
			id           int64
			state, group string
			cancelGroup  bool
		)
		_, err = pgx.ForEachRow(rows, []any{&id, &state, &group, &cancelGroup}, func() error {
			n++
			if jobs.State(state) == jobs.StateFailed && cancelGroup && group != "" {
				s.queueGroupCancel(b, group, id, nowNS)
			}
			return nil
		})
		if err != nil || b.Len() == 0 {
			return err
		}
		return tx.SendBatch(ctx, b).Close()
	})
	if err != nil {
		return 0, s.wrap(ctx, op, err)
	}
	return n, nil
}

// ExpireDue implements jobs.Store. Cost: one statement, served by an index
// on waiting jobs' deadlines.
func (s *Store) ExpireDue(ctx context.Context, now time.Time) (int, error) {
	const op = "expire"
	ctx, cancel, err := s.begin(ctx, op)
	if err != nil {
		return 0, err
	}
	defer cancel()
	var n int64
	err = s.retry(ctx, op, func(ctx context.Context) error {
		tag, err := s.pool.Exec(ctx, s.q.expire, nanos(now))
		n = tag.RowsAffected()
		return err
	})
	if err != nil {
		return 0, s.wrap(ctx, op, err)
	}
	return int(n), nil
}

// PutQueue implements jobs.Store. It normalizes q again (a no-op for a
// normalized config) and returns its *jobs.ValidationError.
func (s *Store) PutQueue(ctx context.Context, q jobs.QueueConfig) error {
	const op = "put queue"
	if err := q.Normalize(); err != nil {
		return err
	}
	ctx, cancel, err := s.begin(ctx, op)
	if err != nil {
		return err
	}
	defer cancel()
	err = s.retry(ctx, op, func(ctx context.Context) error {
		_, err := s.pool.Exec(ctx, s.q.putQueue, queueArgs(q)...)
		return err
	})
	return s.wrap(ctx, op, err)
}
