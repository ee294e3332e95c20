package pgstore

import (
	"encoding/json"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sluicehq/sluice/jobs"
)

// specCols are the columns of the jobs table (aliased j) that jobCols and
// fetchCols share after the ID, in specVars.dest's order.
const specCols = `j.kind, j.payload, j.priority, COALESCE(j.idempotency_key, ''), j.run_at,
	COALESCE(j.deadline, 0), j.attempt_timeout, j.max_attempts, j.backoff_min, j.backoff_max,
	COALESCE(j.group_name, ''), j.cancel_group_on_failure, j.attempt, j.last_error, j.reason,
	j.created_at`

// jobCols are the columns scanJob reads, in its order, of the jobs table
// aliased j.
const jobCols = `j.id, j.queue, ` + specCols + `, j.state, j.updated_at, COALESCE(j.finished_at, 0),
	COALESCE(j.lease_owner, ''), COALESCE(j.lease_expires_at, 0), j.cancel_requested`

// fetchCols are the columns Fetch returns, in scanFetched's order: the
// others follow from the claim (queue, state running, lease, updated_at,
// no cancel request, not finished).
const fetchCols = `j.id, ` + specCols

// specVars holds the scan targets of specCols that need converting.
type specVars struct {
	j                                        *jobs.Job
	payload                                  []byte
	priority                                 int16
	runAt, deadline, created, attemptTimeout int64
	bmin, bmax                               int64
	maxAttempts, attempt                     int32
}

// dest returns the Scan targets of specCols.
func (v *specVars) dest() []any {
	j := v.j
	return []any{&j.Kind, &v.payload, &v.priority, &j.IdempotencyKey, &v.runAt,
		&v.deadline, &v.attemptTimeout, &v.maxAttempts, &v.bmin, &v.bmax,
		&j.Group, &j.CancelGroupOnFailure, &v.attempt, &j.LastError, &j.Reason, &v.created}
}

// set converts the scanned values into the job.
func (v *specVars) set() {
	j := v.j
	j.Payload = json.RawMessage(v.payload)
	j.Priority = int(v.priority)
	j.RunAt = fromNanos(v.runAt)
	j.Deadline = fromNanos(v.deadline)
	j.AttemptTimeout = time.Duration(v.attemptTimeout)
	j.MaxAttempts = int(v.maxAttempts)
	j.BackoffMin = time.Duration(v.bmin)
	j.BackoffMax = time.Duration(v.bmax)
	j.Attempt = int(v.attempt)
	j.CreatedAt = fromNanos(v.created)
}

// scanJob reads one row of jobCols.
func scanJob(row pgx.Row) (*jobs.Job, error) {
	var (
		j                jobs.Job
		state            string
		updated, fin, le int64
	)
	v := specVars{j: &j}
	dest := append([]any{&j.ID, &j.Queue}, v.dest()...)
	dest = append(dest, &state, &updated, &fin, &j.LeaseOwner, &le, &j.CancelRequested)
	if err := row.Scan(dest...); err != nil {
		return nil, err
	}
	v.set()
	j.State = jobs.State(state)
	j.UpdatedAt = fromNanos(updated)
	j.FinishedAt = fromNanos(fin)
	j.LeaseExpiresAt = fromNanos(le)
	return &j, nil
}

// scanFetched reads every row of fetchCols: jobs of queue that Fetch
// claimed for owner at nowNS until leaseNS.
func scanFetched(rows pgx.Rows, queue, owner string, nowNS, leaseNS int64) ([]*jobs.Job, error) {
	defer rows.Close()
	out := []*jobs.Job{}
	for rows.Next() {
		j := &jobs.Job{State: jobs.StateRunning, LeaseOwner: owner,
			UpdatedAt: fromNanos(nowNS), LeaseExpiresAt: fromNanos(leaseNS)}
		j.Queue = queue
		v := specVars{j: j}
		if err := rows.Scan(append([]any{&j.ID}, v.dest()...)...); err != nil {
			return nil, err
		}
		v.set()
		out = append(out, j)
	}
	return out, rows.Err()
}

// scanJobs reads every row of jobCols.
func scanJobs(rows pgx.Rows) ([]*jobs.Job, error) {
	defer rows.Close()
	out := []*jobs.Job{}
	for rows.Next() {
		j, err := scanJob(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, j)
	}
	return out, rows.Err()
}

