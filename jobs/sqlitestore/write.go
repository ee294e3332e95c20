package sqlitestore

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/sluicehq/sluice/jobs"
)

// Enqueue implements jobs.Store. Each job is normalized again (a no-op for
// normalized jobs); a job whose Queue is neither "" nor queue is a
// *jobs.ValidationError.
//
// Under FullShed the job shed is the one that would run last: the lowest
// priority, then the latest RunAt, then the highest ID. For jobs enqueued
// without a RunAt that is the newest; a job scheduled far ahead (or
// waiting out a long retry backoff) goes before a newer one due now.
//
// A key's binding starts when its job is created: a duplicate within the
// window does not extend it. A refusal's RetryAfter is estimated from the
// queue's completions in the last 10s.
//
// Cost: one transaction; one INSERT per job, one indexed lookup per
// idempotency key, two statements per shed job; the capacity check reads
// a counter, whatever the queue's length.
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
	err = s.writeTx(ctx, func(tx *sql.Tx) error {
		results, err = s.enqueueTx(ctx, tx, now, queue, batch)
		return err
	})
	if err != nil {
		return nil, s.wrap(ctx, op, err)
	}
	// One notification: due now if any inserted job is, else scheduled for
	// the earliest (a worker then needs no fetch until that time).
	var at time.Time
	inserted, due := false, false
	for _, r := range results {
		if r.Err != nil || r.Duplicate {
			continue
		}
		inserted = true
		if runAt := r.Job.RunAt; !runAt.After(now) {
			due = true
		} else if at.IsZero() || runAt.Before(at) {
			at = runAt
		}
	}
	if due {
		at = time.Time{}
	}
	if inserted {
		s.notify(jobs.Notification{Queue: queue, At: at})
	}
	return results, nil
}

func (s *Store) enqueueTx(ctx context.Context, tx *sql.Tx, now time.Time, queue string, batch []jobs.NewJob) ([]jobs.EnqueueResult, error) {
	// The queue, created with defaults if needed.
	var (
		capacity, waiting int
		policy            jobs.FullPolicy
		window            int64
	)
	err := tx.StmtContext(ctx, s.stmts.queueForEnqueue).QueryRowContext(ctx, queue).Scan(&capacity, &policy, &window, &waiting)
	if errors.Is(err, sql.ErrNoRows) {
		q := jobs.QueueConfig{Name: queue}
		if err := q.Normalize(); err != nil {
			return nil, err
		}
		if _, err := tx.StmtContext(ctx, s.stmts.queueInsertDefault).ExecContext(ctx, queueArgs(q)...); err != nil {
			return nil, err
		}
		capacity, policy, window, waiting = q.Capacity, q.Policy, int64(q.IdempotencyWindow), 0
	} else if err != nil {
		return nil, err
	}

	var idem, insert, victim, shed *sql.Stmt
	nowNS := nanos(now)
	stamp := fromNanos(nowNS)
	results := make([]jobs.EnqueueResult, len(batch))
	for i := range batch {
		n := &batch[i]
		if n.IdempotencyKey != "" {
			if idem == nil {
				idem = tx.StmtContext(ctx, s.stmts.idempotent)
			}
			old, err := scanJob(idem.QueryRowContext(ctx, queue, n.IdempotencyKey))
			switch {
			case errors.Is(err, sql.ErrNoRows):
			case err != nil:
				return nil, err
			case nanos(old.CreatedAt) > nowNS-window: // still bound
				if old.Kind != n.Kind || !jobs.SamePayload(old.Payload, n.Payload) {
					results[i].Err = jobs.ErrIdempotencyConflict
				} else {
					results[i] = jobs.EnqueueResult{Job: old, Duplicate: true}
				}
				continue
			}
		}

		victimID := int64(0)
		if waiting+1 > capacity {
			if policy != jobs.FullShed {
				return nil, s.queueFull(ctx, tx, now, queue, capacity, false, waiting+1-capacity)
			}
			if victim == nil {
				victim = tx.StmtContext(ctx, s.stmts.shedVictim)
			}
			err := victim.QueryRowContext(ctx, queue, n.Priority).Scan(&victimID)
			if errors.Is(err, sql.ErrNoRows) {
				return nil, s.queueFull(ctx, tx, now, queue, capacity, true, waiting+1-capacity)
			} else if err != nil {
				return nil, err
			}
		}

		if insert == nil {
			insert = tx.StmtContext(ctx, s.stmts.insertJob)
		}
		res, err := insert.ExecContext(ctx, queue, n.Kind, string(n.Payload), n.Priority,
			nullString(n.IdempotencyKey), nanos(n.RunAt), nullNanos(n.Deadline), int64(n.AttemptTimeout),
			n.MaxAttempts, int64(n.BackoffMin), int64(n.BackoffMax), nullString(n.Group),
			boolInt(n.CancelGroupOnFailure), nowNS)
		if err != nil {
			return nil, err
		}
		id, err := res.LastInsertId()
		if err != nil {
			return nil, err
		}
		waiting++
		if victimID != 0 {
			if shed == nil {
				shed = tx.StmtContext(ctx, s.stmts.shed)
			}
			reason := fmt.Sprintf("shed for job %d (priority %d) from full queue %q", id, n.Priority, queue)
			if _, err := shed.ExecContext(ctx, victimID, reason, nowNS); err != nil {
				return nil, err
			}
			waiting--
			results[i].Shed = victimID
		}
		// The job as Get will return it.
		j := &jobs.Job{ID: id, NewJob: *n, State: jobs.StateWaiting, CreatedAt: stamp, UpdatedAt: stamp}
		j.RunAt = stored(n.RunAt)
		j.Deadline = stored(n.Deadline)
		results[i].Job = j
	}
	return results, nil
}

