package pgstore

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sluicehq/sluice/jobs"
)

// Get implements jobs.Store.
func (s *Store) Get(ctx context.Context, id int64) (*jobs.Job, error) {
	const op = "get"
	ctx, cancel, err := s.begin(ctx, op)
	if err != nil {
		return nil, err
	}
	defer cancel()
	var j *jobs.Job
	err = s.retry(ctx, op, func(ctx context.Context) error {
		var err error
		j, err = scanJob(s.pool.QueryRow(ctx, s.q.get, id))
		if errors.Is(err, pgx.ErrNoRows) {
			return jobs.ErrNotFound
		}
		return err
	})
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
	if !storable(f.Queue) || !storable(string(f.State)) || !storable(f.Group) {
		return []*jobs.Job{}, nil // no job holds such text; the server would refuse the parameter
	}
	sql, args := s.listSQL(f)
	var out []*jobs.Job
	err = s.retry(ctx, op, func(ctx context.Context) error {
		rows, err := s.pool.Query(ctx, sql, args...)
		if err != nil {
			return err
		}
		out, err = scanJobs(rows)
		return err
	})
	if err != nil {
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
	if !storable(name) {
		return nil, jobs.ErrNotFound
	}
	out := map[jobs.State]int{}
	err = s.retry(ctx, op, func(ctx context.Context) error {
		clear(out)
		rows, err := s.pool.Query(ctx, s.q.group, name)
		if err != nil {
			return err
		}
		var (
			state string
			n     int64
		)
		_, err = pgx.ForEachRow(rows, []any{&state, &n}, func() error {
			out[jobs.State(state)] = int(n)
			return nil
		})
		return err
	})
	if err != nil {
		return nil, s.wrap(ctx, op, err)
	}
	if len(out) == 0 {
		return nil, jobs.ErrNotFound
	}
	return out, nil
}

// GetQueue implements jobs.Store.
func (s *Store) GetQueue(ctx context.Context, name string) (jobs.QueueConfig, error) {
	const op = "get queue"
	ctx, cancel, err := s.begin(ctx, op)
	if err != nil {
		return jobs.QueueConfig{}, err
	}
	defer cancel()
	if !storable(name) {
		return jobs.QueueConfig{}, jobs.ErrNotFound
	}
	var q jobs.QueueConfig
	err = s.retry(ctx, op, func(ctx context.Context) error {
		var err error
		q, err = scanQueue(s.pool.QueryRow(ctx, s.q.getQueue, name))
		if errors.Is(err, pgx.ErrNoRows) {
			return jobs.ErrNotFound
		}
		return err
	})
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
	var out []jobs.QueueConfig
	err = s.retry(ctx, op, func(ctx context.Context) error {
		out = []jobs.QueueConfig{}
		rows, err := s.pool.Query(ctx, s.q.queues)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			q, err := scanQueue(rows)
			if err != nil {
				return err
			}
			out = append(out, q)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, s.wrap(ctx, op, err)
	}
	return out, nil
}

// QueueStats implements jobs.Store. An unknown queue has zero counts.
// Waiting costs O(1) (a counter kept by triggers and the store's statements); Running and Finished
// count index entries.
func (s *Store) QueueStats(ctx context.Context, queue string, since time.Time) (jobs.QueueStats, error) {
	const op = "queue stats"
	ctx, cancel, err := s.begin(ctx, op)
	if err != nil {
		return jobs.QueueStats{}, err
	}
	defer cancel()
	if !storable(queue) {
		return jobs.QueueStats{}, nil // an unknown queue
	}
	var waiting, running, finished int64
	err = s.retry(ctx, op, func(ctx context.Context) error {
		return s.pool.QueryRow(ctx, s.q.queueStats, queue, nanos(since)).Scan(&waiting, &running, &finished)
	})
	if err != nil {
		return jobs.QueueStats{}, s.wrap(ctx, op, err)
	}
	return jobs.QueueStats{Waiting: int(waiting), Running: int(running), Finished: int(finished)}, nil
}

// NextDue implements jobs.Lookahead.
func (s *Store) NextDue(ctx context.Context, now time.Time, queue string) (time.Time, bool, error) {
	const op = "next due"
	ctx, cancel, err := s.begin(ctx, op)
	if err != nil {
		return time.Time{}, false, err
	}
	defer cancel()
	if !storable(queue) {
		return time.Time{}, false, nil // an unknown queue
	}
	var at *int64
	err = s.retry(ctx, op, func(ctx context.Context) error {
		return s.pool.QueryRow(ctx, s.q.nextDue, queue, nanos(now), priorities).Scan(&at)
	})
	if err != nil {
		return time.Time{}, false, s.wrap(ctx, op, err)
	}
	if at == nil {
		return time.Time{}, false, nil
	}
	return fromNanos(*at), true, nil
}

// storable reports whether PostgreSQL can take s as a text parameter (no
// NUL byte, valid UTF-8). Every stored name passed jobs' validation, so a
// lookup by anything else finds nothing.
func storable(s string) bool { return jobs.CleanText(s) == s }
