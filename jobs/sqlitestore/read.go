package sqlitestore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/sluicehq/sluice/jobs"
)

// The read methods run on the read-only pool and never wait for the
// writer.

// Get implements jobs.Store.
func (s *Store) Get(ctx context.Context, id int64) (*jobs.Job, error) {
	const op = "get"
	ctx, cancel, err := s.begin(ctx, op)
	if err != nil {
		return nil, err
	}
	defer cancel()
	j, err := scanJob(s.r.QueryRowContext(ctx, `SELECT `+jobCols+` FROM jobs WHERE id = ?1`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, jobs.ErrNotFound
	}
	if err != nil {
		return nil, s.wrap(ctx, op, err)
	}
	return j, nil
}

// DefaultListLimit is List's limit when ListFilter.Limit is zero.
const DefaultListLimit = 100

// List implements jobs.Store. It walks jobs by ID from f.AfterID, so its
// cost grows with the jobs it skips. A negative Limit counts as zero.
func (s *Store) List(ctx context.Context, f jobs.ListFilter) ([]*jobs.Job, error) {
	const op = "list"
	ctx, cancel, err := s.begin(ctx, op)
	if err != nil {
		return nil, err
	}
	defer cancel()
	var (
		where = []string{"id > ?"}
		args  = []any{f.AfterID}
	)
	if f.Queue != "" {
		where = append(where, "queue = ?")
		args = append(args, f.Queue)
	}
	if f.State != "" {
		where = append(where, "state = ?")
		args = append(args, string(f.State))
	}
	if f.Group != "" {
		where = append(where, "group_name = ?")
		args = append(args, f.Group)
	}
	limit := f.Limit
	if limit <= 0 {
		limit = DefaultListLimit
	}
	args = append(args, limit)
	rows, err := s.r.QueryContext(ctx, `SELECT `+jobCols+` FROM jobs WHERE `+
		strings.Join(where, " AND ")+` ORDER BY id LIMIT ?`, args...)
	if err != nil {
		return nil, s.wrap(ctx, op, err)
	}
	defer rows.Close()
	out := []*jobs.Job{}
	for rows.Next() {
		j, err := scanJob(rows)
		if err != nil {
			return nil, s.wrap(ctx, op, err)
		}
		out = append(out, j)
	}
	if err := rows.Err(); err != nil {
		return nil, s.wrap(ctx, op, err)
	}
	return out, nil
}

// Group implements jobs.Store. The map holds only states with jobs.
func (s *Store) Group(ctx context.Context, name string) (map[jobs.State]int, error) {
	const op = "group"
	ctx, cancel, err := s.begin(ctx, op)
	if err != nil {
		return nil, err
	}
	defer cancel()
	rows, err := s.r.QueryContext(ctx, `SELECT state, count(*) FROM jobs WHERE group_name = ?1 GROUP BY state`, name)
	if err != nil {
		return nil, s.wrap(ctx, op, err)
	}
	defer rows.Close()
	out := map[jobs.State]int{}
	for rows.Next() {
		var (
			state string
			n     int
		)
		if err := rows.Scan(&state, &n); err != nil {
			return nil, s.wrap(ctx, op, err)
		}
		out[jobs.State(state)] = n
	}
	if err := rows.Err(); err != nil {
		return nil, s.wrap(ctx, op, err)
	}
	if len(out) == 0 {
		return nil, jobs.ErrNotFound
	}
	return out, nil
}

const queueCols = `name, concurrency, capacity, policy, max_wait, rate_limit, rate_burst, paused, idempotency_window`

func scanQueue(sc scanner) (jobs.QueueConfig, error) {
	var (
		q               jobs.QueueConfig
		policy          string
		maxWait, window int64
		paused          int64
	)
	err := sc.Scan(&q.Name, &q.Concurrency, &q.Capacity, &policy, &maxWait, &q.RateLimit, &q.RateBurst, &paused, &window)
	q.Policy = jobs.FullPolicy(policy)
	q.MaxWait = time.Duration(maxWait)
	q.Paused = paused != 0
	q.IdempotencyWindow = time.Duration(window)
	return q, err
}

// GetQueue implements jobs.Store.
func (s *Store) GetQueue(ctx context.Context, name string) (jobs.QueueConfig, error) {
	const op = "get queue"
	ctx, cancel, err := s.begin(ctx, op)
	if err != nil {
		return jobs.QueueConfig{}, err
	}
	defer cancel()
	q, err := scanQueue(s.r.QueryRowContext(ctx, `SELECT `+queueCols+` FROM queues WHERE name = ?1`, name))
	if errors.Is(err, sql.ErrNoRows) {
		return jobs.QueueConfig{}, jobs.ErrNotFound
	}
	if err != nil {
		return jobs.QueueConfig{}, s.wrap(ctx, op, err)
	}
	return q, nil
}

// Queues implements jobs.Store.
func (s *Store) Queues(ctx context.Context) ([]jobs.QueueConfig, error) {
	const op = "queues"
	ctx, cancel, err := s.begin(ctx, op)
	if err != nil {
		return nil, err
	}
	defer cancel()
	rows, err := s.r.QueryContext(ctx, `SELECT `+queueCols+` FROM queues ORDER BY name`)
	if err != nil {
		return nil, s.wrap(ctx, op, err)
	}
	defer rows.Close()
	out := []jobs.QueueConfig{}
	for rows.Next() {
		q, err := scanQueue(rows)
		if err != nil {
			return nil, s.wrap(ctx, op, err)
		}
		out = append(out, q)
	}
	if err := rows.Err(); err != nil {
		return nil, s.wrap(ctx, op, err)
	}
	return out, nil
}

// QueueStats implements jobs.Store. An unknown queue has zero counts.
// Waiting costs O(1) (a counter kept by triggers); Running and Finished
// count index entries.
func (s *Store) QueueStats(ctx context.Context, queue string, since time.Time) (jobs.QueueStats, error) {
	const op = "queue stats"
	ctx, cancel, err := s.begin(ctx, op)
	if err != nil {
		return jobs.QueueStats{}, err
	}
	defer cancel()
	var st jobs.QueueStats
	// One statement, so one snapshot.
	err = s.r.QueryRowContext(ctx, `SELECT
		(SELECT COALESCE(max(waiting), 0) FROM queues WHERE name = ?1),
		(SELECT count(*) FROM jobs WHERE queue = ?1 AND state = 'running'),
		(SELECT count(*) FROM jobs WHERE queue = ?1 AND finished_at IS NOT NULL AND finished_at > ?2)`,
		queue, nanos(since)).Scan(&st.Waiting, &st.Running, &st.Finished)
	if err != nil {
		return jobs.QueueStats{}, s.wrap(ctx, op, err)
	}
	return st, nil
}

// sqlNextDue finds a queue's next scheduled job: ?1 queue, ?2 now. One
// index seek per priority in jobs_fetch, past now, like Fetch's; a job
// whose deadline comes first is skipped (it will never run).
var sqlNextDue = func() string {
	var b strings.Builder
	b.WriteString(`SELECT min(r) FROM (`)
	for p := jobs.MaxPriority; p >= 0; p-- {
		if p < jobs.MaxPriority {
			b.WriteString(` UNION ALL `)
		}
		fmt.Fprintf(&b, `SELECT (SELECT run_at FROM jobs WHERE queue = ?1 AND state = 'waiting' AND priority = %d
			AND run_at > ?2 AND (deadline IS NULL OR deadline > run_at) ORDER BY run_at LIMIT 1) AS r`, p)
	}
	b.WriteString(`) WHERE NOT EXISTS (SELECT 1 FROM queues WHERE name = ?1 AND paused <> 0)`)
	return b.String()
}()

// NextDue implements jobs.Lookahead.
func (s *Store) NextDue(ctx context.Context, now time.Time, queue string) (time.Time, bool, error) {
	const op = "next due"
	ctx, cancel, err := s.begin(ctx, op)
	if err != nil {
		return time.Time{}, false, err
	}
	defer cancel()
	var at sql.NullInt64
	if err := s.r.QueryRowContext(ctx, sqlNextDue, queue, nanos(now)).Scan(&at); err != nil {
		return time.Time{}, false, s.wrap(ctx, op, err)
	}
	if !at.Valid {
		return time.Time{}, false, nil
	}
	return fromNanos(at.Int64), true, nil
}