// retryAfterWindow is how far back queueFull looks for completions.
const retryAfterWindow = 10 * time.Second

// queueFull builds the refusal, with a Retry-After estimate: the time the
// queue's completion rate over the last 10s (or over its last 100
// completions, if they were quicker) needs to free need places, between
// 10ms and 5 minutes; zero when nothing completed in the window.
func (s *Store) queueFull(ctx context.Context, tx *sql.Tx, now time.Time, queue string, capacity int, shed bool, need int) error {
	e := &jobs.QueueFullError{Queue: queue, Capacity: capacity, Shed: shed}
	var n, oldest int64
	err := tx.StmtContext(ctx, s.stmts.retryAfter).QueryRowContext(ctx, queue, nanos(now), int64(retryAfterWindow)).Scan(&n, &oldest)
	if err != nil {
		return err
	}
	if n > 0 {
		elapsed := retryAfterWindow
		if n >= retryAfterSample {
			elapsed = max(time.Duration(nanos(now)-oldest), time.Nanosecond)
		}
		d := time.Duration(float64(need) * float64(elapsed) / float64(n))
		e.RetryAfter = min(max(d, 10*time.Millisecond), 5*time.Minute)
	}
	return e
}

func queueArgs(q jobs.QueueConfig) []any {
	return []any{q.Name, q.Concurrency, q.Capacity, string(q.Policy), int64(q.MaxWait),
		q.RateLimit, q.RateBurst, boolInt(q.Paused), int64(q.IdempotencyWindow)}
}

