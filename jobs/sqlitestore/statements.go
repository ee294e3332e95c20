package sqlitestore

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/sluicehq/sluice/jobs"
)

type scanner interface{ Scan(dest ...any) error }

// scanJob reads one row of jobCols.
func scanJob(sc scanner) (*jobs.Job, error) {
	var (
		j                         jobs.Job
		state                     string
		updated, fin, le, cancelR int64
	)
	v := specVars{j: &j}
	dest := append(v.dest(), &state, &updated, &fin, &j.LeaseOwner, &le, &cancelR)
	if err := sc.Scan(dest...); err != nil {
		return nil, err
	}
	v.set()
	j.State = jobs.State(state)
	j.UpdatedAt = fromNanos(updated)
	j.FinishedAt = fromNanos(fin)
	j.LeaseExpiresAt = fromNanos(le)
	j.CancelRequested = cancelR != 0
	return &j, nil
}

// specCols are the columns a job's state does not determine but the ID
// and queue, in specVars.dest's order.
const specCols = `kind, payload, priority, COALESCE(idempotency_key, ''), run_at,
	COALESCE(deadline, 0), attempt_timeout, max_attempts, backoff_min, backoff_max,
	COALESCE(group_name, ''), cancel_group_on_failure, attempt, last_error, reason, created_at`

// jobCols are the columns scanJob reads, in its order.
const jobCols = `id, queue, ` + specCols + `, state, updated_at, COALESCE(finished_at, 0),
	COALESCE(lease_owner, ''), COALESCE(lease_expires_at, 0), cancel_requested`

// fetchCols are the columns Fetch returns, in scanFetched's order: the
// others follow from the claim (queue, state running, lease, updated_at,
// no cancel request, not finished). The ten that nearly always hold their
// defaults (deadline, cancel-group-on-failure, attempt timeout, max
// attempts, backoff min and max, idempotency key, group, last error,
// reason) come as one column, NULL when all do, else six integers and
// four byte lengths, comma-separated, a semicolon, and the four texts back
// to back (see splitExtras): reading a column back costs the writer about
// as much as changing an index entry, and a NULL costs least. The lengths
// are UTF-8 byte counts because Open refuses a database in another text
// encoding; a row that does not decode is read from its columns instead.
var fetchCols = `id, kind, payload, priority, run_at, attempt, created_at,
	CASE WHEN deadline IS NULL AND cancel_group_on_failure = 0 AND attempt_timeout = 0
		AND max_attempts = ` + strconv.Itoa(jobs.DefaultAttempts) + `
		AND backoff_min = ` + strconv.FormatInt(int64(jobs.DefaultBackoffMin), 10) + `
		AND backoff_max = ` + strconv.FormatInt(int64(jobs.DefaultBackoffMax), 10) + `
		AND idempotency_key IS NULL AND group_name IS NULL AND last_error = '' AND reason = '' THEN NULL
	ELSE printf('%d,%d,%d,%d,%d,%d,%d,%d,%d,%d;', COALESCE(deadline, 0), cancel_group_on_failure,
		attempt_timeout, max_attempts, backoff_min, backoff_max,
		octet_length(COALESCE(idempotency_key, '')), octet_length(COALESCE(group_name, '')),
		octet_length(last_error), octet_length(reason))
		|| COALESCE(idempotency_key, '') || COALESCE(group_name, '') || last_error || reason END`

// specVars holds the scan targets of specCols that need converting.
type specVars struct {
	j                                   *jobs.Job
	payload                             []byte
	runAt, deadline, created            int64
	attemptTimeout, bmin, bmax, cancelG int64
}

// dest returns the Scan targets of the ID, the queue and specCols.
func (v *specVars) dest() []any {
	j := v.j
	return []any{&j.ID, &j.Queue, &j.Kind, &v.payload, &j.Priority, &j.IdempotencyKey, &v.runAt,
		&v.deadline, &v.attemptTimeout, &j.MaxAttempts, &v.bmin, &v.bmax,
		&j.Group, &v.cancelG, &j.Attempt, &j.LastError, &j.Reason, &v.created}
}

// set converts the scanned values into the job.
func (v *specVars) set() {
	j := v.j
	j.Payload = json.RawMessage(v.payload)
	j.RunAt = fromNanos(v.runAt)
	j.Deadline = fromNanos(v.deadline)
	j.AttemptTimeout = time.Duration(v.attemptTimeout)
	j.BackoffMin = time.Duration(v.bmin)
	j.BackoffMax = time.Duration(v.bmax)
	j.CancelGroupOnFailure = v.cancelG != 0
	j.CreatedAt = fromNanos(v.created)
}