const queueCols = `name, concurrency, capacity, policy, max_wait, rate_limit, rate_burst, paused, idempotency_window`

func scanQueue(row pgx.Row) (jobs.QueueConfig, error) {
	var (
		q                     jobs.QueueConfig
		policy                string
		conc, capacity, burst int64
		maxWait, window       int64
	)
	err := row.Scan(&q.Name, &conc, &capacity, &policy, &maxWait, &q.RateLimit, &burst, &q.Paused, &window)
	q.Concurrency = int(conc)
	q.Capacity = int(capacity)
	q.RateBurst = int(burst)
	q.Policy = jobs.FullPolicy(policy)
	q.MaxWait = time.Duration(maxWait)
	q.IdempotencyWindow = time.Duration(window)
	return q, err
}

func queueArgs(q jobs.QueueConfig) []any {
	return []any{q.Name, int64(q.Concurrency), int64(q.Capacity), string(q.Policy), int64(q.MaxWait),
		q.RateLimit, int64(q.RateBurst), q.Paused, int64(q.IdempotencyWindow)}
}

// The fencing condition of Complete and Heartbeat, for jobs aliased j and
// outcomes aliased o.
const fenced = `j.id = o.id AND j.attempt = o.attempt AND j.lease_owner = $2 AND j.state = 'running'`