// Fetch implements jobs.Store. It returns the claimed jobs in run order
// (priority, RunAt, ID). Cost: one UPDATE ... RETURNING statement.
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
	// An explicit transaction, committed only after every RETURNING row
	// was read: in autocommit mode SQLite commits the UPDATE at its first
	// step, so a ctx canceled while the rows were being read would leave
	// jobs claimed that the caller never received.
	var out []*jobs.Job
	err = s.writeTx(ctx, func(tx *sql.Tx) error {
		nowNS, leaseNS := nanos(now), nanos(now.Add(lease))
		rows, err := tx.StmtContext(ctx, s.stmts.fetch).QueryContext(ctx, queue, owner, leaseNS, nowNS, limit)
		if err != nil {
			return err
		}
		defer rows.Close()
		var odd []int // indexes in out of jobs scanFetched could not decode
		for rows.Next() {
			j, ok, err := scanFetched(rows, queue, owner, nowNS, leaseNS)
			if err != nil {
				return err
			}
			if !ok {
				odd = append(odd, len(out))
			}
			out = append(out, j)
		}
		if err := rows.Err(); err != nil {
			return err
		}
		if err := rows.Close(); err != nil {
			return err
		}
		if len(out) == 0 {
			return nil
		}
		for _, i := range odd {
			j, err := scanJob(tx.QueryRowContext(ctx, `SELECT `+jobCols+` FROM jobs WHERE id = ?1`, out[i].ID))
			if err != nil {
				return fmt.Errorf("job %d: %w", out[i].ID, err)
			}
			out[i] = j
		}
		// The waiting counter's trigger does not fire for Fetch (see
		// schema steps 2 and 3): one update for the whole batch.
		_, err = tx.StmtContext(ctx, s.stmts.fetchCount).ExecContext(ctx, queue, len(out))
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

// Heartbeat implements jobs.Store. Cost: one transaction, one statement
// per held job.
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
	expires := nanos(now.Add(lease))
	err = s.writeTx(ctx, func(tx *sql.Tx) error {
		lost, cancelReq = nil, nil
		st := tx.StmtContext(ctx, s.stmts.heartbeat)
		for _, h := range held {
			var req int64
			err := st.QueryRowContext(ctx, h.ID, h.Attempt, owner, expires).Scan(&req)
			switch {
			case errors.Is(err, sql.ErrNoRows):
				lost = append(lost, h.ID)
			case err != nil:
				return err
			case req != 0:
				cancelReq = append(cancelReq, h.ID)
			}
		}
		return nil
	})
	if err != nil {
		return nil, nil, s.wrap(ctx, op, err)
	}
	return lost, cancelReq, nil
}

// Complete implements jobs.Store. A Retry or Released outcome for a job
// whose cancellation was requested ends it StateCanceled rather than
// running it again. An outcome of an unknown kind fails the whole call.
// Cost: one transaction: one statement for the Succeeded outcomes (when
// there are at least four, each for a different job), one per other
// outcome, two more per group cancellation. When some of the Succeeded
// ones do not apply (a lease lost), the transaction is rolled back and run
// again, within the same Config.Timeout, with the bulk statement that says
// which did.
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
	var applied []bool
	bulk := bulkSucceeded(outcomes)
	// The bulk statement first runs without RETURNING (reading the IDs
	// back costs a tenth of it); when some of its outcomes do not apply,
	// the transaction starts again with the statement that says which.
	var canceled []int64 // running jobs of failed groups
	for returning := false; ; returning = true {
		err = s.writeTx(ctx, func(tx *sql.Tx) error {
			applied = make([]bool, len(outcomes))
			canceled = canceled[:0]
			if bulk != nil {
				if err := s.completeBulkTx(ctx, tx, nowNS, owner, outcomes, bulk, applied, returning); err != nil {
					return err
				}
			}
			var stmts [jobs.Expired + 1]*sql.Stmt
			for i, o := range outcomes {
				if bulk != nil && bulk[i] {
					continue
				}
				st := stmts[o.Kind]
				if st == nil {
					st = tx.StmtContext(ctx, s.completeStmt(o.Kind))
					stmts[o.Kind] = st
				}
				args := []any{o.ID, o.Attempt.Attempt, owner, nowNS}
				switch o.Kind {
				case jobs.Failed:
					args = append(args, jobs.CleanText(o.Error), jobs.CleanText(o.Reason))
				case jobs.Canceled, jobs.Expired:
					args = append(args, jobs.CleanText(o.Reason))
				case jobs.Retry:
					runAt := o.RunAt
					if runAt.IsZero() {
						runAt = now
					}
					args = append(args, jobs.CleanText(o.Error), nanos(runAt))
				case jobs.Released:
					var runAt any // NULL: keep its place in line
					if !o.RunAt.IsZero() {
						runAt = nanos(o.RunAt)
					}
					args = append(args, runAt)
				}
				var (
					state, group string
					cancelGroup  int64
				)
				err := st.QueryRowContext(ctx, args...).Scan(&state, &group, &cancelGroup)
				if errors.Is(err, sql.ErrNoRows) {
					continue
				} else if err != nil {
					return err
				}
				applied[i] = true
				if jobs.State(state) == jobs.StateFailed && cancelGroup != 0 && group != "" {
					if err := s.cancelGroupTx(ctx, tx, group, o.ID, nowNS, &canceled); err != nil {
						return err
					}
				}
			}
			return nil
		})
		if !errors.Is(err, errBulkShort) || returning {
			break
		}
	}
	if err != nil {
		return nil, s.wrap(ctx, op, err)
	}
	s.notifyCanceled(canceled)
	return applied, nil
}

