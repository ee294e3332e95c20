package sqlitestore

import (
	"context"
	"database/sql"
	"fmt"
)

// migrations[i] brings the schema from version i to i+1. The version is
// kept in PRAGMA user_version. Append; never edit a released step.
//
// There are no foreign keys: jobs.queue names a queue that Enqueue creates
// in the same transaction, and nothing deletes queues, so a constraint
// would only cost a lookup per insert.
var migrations = []string{
	// 1: jobs, queues, and the waiting-count triggers.
	`
CREATE TABLE queues (
	name               TEXT PRIMARY KEY,
	concurrency        INTEGER NOT NULL,
	capacity           INTEGER NOT NULL,
	policy             TEXT    NOT NULL,
	max_wait           INTEGER NOT NULL, -- ns
	rate_limit         REAL    NOT NULL,
	rate_burst         INTEGER NOT NULL,
	paused             INTEGER NOT NULL,
	idempotency_window INTEGER NOT NULL, -- ns
	waiting            INTEGER NOT NULL DEFAULT 0 -- kept by the triggers below
) STRICT;

CREATE TABLE jobs (
	id                      INTEGER PRIMARY KEY,
	queue                   TEXT    NOT NULL,
	kind                    TEXT    NOT NULL,
	payload                 TEXT    NOT NULL, -- JSON
	priority                INTEGER NOT NULL,
	idempotency_key         TEXT,             -- NULL: none
	run_at                  INTEGER NOT NULL, -- unix ns UTC, like every time below
	deadline                INTEGER,          -- NULL: none
	attempt_timeout         INTEGER NOT NULL, -- ns
	max_attempts            INTEGER NOT NULL,
	backoff_min             INTEGER NOT NULL, -- ns
	backoff_max             INTEGER NOT NULL, -- ns
	group_name              TEXT,             -- NULL: none
	cancel_group_on_failure INTEGER NOT NULL,
	state                   TEXT    NOT NULL,
	attempt                 INTEGER NOT NULL DEFAULT 0,
	last_error              TEXT    NOT NULL DEFAULT '',
	reason                  TEXT    NOT NULL DEFAULT '',
	created_at              INTEGER NOT NULL,
	updated_at              INTEGER NOT NULL,
	finished_at             INTEGER,          -- NULL until terminal
	lease_owner             TEXT,             -- NULL unless running
	lease_expires_at        INTEGER,          -- NULL unless running
	cancel_requested        INTEGER NOT NULL DEFAULT 0
) STRICT;

-- Fetch: the next waiting jobs of a queue in run order; read backwards it
-- also finds the job to shed.
CREATE INDEX jobs_fetch ON jobs (queue, priority DESC, run_at, id) WHERE state = 'waiting';
-- RecoverLeases, QueueStats.Running.
CREATE INDEX jobs_running ON jobs (queue, lease_expires_at) WHERE state = 'running';
-- ExpireDue.
CREATE INDEX jobs_deadline ON jobs (deadline) WHERE state = 'waiting' AND deadline IS NOT NULL;
-- Enqueue's idempotency lookup.
CREATE INDEX jobs_idempotency ON jobs (queue, idempotency_key) WHERE idempotency_key IS NOT NULL;
-- Group, and group cancellation.
CREATE INDEX jobs_group ON jobs (group_name, state) WHERE group_name IS NOT NULL;
-- QueueStats.Finished and the Retry-After estimate.
CREATE INDEX jobs_finished ON jobs (queue, finished_at) WHERE finished_at IS NOT NULL;

CREATE TRIGGER jobs_waiting_insert AFTER INSERT ON jobs WHEN new.state = 'waiting'
BEGIN
	UPDATE queues SET waiting = waiting + 1 WHERE name = new.queue;
END;
CREATE TRIGGER jobs_waiting_update AFTER UPDATE OF state ON jobs
WHEN (old.state = 'waiting') <> (new.state = 'waiting')
BEGIN
	UPDATE queues SET waiting = waiting + (new.state = 'waiting') - (old.state = 'waiting')
	WHERE name = new.queue;
END;
CREATE TRIGGER jobs_waiting_delete AFTER DELETE ON jobs WHEN old.state = 'waiting'
BEGIN
	UPDATE queues SET waiting = waiting - 1 WHERE name = old.queue;
END;
`,
	// 2: Fetch adjusts the waiting counter once per statement instead of
	// the trigger doing it once per claimed job (a fifth of Fetch's cost).
	`
DROP TRIGGER jobs_waiting_update;
CREATE TRIGGER jobs_waiting_update AFTER UPDATE OF state ON jobs
WHEN (old.state = 'waiting') <> (new.state = 'waiting')
	AND NOT (old.state = 'waiting' AND new.state = 'running')
BEGIN
	UPDATE queues SET waiting = waiting + (new.state = 'waiting') - (old.state = 'waiting')
	WHERE name = new.queue;
END;
`,
	// 3: the trigger fires only for statements that set run_at,
	// last_error or reason, so that it costs nothing to Fetch (which
	// adjusts the counter itself, once per batch) and to Succeeded
	// outcomes (which do not change it): a twelfth of their cost. Every
	// other statement that moves a job into or out of waiting sets one of
	// them (Retry, Released: run_at; RecoverLeases: last_error; Cancel,
	// ExpireDue, shedding, group cancellation: reason); a new one must
	// too, and the counter check after every test of this package fails
	// when one does not.
	`
DROP TRIGGER jobs_waiting_update;
CREATE TRIGGER jobs_waiting_update AFTER UPDATE OF run_at, last_error, reason ON jobs
WHEN (old.state = 'waiting') <> (new.state = 'waiting')
BEGIN
	UPDATE queues SET waiting = waiting + (new.state = 'waiting') - (old.state = 'waiting')
	WHERE name = new.queue;
END;
`,
}

// migrate brings the database's schema to len(migrations), one transaction
// per step. It refuses a database written by a newer version.
func migrate(ctx context.Context, db *sql.DB) error {
	var v int
	if err := db.QueryRowContext(ctx, `PRAGMA user_version`).Scan(&v); err != nil {
		return err
	}
	if v > len(migrations) {
		return fmt.Errorf("schema version %d is newer than this build's %d", v, len(migrations))
	}
	for ; v < len(migrations); v++ {
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		// Another process may have migrated since we looked.
		var cur int
		if err := tx.QueryRowContext(ctx, `PRAGMA user_version`).Scan(&cur); err != nil {
			_ = tx.Rollback()
			return err
		}
		if cur > v {
			_ = tx.Rollback()
			if cur > len(migrations) {
				return fmt.Errorf("schema version %d is newer than this build's %d", cur, len(migrations))
			}
			v = cur - 1
			continue
		}
		if _, err := tx.ExecContext(ctx, migrations[v]); err != nil {
			_ = tx.Rollback()
			return fmt.Errorf("schema step %d: %w", v+1, err)
		}
		if _, err := tx.ExecContext(ctx, fmt.Sprintf(`PRAGMA user_version = %d`, v+1)); err != nil {
			_ = tx.Rollback()
			return err
		}
		if err := tx.Commit(); err != nil {
			return err
		}
	}
	return nil
}
