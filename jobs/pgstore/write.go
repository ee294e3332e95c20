package pgstore

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sluicehq/sluice/jobs"
)

// Fetch implements jobs.Store. It returns the claimed jobs in run order
// (priority, RunAt, ID). Cost: one statement, in a transaction (three
// round trips).
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
	// In a transaction, though it is one statement: a caller that gives
	// up while the statement waits for a lock drops the connection, and
	// the server then aborts the transaction instead of committing claims
	// nobody receives (in autocommit it would commit them unless the
	// cancel request landed first).
	err = s.inTx(ctx, op, func(ctx context.Context, tx pgx.Tx) error {
		nowNS, leaseNS := nanos(now), nanos(now.Add(lease))
		rows, err := tx.Query(ctx, s.q.fetch, queue, owner, leaseNS, nowNS, int64(limit), priorities)
		if err != nil {
			return err
		}
		out, err = scanFetched(rows, queue, owner, nowNS, leaseNS)
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

// pgAttempt is attempt n as the integer column compares it: -1, which no
// job's attempt is, for an n outside its range, so that an outcome for an
// attempt no fetch gave fences off instead of wrapping around to another.
func pgAttempt(n int) int32 {
	if n < 0 || n > math.MaxInt32 {
		return -1
	}
	return int32(n)
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
		ids[i], attempts[i] = h.ID, pgAttempt(h.Attempt)
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
// more round trip for the group cancellations of final failures, and one
// for the queues' waiting counters when jobs went back to waiting (Retry,
// Released) or a group cancellation took waiting jobs (see moves). The
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
		mv := moves{}
		type failure struct {
			id    int64
			group string
		}
		var failures []failure
		for _, round := range rounds {
			m := len(round)
			ids, attempts := make([]int64, m), make([]int32, m)
			index := make(map[int64]int, m)
			succeededOnly := true
			for k, i := range round {
				o := outcomes[i]
				ids[k], attempts[k] = o.ID, pgAttempt(o.Attempt.Attempt)
				index[o.ID] = i
				succeededOnly = succeededOnly && o.Kind == jobs.Succeeded
			}
			var (
				id                  int64
				state, group, queue string
				cancelGroup         bool
				runAt               int64
				rows                pgx.Rows
				err                 error
			)
			dest := []any{&id, &state, &group, &cancelGroup, &queue, &runAt}
			if succeededOnly {
				// The common case, without the general statement's
				// per-row CASEs; it returns only the IDs.
				dest = dest[:1]
				rows, err = tx.Query(ctx, s.q.completeSucceeded, ids, owner, attempts, nowNS)
			} else {
				kinds, runAts := make([]int16, m), make([]int64, m)
				errs, reasons := make([]string, m), make([]string, m)
				for k, i := range round {
					o := outcomes[i]
					kinds[k] = int16(o.Kind)
					runAt := o.RunAt
					if runAt.IsZero() {
						runAt = now
					}
					runAts[k], errs[k], reasons[k] = nanos(runAt), jobs.CleanText(o.Error), jobs.CleanText(o.Reason)
					if o.Kind == jobs.Released && o.RunAt.IsZero() {
						runAts[k] = 0 // keep the job's place in line
					}
				}
				rows, err = tx.Query(ctx, s.q.complete, ids, owner, attempts, kinds, runAts, errs, reasons, nowNS)
			}
			if err != nil {
				return err
			}
			_, err = pgx.ForEachRow(rows, dest, func() error {
				if i, ok := index[id]; ok {
					applied[i] = true
				}
				if jobs.State(state) == jobs.StateFailed && cancelGroup && group != "" {
					failures = append(failures, failure{id, group})
				}
				if jobs.State(state) == jobs.StateWaiting {
					mv.waiting(queue, runAt, nowNS)
				}
				return nil
			})
			if err != nil {
				return err
			}
		}
		if len(failures) > 0 {
			b := &pgx.Batch{}
			for _, f := range failures {
				s.queueGroupCancel(b, f.group, f.id, nowNS, mv)
			}
			if err := tx.SendBatch(ctx, b).Close(); err != nil {
				return err
			}
		}
		return s.applyMoves(ctx, tx, mv)
	})
	if err != nil {
		return nil, s.wrap(ctx, op, err)
	}
	return applied, nil
}

// queueGroupCancel queues the statements that cancel group's waiting jobs
// and request the cancellation of its running ones, because job failed.
// The waiting jobs it cancels are counted in mv.
func (s *Store) queueGroupCancel(b *pgx.Batch, group string, job, nowNS int64, mv moves) {
	reason := fmt.Sprintf("group %q canceled: job %d failed", group, job)
	b.Queue(s.q.groupCancelWaiting, group, reason, nowNS).Query(func(rows pgx.Rows) error {
		return mv.scanLeft(rows)
	})
	b.Queue(s.q.groupCancelRunning, group, reason, nowNS)
}

// moves counts, per queue, the jobs a transaction moved into the waiting
// state (positive) or out of it (negative), for applyMoves, and whether
// any job that became waiting is due now (whatever the net count), or else
// the earliest RunAt of those scheduled for later. The statements keep the
// queues' waiting counters this way rather than by a trigger on every
// update of the jobs table (see the schema's step 3).
type moves map[string]*move

type move struct {
	n   int64
	due bool
	at  int64 // Unix ns; 0: none scheduled for later
}

// waiting adds one job that became waiting in queue, due at runAt.
func (m moves) waiting(queue string, runAt, nowNS int64) {
	m.add(queue, 1, runAt <= nowNS)
	if v := m[queue]; runAt > nowNS && (v.at == 0 || runAt < v.at) {
		v.at = runAt
	}
}