// errBulkShort is completeBulkTx's report that not every outcome applied.
var errBulkShort = errors.New("sqlitestore: some outcomes of the batch do not apply")

// bulkSucceeded returns which outcomes Complete applies with one
// statement: the Succeeded ones for jobs that have no other outcome in the
// batch (so that each is fenced on its own) and whose attempt packs into
// one integer. It returns nil when there are too few for the bulk
// statement to pay.
func bulkSucceeded(outcomes []jobs.Outcome) []bool {
	const minBulk = 4
	n := 0
	for _, o := range outcomes {
		if o.Kind == jobs.Succeeded {
			n++
		}
	}
	if n < minBulk {
		return nil
	}
	seen := make(map[int64]int, len(outcomes))
	for _, o := range outcomes {
		seen[o.ID]++
	}
	bulk := make([]bool, len(outcomes))
	n = 0
	for i, o := range outcomes {
		if o.Kind == jobs.Succeeded && seen[o.ID] == 1 && packable(o.Attempt) {
			bulk[i] = true
			n++
		}
	}
	if n < minBulk {
		return nil
	}
	return bulk
}

// completeBulkTx applies the outcomes marked in bulk (Succeeded, one per
// job) with one statement, and marks those that applied. Unless returning
// is set, it reads back only how many applied, and fails with errBulkShort
// when that is not all of them.
func (s *Store) completeBulkTx(ctx context.Context, tx *sql.Tx, nowNS int64, owner string, outcomes []jobs.Outcome, bulk, applied []bool, returning bool) error {
	n := 0
	buf := make([]byte, 0, 16*len(outcomes))
	buf = append(buf, '[')
	for i, o := range outcomes {
		if !bulk[i] {
			continue
		}
		n++
		if len(buf) > 1 {
			buf = append(buf, ',')
		}
		buf = strconv.AppendInt(buf, o.ID<<attemptBits|int64(o.Attempt.Attempt), 10)
	}
	buf = append(buf, ']')
	if !returning {
		res, err := tx.StmtContext(ctx, s.stmts.succeededBatch).ExecContext(ctx, string(buf), nowNS, owner)
		if err != nil {
			return err
		}
		// Each outcome names a different job, so n rows changed means
		// every outcome applied.
		if k, err := res.RowsAffected(); err != nil {
			return err
		} else if k != int64(n) {
			return errBulkShort
		}
		copy(applied, bulk)
		return nil
	}
	index := make(map[int64]int, n)
	for i, o := range outcomes {
		if bulk[i] {
			index[o.ID] = i
		}
	}
	rows, err := tx.StmtContext(ctx, s.stmts.succeededBatchReturning).QueryContext(ctx, string(buf), nowNS, owner)
	return eachID(rows, err, func(id int64) {
		if i, ok := index[id]; ok {
			applied[i] = true
		}
	})
}

// eachID calls f with each ID that rows, the result of a query (and
// err, its error), returns, and closes rows.
func eachID(rows *sql.Rows, err error, f func(int64)) error {
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			return err
		}
		f(id)
	}
	if err := rows.Err(); err != nil {
		return err
	}
	return rows.Close()
}