// The SQL of the store, with {s} for the schema. Parameters are cast so
// that their types never depend on inference.
const (
	sqlQueueEnsure = `INSERT INTO {s}.queues (` + queueCols + `)
	VALUES ($1::text, $2::bigint, $3::bigint, $4::text, $5::bigint, $6::float8, $7::bigint, $8::boolean, $9::bigint)
	ON CONFLICT (name) DO NOTHING`

	// Locks the queue's row for the rest of the Enqueue transaction.
	sqlQueueLock = `SELECT capacity, policy, idempotency_window, waiting FROM {s}.queues WHERE name = $1::text FOR UPDATE`

	// The newest job bound to each of the (distinct) keys $2 in queue $1:
	// one descent of jobs_idempotency per key.
	sqlIdempotent = `SELECT ` + jobCols + ` FROM unnest($2::text[]) AS k(key)
	CROSS JOIN LATERAL (
		SELECT * FROM {s}.jobs b WHERE b.queue = $1::text AND b.idempotency_key = k.key
		ORDER BY b.id DESC LIMIT 1) AS j`

	// Inserts a batch in input order (so IDs ascend with it); $1 queue,
	// then one array per column, creation times first.
	sqlInsertJobs = `INSERT INTO {s}.jobs (queue, kind, payload, priority, idempotency_key, run_at, deadline,
		attempt_timeout, max_attempts, backoff_min, backoff_max, group_name, cancel_group_on_failure,
		state, created_at, updated_at)
	SELECT $1::text, u.kind, u.payload::json, u.priority, NULLIF(u.idem, ''), u.run_at, NULLIF(u.deadline, 0),
		u.attempt_timeout, u.max_attempts, u.backoff_min, u.backoff_max, NULLIF(u.grp, ''), u.cancel_group,
		'waiting', u.created, u.created
	FROM unnest($2::int8[], $3::text[], $4::text[], $5::int2[], $6::text[], $7::int8[], $8::int8[], $9::int8[],
		$10::int4[], $11::int8[], $12::int8[], $13::text[], $14::bool[]) WITH ORDINALITY
		AS u(created, kind, payload, priority, idem, run_at, deadline, attempt_timeout, max_attempts,
			backoff_min, backoff_max, grp, cancel_group, ord)
	ORDER BY u.ord
	RETURNING id`

	// The job that would run last among those ranking below priority $2:
	// the reverse of Fetch's order. Jobs locked by a concurrent Fetch (or
	// Cancel) are leaving the waiting state: skipped, never waited for.
	sqlShedVictim = `SELECT j.id FROM {s}.jobs j
	WHERE j.queue = $1::text AND j.state = 'waiting' AND j.priority < $2::int2
	ORDER BY j.priority, j.run_at DESC, j.id DESC LIMIT 1
	FOR UPDATE SKIP LOCKED`

	// Sheds job $1 and takes it off its queue's waiting counter (the
	// queue row is locked already: Enqueue holds it).
	sqlShed = `WITH sh AS (UPDATE {s}.jobs j SET state = 'shed', reason = $2::text, finished_at = $3::bigint, updated_at = $3::bigint
		WHERE j.id = $1::bigint AND j.state = 'waiting'
		RETURNING j.queue)
	UPDATE {s}.queues q SET waiting = q.waiting - 1 FROM sh WHERE q.name = sh.queue`

	// The last (up to retryAfterSample) completions of queue $1 in the
	// window $3 before now $2.
	sqlRetryAfter = `SELECT count(*), COALESCE(min(finished_at), 0) FROM (
	SELECT finished_at FROM {s}.jobs WHERE queue = $1::text AND finished_at > $2::bigint - $3::bigint AND finished_at <= $2::bigint
	ORDER BY finished_at DESC LIMIT 100) AS recent`

	// $1 queue, $2 owner, $3 lease expiry, $4 now, $5 limit, $6 the
	// priorities, highest first. The lateral subquery seeks each (queue,
	// priority, run_at <= now) range of jobs_fetch in turn and the outer
	// LIMIT stops it once it has enough, so jobs scheduled for later are
	// never read, and only the rows claimed are locked. The claimed jobs
	// leave the queue's waiting counter (cnt): after the job rows, as in
	// every statement, the queue's row is locked, and not at all when
	// nothing was claimed.
	sqlFetch = `WITH claim AS (
		SELECT c.id FROM unnest($6::int2[]) AS p(prio)
		CROSS JOIN LATERAL (
			SELECT w.id FROM {s}.jobs w
			WHERE w.queue = $1::text AND w.state = 'waiting' AND w.priority = p.prio AND w.run_at <= $4::bigint
				AND (w.deadline IS NULL OR w.deadline > $4::bigint)
			ORDER BY w.run_at, w.id
			LIMIT $5::int8
			FOR UPDATE SKIP LOCKED) AS c
		WHERE NOT EXISTS (SELECT 1 FROM {s}.queues q WHERE q.name = $1::text AND q.paused)
		LIMIT $5::int8),
	upd AS (UPDATE {s}.jobs j SET state = 'running', attempt = j.attempt + 1, lease_owner = $2::text,
			lease_expires_at = $3::bigint, updated_at = $4::bigint, cancel_requested = false
		FROM claim WHERE j.id = claim.id
		RETURNING ` + fetchCols + `),
	cnt AS (UPDATE {s}.queues q SET waiting = q.waiting - c.n
		FROM (SELECT count(*) AS n FROM upd) AS c WHERE q.name = $1::text AND c.n > 0)
	SELECT * FROM upd`

	// $1 ids, $2 owner, $3 attempts, $4 lease expiry. Heartbeat,
	// Complete and RecoverLeases lock their rows in id order first (the
	// lk CTE): in the order of jobs_running (lease expiry), which a
	// heartbeat changes, two of them could lock the same rows in opposite
	// orders and deadlock until deadlock_timeout.
	sqlHeartbeat = `WITH o AS (SELECT * FROM unnest($1::int8[], $3::int4[]) AS o(id, attempt)),
	lk AS (SELECT j.id FROM {s}.jobs j JOIN o ON ` + fenced + ` ORDER BY j.id FOR UPDATE OF j)
	UPDATE {s}.jobs j SET lease_expires_at = $4::bigint
	FROM o, lk
	WHERE j.id = lk.id AND ` + fenced + `
	RETURNING j.id, j.attempt, j.cancel_requested`

	// Complete: every outcome kind in one statement. $1 ids, $2 owner,
	// $3 attempts, $4 kinds, $5 run at (Retry), $6 errors, $7 reasons,
	// $8 now. A Retry, Released or Failed outcome of a job whose
	// cancellation was requested ends it canceled (keeping Cancel's
	// reason); a Retry of the last attempt fails it.
	// Each job may appear once.
	sqlComplete = `UPDATE {s}.jobs j SET
	state = CASE o.kind
		WHEN 1 THEN 'succeeded'
		WHEN 2 THEN CASE WHEN j.cancel_requested THEN 'canceled' WHEN j.attempt >= j.max_attempts THEN 'failed' ELSE 'waiting' END
		WHEN 3 THEN CASE WHEN j.cancel_requested THEN 'canceled' ELSE 'failed' END
		WHEN 4 THEN 'canceled'
		WHEN 5 THEN CASE WHEN j.cancel_requested THEN 'canceled' ELSE 'waiting' END
		ELSE 'expired' END,
	finished_at = CASE
		WHEN o.kind = 2 AND NOT j.cancel_requested AND j.attempt < j.max_attempts THEN NULL
		WHEN o.kind = 5 AND NOT j.cancel_requested THEN NULL
		ELSE $8::bigint END,
	run_at = CASE WHEN o.kind = 2 AND NOT j.cancel_requested AND j.attempt < j.max_attempts THEN o.run_at
		WHEN o.kind = 5 AND NOT j.cancel_requested AND o.run_at <> 0 THEN o.run_at
		ELSE j.run_at END,
	attempt = CASE WHEN o.kind = 5 THEN j.attempt - 1 ELSE j.attempt END,
	last_error = CASE WHEN o.kind IN (2, 3) THEN o.error ELSE j.last_error END,
	reason = CASE o.kind
		WHEN 3 THEN CASE WHEN j.cancel_requested THEN j.reason ELSE o.reason END
		WHEN 4 THEN CASE WHEN o.reason <> '' THEN o.reason ELSE j.reason END
		WHEN 6 THEN CASE WHEN o.reason <> '' THEN o.reason ELSE 'deadline passed while running' END
		ELSE j.reason END,
	updated_at = $8::bigint, lease_owner = NULL, lease_expires_at = NULL
	FROM unnest($1::int8[], $3::int4[], $4::int2[], $5::int8[], $6::text[], $7::text[])
		AS o(id, attempt, kind, run_at, error, reason),
		(SELECT j.id FROM {s}.jobs j JOIN unnest($1::int8[], $3::int4[]) AS o(id, attempt) ON ` + fenced + `
			ORDER BY j.id FOR UPDATE OF j) AS lk
	WHERE j.id = lk.id AND ` + fenced + `
	RETURNING j.id, j.state, COALESCE(j.group_name, ''), j.cancel_group_on_failure, j.queue, j.run_at`

	// Complete when every outcome is Succeeded: the same fencing and lock
	// order as sqlComplete, without its per-row CASEs. $1 ids, $2 owner,
	// $3 attempts, $4 now.
	sqlCompleteSucceeded = `UPDATE {s}.jobs j SET state = 'succeeded', finished_at = $4::bigint,
		updated_at = $4::bigint, lease_owner = NULL, lease_expires_at = NULL
	FROM unnest($1::int8[], $3::int4[]) AS o(id, attempt),
		(SELECT j.id FROM {s}.jobs j JOIN unnest($1::int8[], $3::int4[]) AS o(id, attempt) ON ` + fenced + `
			ORDER BY j.id FOR UPDATE OF j) AS lk
	WHERE j.id = lk.id AND ` + fenced + `
	RETURNING j.id`

	// $1 group, $2 reason, $3 now. It returns how many jobs it canceled
	// per queue.
	sqlGroupCancelWaiting = `WITH c AS (UPDATE {s}.jobs j SET state = 'canceled', reason = $2::text, finished_at = $3::bigint, updated_at = $3::bigint
		WHERE j.group_name = $1::text AND j.state = 'waiting'
		RETURNING j.queue)
	SELECT queue, count(*) FROM c GROUP BY queue`
	sqlGroupCancelRunning = `UPDATE {s}.jobs j SET cancel_requested = true, reason = $2::text, updated_at = $3::bigint
	WHERE j.group_name = $1::text AND j.state = 'running' AND NOT j.cancel_requested`

	// $1 id, $2 now, $3 reason. A second Cancel of a running job keeps
	// the first reason.
	sqlCancel = `UPDATE {s}.jobs j SET
		state = CASE WHEN j.state = 'waiting' THEN 'canceled' ELSE j.state END,
		finished_at = CASE WHEN j.state = 'waiting' THEN $2::bigint ELSE j.finished_at END,
		reason = CASE WHEN j.state = 'running' AND j.cancel_requested THEN j.reason ELSE $3::text END,
		cancel_requested = j.cancel_requested OR j.state = 'running',
		updated_at = $2::bigint
	WHERE j.id = $1::bigint AND j.state IN ('waiting', 'running')
	RETURNING ` + jobCols

	sqlGet = `SELECT ` + jobCols + ` FROM {s}.jobs j WHERE j.id = $1::bigint`

	// $1 now.
	sqlRecover = `UPDATE {s}.jobs j SET
		state = CASE WHEN j.cancel_requested THEN 'canceled' WHEN j.attempt >= j.max_attempts THEN 'failed' ELSE 'waiting' END,
		finished_at = CASE WHEN j.cancel_requested OR j.attempt >= j.max_attempts THEN $1::bigint END,
		last_error = 'lease of ' || j.lease_owner || ' expired',
		lease_owner = NULL, lease_expires_at = NULL, updated_at = $1::bigint
	FROM (SELECT j.id FROM {s}.jobs j WHERE j.state = 'running' AND j.lease_expires_at < $1::bigint
		ORDER BY j.id FOR UPDATE OF j SKIP LOCKED) AS lk
	WHERE j.id = lk.id AND j.state = 'running' AND j.lease_expires_at < $1::bigint
	RETURNING j.id, j.state, COALESCE(j.group_name, ''), j.cancel_group_on_failure, j.queue, j.run_at`

	// $1 now. It returns how many jobs it expired per queue.
	sqlExpire = `WITH e AS (UPDATE {s}.jobs j SET state = 'expired', reason = 'deadline passed before the job could run',
			finished_at = $1::bigint, updated_at = $1::bigint
		WHERE j.state = 'waiting' AND j.deadline IS NOT NULL AND j.deadline <= $1::bigint
		RETURNING j.queue)
	SELECT queue, count(*) FROM e GROUP BY queue`

	// Moves $2 jobs into (or, negative, out of) queue $1's waiting
	// counter; see moves.
	sqlMoveWaiting = `UPDATE {s}.queues SET waiting = waiting + $2::bigint WHERE name = $1::text`
	// $1 channel, $2 queue.
	sqlNotifyQueue = `SELECT pg_notify($1::text, 'queue:' || $2::text)`
	sqlNotifyDue   = `SELECT pg_notify($1::text, 'due:' || $2::bigint || ':' || $3::text)`

	// $1 before, $2 limit, $3 now. Per queue, the oldest finished jobs first
	// (jobs_finished), at most $2 in all. The IDs are collected into an
	// array so that the delete itself is primary-key lookups whatever the
	// planner thinks of the table's size.
	sqlDeleteFinished = `DELETE FROM {s}.jobs j WHERE j.id = ANY(ARRAY(
		SELECT d.id FROM {s}.queues q CROSS JOIN LATERAL (
			SELECT f.id FROM {s}.jobs f
			WHERE f.queue = q.name AND f.finished_at IS NOT NULL
				AND f.finished_at < LEAST($1::bigint, $3::bigint - q.idempotency_window)
				AND f.state IN ('succeeded', 'failed', 'canceled', 'expired', 'shed')
			ORDER BY f.finished_at LIMIT $2::int8
			FOR UPDATE SKIP LOCKED) AS d
		LIMIT $2::int8))`

	sqlPutQueue = `INSERT INTO {s}.queues (` + queueCols + `)
	VALUES ($1::text, $2::bigint, $3::bigint, $4::text, $5::bigint, $6::float8, $7::bigint, $8::boolean, $9::bigint)
	ON CONFLICT (name) DO UPDATE SET concurrency = excluded.concurrency,
		capacity = excluded.capacity, policy = excluded.policy, max_wait = excluded.max_wait,
		rate_limit = excluded.rate_limit, rate_burst = excluded.rate_burst,
		paused = excluded.paused, idempotency_window = excluded.idempotency_window`

	sqlGetQueue = `SELECT ` + queueCols + ` FROM {s}.queues WHERE name = $1::text`
	sqlQueues   = `SELECT ` + queueCols + ` FROM {s}.queues ORDER BY name`

	// One statement, so one snapshot.
	sqlQueueStats = `SELECT
		(SELECT COALESCE(max(waiting), 0) FROM {s}.queues WHERE name = $1::text),
		(SELECT count(*) FROM {s}.jobs WHERE queue = $1::text AND state = 'running'),
		(SELECT count(*) FROM {s}.jobs WHERE queue = $1::text AND finished_at IS NOT NULL AND finished_at > $2::bigint)`

	sqlGroup = `SELECT state, count(*) FROM {s}.jobs WHERE group_name = $1::text GROUP BY state`

	// $1 owner, $2 term end, $3 now.
	sqlLead = `INSERT INTO {s}.leader AS l (name, owner, expires_at) VALUES ('maintenance', $1::text, $2::bigint)
	ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at
	WHERE l.owner = excluded.owner OR l.expires_at <= $3::bigint
	RETURNING l.owner`
	sqlResign = `DELETE FROM {s}.leader WHERE name = 'maintenance' AND owner = $1::text`

	// $1 queue, $2 now, $3 the priorities. Like sqlFetch, one seek of
	// jobs_fetch per priority, here past now; a job whose deadline comes
	// first is skipped (it will never run).
	sqlNextDue = `SELECT min(c.run_at) FROM unnest($3::int2[]) AS p(prio)
	CROSS JOIN LATERAL (
		SELECT w.run_at FROM {s}.jobs w
		WHERE w.queue = $1::text AND w.state = 'waiting' AND w.priority = p.prio AND w.run_at > $2::bigint
			AND (w.deadline IS NULL OR w.deadline > w.run_at)
		ORDER BY w.run_at
		LIMIT 1) AS c
	WHERE NOT EXISTS (SELECT 1 FROM {s}.queues q WHERE q.name = $1::text AND q.paused)`
)