func (m moves) add(queue string, n int64, due bool) {
	v := m[queue]
	if v == nil {
		v = &move{}
		m[queue] = v
	}
	v.n += n
	v.due = v.due || due
}

// scanLeft adds the rows (queue, count) of jobs that left the waiting
// state.
func (m moves) scanLeft(rows pgx.Rows) error {
	var (
		queue string
		n     int64
	)
	_, err := pgx.ForEachRow(rows, []any{&queue, &n}, func() error {
		m.add(queue, -n, false)
		return nil
	})
	return err
}

// applyMoves updates the waiting counters of the queues in mv, in name
// order, and notifies listeners of the queues where jobs became waiting:
// "queue:<name>" when some are due now, else "due:<ns>:<name>" with the
// earliest RunAt. One round trip; none when mv is empty. Every transaction that
// moves jobs between queues' counts locks its job rows first and its queue
// rows last, in name order, so two of them cannot wait for each other's
// queue rows. (Enqueue and shedding lock their one queue row first, but
// take job rows only with SKIP LOCKED or ones they hold already. The name
// order here is Go's byte order; the insert and delete triggers' ORDER BY
// uses the database's collation, but no statement of the store inserts
// into, or deletes waiting jobs of, more than one queue.)
func (s *Store) applyMoves(ctx context.Context, tx pgx.Tx, mv moves) error {
	if len(mv) == 0 {
		return nil
	}
	b := &pgx.Batch{}
	for _, q := range slices.Sorted(maps.Keys(mv)) {
		m := mv[q]
		if m.n != 0 {
			b.Queue(s.q.moveWaiting, q, m.n)
		}
		switch {
		case m.due: // whatever the net count: a group cancellation may have taken more
			b.Queue(s.q.notifyQueue, channelName(s.schema), q)
		case m.at != 0:
			b.Queue(s.q.notifyDue, channelName(s.schema), m.at, q)
		}
	}
	if b.Len() == 0 {
		return nil
	}
	return tx.SendBatch(ctx, b).Close()
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
	// In a transaction, as Fetch: a caller that gave up never cancels.
	err = s.inTx(ctx, op, func(ctx context.Context, tx pgx.Tx) error {
		var err error
		j, err = scanJob(tx.QueryRow(ctx, s.q.cancel, id, nanos(now), jobs.CleanText(reason)))
		if errors.Is(err, pgx.ErrNoRows) {
			// Terminal, or unknown: read it as it is now.
			j, err = scanJob(tx.QueryRow(ctx, s.q.get, id))
			if errors.Is(err, pgx.ErrNoRows) {
				return jobs.ErrNotFound
			}
			return err
		}
		if err == nil && j.State == jobs.StateCanceled {
			// It was waiting: a running job stays running until its
			// worker stops it.
			err = s.applyMoves(ctx, tx, moves{j.Queue: {n: -1}})
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
// plus one round trip for group cancellations and one for the queues'
// waiting counters, when there are any.
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
		mv := moves{}
		var (
			id                  int64
			state, group, queue string
			cancelGroup         bool
			runAt               int64
		)
		_, err = pgx.ForEachRow(rows, []any{&id, &state, &group, &cancelGroup, &queue, &runAt}, func() error {
			n++
			if jobs.State(state) == jobs.StateFailed && cancelGroup && group != "" {
				s.queueGroupCancel(b, group, id, nowNS, mv)
			}
			if jobs.State(state) == jobs.StateWaiting {
				mv.waiting(queue, runAt, nowNS)
			}
			return nil
		})
		if err != nil {
			return err
		}
		if b.Len() > 0 {
			if err := tx.SendBatch(ctx, b).Close(); err != nil {
				return err
			}
		}
		return s.applyMoves(ctx, tx, mv)
	})
	if err != nil {
		return 0, s.wrap(ctx, op, err)
	}
	return n, nil
}

// ExpireDue implements jobs.Store. Cost: one statement, served by an index
// on waiting jobs' deadlines, and one round trip for the waiting counters
// when it expired any.
func (s *Store) ExpireDue(ctx context.Context, now time.Time) (int, error) {
	const op = "expire"
	ctx, cancel, err := s.begin(ctx, op)
	if err != nil {
		return 0, err
	}
	defer cancel()
	n := 0
	err = s.inTx(ctx, op, func(ctx context.Context, tx pgx.Tx) error {
		rows, err := tx.Query(ctx, s.q.expire, nanos(now))
		if err != nil {
			return err
		}
		mv := moves{}
		if err := mv.scanLeft(rows); err != nil {
			return err
		}
		n = 0
		for _, m := range mv {
			n -= int(m.n)
		}
		return s.applyMoves(ctx, tx, mv)
	})
	if err != nil {
		return 0, s.wrap(ctx, op, err)
	}
	return n, nil
}

// DeleteFinished implements jobs.Store. It walks each queue's finished
// jobs through the jobs_finished index, oldest first, and skips rows
// locked by another transaction. Cost: one statement.
func (s *Store) DeleteFinished(ctx context.Context, now, before time.Time, limit int) (int, error) {
	if limit <= 0 {
		return 0, nil
	}
	return s.execCount(ctx, "delete finished", s.q.deleteFinished, nanos(before), int64(limit), nanos(now))
}

// execCount runs the call op, one statement (retried as retry allows), and
// returns how many rows it changed.
func (s *Store) execCount(ctx context.Context, op, query string, args ...any) (int, error) {
	ctx, cancel, err := s.begin(ctx, op)
	if err != nil {
		return 0, err
	}
	defer cancel()
	var n int64
	err = s.retry(ctx, op, func(ctx context.Context) error {
		tag, err := s.pool.Exec(ctx, query, args...)
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