// scanFetched reads one row of fetchCols, a job Fetch claimed for owner
// at nowNS until leaseNS, of queue. It reports false, with the job's ID
// set, when the extras column is not one this build can decode (or holds a
// max attempts beyond int); the caller then reads the job with scanJob,
// so that one odd row neither fails the claim nor differs from Get.
func scanFetched(sc scanner, queue, owner string, nowNS, leaseNS int64) (*jobs.Job, bool, error) {
	j := &jobs.Job{State: jobs.StateRunning, LeaseOwner: owner,
		UpdatedAt: fromNanos(nowNS), LeaseExpiresAt: fromNanos(leaseNS)}
	j.Queue = queue
	var (
		payload, extras []byte
		runAt, created  int64
	)
	if err := sc.Scan(&j.ID, &j.Kind, &payload, &j.Priority, &runAt, &j.Attempt, &created, &extras); err != nil {
		return nil, false, err
	}
	j.Payload = json.RawMessage(payload)
	j.RunAt = fromNanos(runAt)
	j.CreatedAt = fromNanos(created)
	if extras == nil {
		j.MaxAttempts, j.BackoffMin, j.BackoffMax = jobs.DefaultAttempts, jobs.DefaultBackoffMin, jobs.DefaultBackoffMax
		return j, true, nil
	}
	n, t, ok := splitExtras(extras)
	if !ok || n[3] < math.MinInt || n[3] > math.MaxInt {
		return j, false, nil
	}
	j.Deadline = fromNanos(n[0])
	j.CancelGroupOnFailure = n[1] != 0
	j.AttemptTimeout = time.Duration(n[2])
	j.MaxAttempts = int(n[3])
	j.BackoffMin = time.Duration(n[4])
	j.BackoffMax = time.Duration(n[5])
	j.IdempotencyKey, j.Group, j.LastError, j.Reason = t[0], t[1], t[2], t[3]
	return j, true, nil
}

// splitExtras splits the extras column of fetchCols: six integers and
// four byte lengths, comma-separated, a semicolon, then the four texts
// back to back.
func splitExtras(b []byte) (n [6]int64, t [4]string, ok bool) {
	head, rest, found := strings.Cut(string(b), ";")
	if !found {
		return n, t, false
	}
	for i := range 10 {
		var field string
		field, head, found = strings.Cut(head, ",")
		if found == (i == 9) || !decimal(field) {
			return n, t, false
		}
		v, err := strconv.ParseInt(field, 10, 64)
		if err != nil {
			return n, t, false
		}
		if i < len(n) {
			n[i] = v
			continue
		}
		if v < 0 || v > int64(len(rest)) {
			return n, t, false
		}
		t[i-len(n)], rest = rest[:v], rest[v:]
	}
	return n, t, rest == ""
}