// queries are the statements with the schema filled in.
type queries struct {
	queueEnsure, queueLock, idempotent, insertJobs, shedVictim, shed, retryAfter string
	fetch, heartbeat, complete, completeSucceeded, moveWaiting, notifyQueue      string
	notifyDue                                                                    string
	groupCancelWaiting, groupCancelRunning                                       string
	cancel, get, recover, expire, putQueue, getQueue, queues, queueStats, group  string
	lead, resign, deleteFinished, nextDue                                        string
}

func newQueries(schema string) queries {
	e := func(sql string) string { return expand(sql, schema) }
	return queries{
		queueEnsure: e(sqlQueueEnsure), queueLock: e(sqlQueueLock), idempotent: e(sqlIdempotent),
		insertJobs: e(sqlInsertJobs), shedVictim: e(sqlShedVictim), shed: e(sqlShed), retryAfter: e(sqlRetryAfter),
		fetch: e(sqlFetch), heartbeat: e(sqlHeartbeat), complete: e(sqlComplete), completeSucceeded: e(sqlCompleteSucceeded),
		moveWaiting: e(sqlMoveWaiting), notifyQueue: e(sqlNotifyQueue), notifyDue: e(sqlNotifyDue),
		groupCancelWaiting: e(sqlGroupCancelWaiting), groupCancelRunning: e(sqlGroupCancelRunning),
		cancel: e(sqlCancel), get: e(sqlGet), recover: e(sqlRecover), expire: e(sqlExpire),
		putQueue: e(sqlPutQueue), getQueue: e(sqlGetQueue), queues: e(sqlQueues),
		queueStats: e(sqlQueueStats), group: e(sqlGroup), lead: e(sqlLead), resign: e(sqlResign),
		deleteFinished: e(sqlDeleteFinished), nextDue: e(sqlNextDue),
	}
}

// priorities lists every job priority, highest first.
var priorities = func() []int16 {
	out := make([]int16, 0, jobs.MaxPriority+1)
	for p := jobs.MaxPriority; p >= 0; p-- {
		out = append(out, int16(p))
	}
	return out
}()

// list builds List's statement for the filter's set fields.
func (s *Store) listSQL(f jobs.ListFilter) (string, []any) {
	var b strings.Builder
	b.WriteString(`SELECT ` + jobCols + ` FROM ` + quoteIdent(s.schema) + `.jobs j WHERE j.id > $1::bigint`)
	args := []any{f.AfterID}
	add := func(col string, v any) {
		args = append(args, v)
		b.WriteString(" AND j." + col + " = $" + strconv.Itoa(len(args)) + "::text")
	}
	if f.Queue != "" {
		add("queue", f.Queue)
	}
	if f.State != "" {
		add("state", string(f.State))
	}
	if f.Group != "" {
		add("group_name", f.Group)
	}
	limit := f.Limit
	if limit <= 0 {
		limit = DefaultListLimit
	}
	args = append(args, int64(limit))
	b.WriteString(" ORDER BY j.id LIMIT $" + strconv.Itoa(len(args)) + "::int8")
	return b.String(), args
}