func (s *Store) completeStmt(k jobs.OutcomeKind) *sql.Stmt {
	switch k {
	case jobs.Succeeded:
		return s.stmts.succeeded
	case jobs.Retry:
		return s.stmts.retry
	case jobs.Failed:
		return s.stmts.failed
	case jobs.Canceled:
		return s.stmts.canceled
	case jobs.Released:
		return s.stmts.released
	default:
		return s.stmts.expired
	}
}

// cancelGroupTx cancels group's waiting jobs and requests the cancellation
// of its running ones, because job failed. It appends the running ones'
// IDs to *canceled, for the notifications sent once the transaction
// commits.
func (s *Store) cancelGroupTx(ctx context.Context, tx *sql.Tx, group string, job int64, nowNS int64, canceled *[]int64) error {
	reason := fmt.Sprintf("group %q canceled: job %d failed", group, job)
	if _, err := tx.StmtContext(ctx, s.stmts.groupCancelWaiting).ExecContext(ctx, group, reason, nowNS); err != nil {
		return err
	}
	rows, err := tx.StmtContext(ctx, s.stmts.groupCancelRunning).QueryContext(ctx, group, reason, nowNS)
	return eachID(rows, err, func(id int64) { *canceled = append(*canceled, id) })
}

// notifyCanceled tells listeners that the cancellation of the running
// jobs ids was requested.
func (s *Store) notifyCanceled(ids []int64) {
	for _, id := range ids {
		s.notify(jobs.Notification{CancelID: id})
	}
}

// Cancel implements jobs.Store. A second Cancel of a running job keeps the
// first reason.
func (s *Store) Cancel(ctx context.Context, now time.Time, id int64, reason string) (*jobs.Job, error) {
	const op = "cancel"
	ctx, cancel, err := s.begin(ctx, op)
	if err != nil {
		return nil, err
	}
	defer cancel()
	var j *jobs.Job
	err = s.writeTx(ctx, func(tx *sql.Tx) error {
		var err error
		j, err = scanJob(tx.QueryRowContext(ctx, `UPDATE jobs SET
			state = CASE WHEN state = 'waiting' THEN 'canceled' ELSE state END,
			finished_at = CASE WHEN state = 'waiting' THEN ?2 ELSE finished_at END,
			reason = CASE WHEN state = 'running' AND cancel_requested <> 0 THEN reason ELSE ?3 END,
			cancel_requested = CASE WHEN state = 'running' THEN 1 ELSE cancel_requested END,
			updated_at = ?2
			WHERE id = ?1 AND state IN ('waiting', 'running')
			RETURNING `+jobCols, id, nanos(now), jobs.CleanText(reason)))
		if errors.Is(err, sql.ErrNoRows) {
			j, err = scanJob(tx.QueryRowContext(ctx, `SELECT `+jobCols+` FROM jobs WHERE id = ?1`, id))
			if errors.Is(err, sql.ErrNoRows) {
				return jobs.ErrNotFound
			}
		}
		return err
	})
	if err != nil {
		return nil, s.wrap(ctx, op, err)
	}
	if j.State == jobs.StateRunning && j.CancelRequested {
		s.notify(jobs.Notification{CancelID: j.ID})
	}
	return j, nil
}