// decimal reports whether s is an integer as SQLite's printf("%d") writes
// one: an optional minus sign and at least one digit.
func decimal(s string) bool {
	s = strings.TrimPrefix(s, "-")
	if s == "" {
		return false
	}
	for _, c := range []byte(s) {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// attemptBits is how many low bits of a packed attempt hold the attempt
// number: 20, as the shift and mask of sqlSucceededBatch spell it.
const attemptBits = 20

// packable reports whether a packs into one SQLite integer.
func packable(a jobs.Attempt) bool {
	return a.ID > 0 && a.ID < 1<<(63-attemptBits) && a.Attempt >= 0 && a.Attempt < 1<<attemptBits
}

// The fencing condition of Complete and Heartbeat: ?1 id, ?2 attempt,
// ?3 owner.
const fenced = `WHERE id = ?1 AND attempt = ?2 AND lease_owner = ?3 AND state = 'running'`

// What a fenced Complete statement returns: enough to run the group rule.
const completeReturning = ` RETURNING state, COALESCE(group_name, ''), cancel_group_on_failure`

// The SQL of the prepared statements.
const (
	sqlInsertJob = `INSERT INTO jobs (queue, kind, payload, priority, idempotency_key, run_at,
	deadline, attempt_timeout, max_attempts, backoff_min, backoff_max, group_name,
	cancel_group_on_failure, state, created_at, updated_at)
	VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, 'waiting', ?14, ?14)`

	sqlIdempotent = `SELECT ` + jobCols + ` FROM jobs
	WHERE queue = ?1 AND idempotency_key = ?2 ORDER BY id DESC LIMIT 1`

	sqlQueueForEnqueue = `SELECT capacity, policy, idempotency_window, waiting FROM queues WHERE name = ?1`

	sqlQueueInsertDefault = `INSERT INTO queues (name, concurrency, capacity, policy, max_wait,
	rate_limit, rate_burst, paused, idempotency_window)
	VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) ON CONFLICT (name) DO NOTHING`

	// The job that would run last: the reverse of Fetch's order.
	sqlShedVictim = `SELECT id FROM jobs
	WHERE queue = ?1 AND state = 'waiting' AND priority < ?2
	ORDER BY priority, run_at DESC, id DESC LIMIT 1`

	sqlShed = `UPDATE jobs SET state = 'shed', reason = ?2, finished_at = ?3, updated_at = ?3
	WHERE id = ?1 AND state = 'waiting'`

	// The last (up to retryAfterSample) completions of queue ?1 in the
	// window ?3 before now ?2.
	sqlRetryAfter = `SELECT count(*), COALESCE(min(finished_at), 0) FROM (
	SELECT finished_at FROM jobs WHERE queue = ?1 AND finished_at > ?2 - ?3 AND finished_at <= ?2
	ORDER BY finished_at DESC LIMIT 100)`
	retryAfterSample = 100

	// ?1 id, ?2 attempt, ?3 owner, ?4 lease expiry.
	sqlHeartbeat = `UPDATE jobs SET lease_expires_at = ?4 ` + fenced + ` RETURNING cancel_requested`

	// Complete, one statement per outcome kind; ?4 is now.
	sqlSucceeded = `UPDATE jobs SET state = 'succeeded', finished_at = ?4, updated_at = ?4,
	lease_owner = NULL, lease_expires_at = NULL ` + fenced + completeReturning

	// Many Succeeded outcomes in one statement: ?1 is a JSON array of
	// attempts, each packed as id<<attemptBits | attempt (one number per
	// job costs SQLite a sixth less than an [id, attempt] pair), ?2 now,
	// ?3 owner. sqlSucceededBatch says how many applied;
	// sqlSucceededBatchReturning which.
	sqlSucceededBatch = `UPDATE jobs SET state = 'succeeded', finished_at = ?2, updated_at = ?2,
	lease_owner = NULL, lease_expires_at = NULL
	FROM json_each(?1) AS o
	WHERE jobs.id = o.value >> 20 AND jobs.attempt = o.value & 1048575
		AND jobs.lease_owner = ?3 AND jobs.state = 'running'`
	sqlSucceededBatchReturning = sqlSucceededBatch + ` RETURNING jobs.id`

	// ?5 error, ?6 reason. A job whose cancellation was requested ends
	// canceled, keeping the reason Cancel stored.
	sqlFailed = `UPDATE jobs SET state = CASE WHEN cancel_requested <> 0 THEN 'canceled' ELSE 'failed' END,
	last_error = ?5, reason = CASE WHEN cancel_requested <> 0 THEN reason ELSE ?6 END, finished_at = ?4,
	updated_at = ?4, lease_owner = NULL, lease_expires_at = NULL ` + fenced + completeReturning

	// ?5 reason; an empty one keeps the reason Cancel stored.
	sqlCanceled = `UPDATE jobs SET state = 'canceled', reason = CASE WHEN ?5 <> '' THEN ?5 ELSE reason END,
	finished_at = ?4, updated_at = ?4, lease_owner = NULL, lease_expires_at = NULL ` + fenced + completeReturning

	// ?5 reason.
	sqlExpired = `UPDATE jobs SET state = 'expired',
	reason = CASE WHEN ?5 <> '' THEN ?5 ELSE 'deadline passed while running' END,
	finished_at = ?4, updated_at = ?4, lease_owner = NULL, lease_expires_at = NULL ` + fenced + completeReturning

	// ?5 error, ?6 run at. A job whose cancellation was requested ends
	// canceled instead of waiting; one out of attempts fails.
	sqlRetry = `UPDATE jobs SET
	state = CASE WHEN cancel_requested <> 0 THEN 'canceled'
		WHEN attempt >= max_attempts THEN 'failed' ELSE 'waiting' END,
	run_at = CASE WHEN cancel_requested <> 0 OR attempt >= max_attempts THEN run_at ELSE ?6 END,
	finished_at = CASE WHEN cancel_requested <> 0 OR attempt >= max_attempts THEN ?4 END,
	last_error = ?5, updated_at = ?4, lease_owner = NULL, lease_expires_at = NULL ` + fenced + completeReturning

	// ?5 run at, NULL to keep the job's place.
	sqlReleased = `UPDATE jobs SET
	state = CASE WHEN cancel_requested <> 0 THEN 'canceled' ELSE 'waiting' END,
	run_at = CASE WHEN cancel_requested = 0 AND ?5 IS NOT NULL THEN ?5 ELSE run_at END,
	finished_at = CASE WHEN cancel_requested <> 0 THEN ?4 END,
	attempt = attempt - 1, updated_at = ?4, lease_owner = NULL, lease_expires_at = NULL ` + fenced + completeReturning

	// ?1 group, ?2 reason, ?3 now.
	sqlGroupCancelWaiting = `UPDATE jobs SET state = 'canceled', reason = ?2, finished_at = ?3, updated_at = ?3
	WHERE group_name = ?1 AND state = 'waiting'`
	sqlGroupCancelRunning = `UPDATE jobs SET cancel_requested = 1, reason = ?2, updated_at = ?3
	WHERE group_name = ?1 AND state = 'running' AND cancel_requested = 0
	RETURNING id`
)

var (
	// ?1 queue, ?2 owner, ?3 lease expiry, ?4 now, ?5 limit. Listing the
	// priorities makes SQLite seek each (queue, priority, run_at <= now)
	// range of jobs_fetch in turn, so jobs scheduled for later are never
	// read, however many there are.
	sqlFetch = `UPDATE jobs SET state = 'running', attempt = attempt + 1, lease_owner = ?2,
	lease_expires_at = ?3, updated_at = ?4, cancel_requested = 0
	WHERE id IN (
		SELECT id FROM jobs
		WHERE queue = ?1 AND state = 'waiting' AND priority IN (` + priorities + `) AND run_at <= ?4
			AND (deadline IS NULL OR deadline > ?4)
			AND NOT EXISTS (SELECT 1 FROM queues WHERE name = ?1 AND paused <> 0)
		ORDER BY priority DESC, run_at, id LIMIT ?5)
	RETURNING ` + fetchCols
)

// sqlFetchCount takes the jobs a Fetch claimed off the queue's waiting
// counter: ?1 queue, ?2 how many.
const sqlFetchCount = `UPDATE queues SET waiting = waiting - ?2 WHERE name = ?1`

// priorities lists every job priority, highest first: "9, 8, ..., 0".
var priorities = func() string {
	var b strings.Builder
	for p := jobs.MaxPriority; p >= 0; p-- {
		if p < jobs.MaxPriority {
			b.WriteString(", ")
		}
		b.WriteString(strconv.Itoa(p))
	}
	return b.String()
}()

// statements are the writer's prepared statements.
type statements struct {
	insertJob, idempotent, queueForEnqueue, queueInsertDefault *sql.Stmt
	shedVictim, shed, retryAfter                               *sql.Stmt
	fetch, fetchCount, heartbeat                               *sql.Stmt
	succeeded, failed, canceled, expired, retry, released      *sql.Stmt
	succeededBatch, succeededBatchReturning                    *sql.Stmt
	groupCancelWaiting, groupCancelRunning                     *sql.Stmt
}

func (s *Store) prepare(ctx context.Context) error {
	st := &s.stmts
	for _, p := range []struct {
		dst **sql.Stmt
		sql string
	}{
		{&st.insertJob, sqlInsertJob},
		{&st.idempotent, sqlIdempotent},
		{&st.queueForEnqueue, sqlQueueForEnqueue},
		{&st.queueInsertDefault, sqlQueueInsertDefault},
		{&st.shedVictim, sqlShedVictim},
		{&st.shed, sqlShed},
		{&st.retryAfter, sqlRetryAfter},
		{&st.fetch, sqlFetch},
		{&st.fetchCount, sqlFetchCount},
		{&st.heartbeat, sqlHeartbeat},
		{&st.succeeded, sqlSucceeded},
		{&st.succeededBatch, sqlSucceededBatch},
		{&st.succeededBatchReturning, sqlSucceededBatchReturning},
		{&st.failed, sqlFailed},
		{&st.canceled, sqlCanceled},
		{&st.expired, sqlExpired},
		{&st.retry, sqlRetry},
		{&st.released, sqlReleased},
		{&st.groupCancelWaiting, sqlGroupCancelWaiting},
		{&st.groupCancelRunning, sqlGroupCancelRunning},
	} {
		stmt, err := s.w.PrepareContext(ctx, p.sql)
		if err != nil {
			return fmt.Errorf("prepare %.60q: %w", p.sql, err)
		}
		*p.dst = stmt
	}
	return nil
}

func (st *statements) close() {
	for _, p := range []*sql.Stmt{
		st.insertJob, st.idempotent, st.queueForEnqueue, st.queueInsertDefault,
		st.shedVictim, st.shed, st.retryAfter, st.fetch, st.fetchCount, st.heartbeat,
		st.succeeded, st.succeededBatch, st.succeededBatchReturning, st.failed, st.canceled, st.expired, st.retry, st.released,
		st.groupCancelWaiting, st.groupCancelRunning,
	} {
		if p != nil {
			_ = p.Close()
		}
	}
}