// RecoverLeases implements jobs.Store. A recovered job whose cancellation
// was requested ends StateCanceled; one that fails for good applies its
// group's CancelGroupOnFailure rule, as in Complete. LastError says the
// lease expired.
func (s *Store) RecoverLeases(ctx context.Context, now time.Time) (int, error) {
	const op = "recover leases"
	ctx, cancel, err := s.begin(ctx, op)
	if err != nil {
		return 0, err
	}
	defer cancel()
	nowNS := nanos(now)
	n := 0
	var canceled []int64 // running jobs of failed groups
	err = s.writeTx(ctx, func(tx *sql.Tx) error {
		n, canceled = 0, canceled[:0]
		rows, err := tx.QueryContext(ctx, `UPDATE jobs SET
			state = CASE WHEN cancel_requested <> 0 THEN 'canceled'
				WHEN attempt >= max_attempts THEN 'failed' ELSE 'waiting' END,
			finished_at = CASE WHEN cancel_requested <> 0 OR attempt >= max_attempts THEN ?1 END,
			last_error = 'lease of ' || lease_owner || ' expired',
			lease_owner = NULL, lease_expires_at = NULL, updated_at = ?1
			WHERE state = 'running' AND lease_expires_at < ?1
			RETURNING id, state, COALESCE(group_name, ''), cancel_group_on_failure`, nowNS)
		if err != nil {
			return err
		}
		type failed struct {
			id    int64
			group string
		}
		var groups []failed
		for rows.Next() {
			var (
				id           int64
				state, group string
				cancelGroup  int64
			)
			if err := rows.Scan(&id, &state, &group, &cancelGroup); err != nil {
				rows.Close()
				return err
			}
			n++
			if jobs.State(state) == jobs.StateFailed && cancelGroup != 0 && group != "" {
				groups = append(groups, failed{id, group})
			}
		}
		if err := rows.Err(); err != nil {
			rows.Close()
			return err
		}
		if err := rows.Close(); err != nil {
			return err
		}
		for _, g := range groups {
			if err := s.cancelGroupTx(ctx, tx, g.group, g.id, nowNS, &canceled); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return 0, s.wrap(ctx, op, err)
	}
	s.notifyCanceled(canceled)
	return n, nil
}

// ExpireDue implements jobs.Store. Cost: one statement, served by an index
// on waiting jobs' deadlines.
func (s *Store) ExpireDue(ctx context.Context, now time.Time) (int, error) {
	return s.execCount(ctx, "expire", `UPDATE jobs SET state = 'expired',
		reason = 'deadline passed before the job could run', finished_at = ?1, updated_at = ?1
		WHERE state = 'waiting' AND deadline IS NOT NULL AND deadline <= ?1`, nanos(now))
}

// DeleteFinished implements jobs.Store. It walks each queue's finished
// jobs through the jobs_finished index, oldest first. It never deletes the
// job with the highest ID: SQLite gives a new row the highest rowid plus
// one, so deleting it would hand its ID to the next job. Cost: one
// statement in one write transaction; limit bounds how long it holds the
// writer.
func (s *Store) DeleteFinished(ctx context.Context, now, before time.Time, limit int) (int, error) {
	if limit <= 0 {
		return 0, nil
	}
	return s.execCount(ctx, "delete finished", `DELETE FROM jobs WHERE id IN (
		SELECT j.id FROM queues q CROSS JOIN jobs j
		WHERE j.queue = q.name AND j.finished_at IS NOT NULL
			AND j.finished_at < min(?1, ?3 - q.idempotency_window)
			AND j.state IN ('succeeded', 'failed', 'canceled', 'expired', 'shed')
			AND j.id < (SELECT max(id) FROM jobs)
		LIMIT ?2)`, nanos(before), limit, nanos(now))
}

// execCount runs the call op, one statement on the writer, and returns
// how many rows it changed.
func (s *Store) execCount(ctx context.Context, op, query string, args ...any) (int, error) {
	ctx, cancel, err := s.begin(ctx, op)
	if err != nil {
		return 0, err
	}
	defer cancel()
	res, err := s.w.ExecContext(ctx, query, args...)
	if err != nil {
		return 0, s.wrap(ctx, op, err)
	}
	n, err := res.RowsAffected()
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
	_, err = s.w.ExecContext(ctx, `INSERT INTO queues (name, concurrency, capacity, policy, max_wait,
		rate_limit, rate_burst, paused, idempotency_window)
		VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
		ON CONFLICT (name) DO UPDATE SET concurrency = excluded.concurrency,
			capacity = excluded.capacity, policy = excluded.policy, max_wait = excluded.max_wait,
			rate_limit = excluded.rate_limit, rate_burst = excluded.rate_burst,
			paused = excluded.paused, idempotency_window = excluded.idempotency_window`,
		queueArgs(q)...)
	if err != nil {
		return s.wrap(ctx, op, err)
	}
	s.notify(jobs.Notification{Queue: q.Name})
	return nil
}
