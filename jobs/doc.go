// Package jobs is Sluice's durable job engine: jobs survive restarts and
// crashes, queues are bounded and say so, every attempt is fenced by its
// lease, and stopping loses nothing.
//
// The pieces:
//
//   - [Store] keeps jobs and queue configurations: jobs/sqlitestore (the
//     embedded default) and jobs/pgstore (PostgreSQL, several nodes). Every
//     store passes the conformance suite in jobs/storetest.
//   - [Client] enqueues (one job or a batch, atomically), reads, lists and
//     cancels jobs, reads groups, and configures queues. A full queue
//     answers with a [*QueueFullError] carrying a Retry-After estimate.
//   - [Worker] fetches jobs in batches, runs their [Handler] on a bounded
//     workpool per queue, heartbeats their leases and records outcomes in
//     batched transactions. It is a lifecycle component: Quiesce stops
//     fetching, Drain lets running jobs finish until its deadline and then
//     releases them (back to waiting, no attempt used), Stop writes the
//     last outcomes. Its maintenance recovers expired leases, expires
//     jobs past their deadline and deletes finished jobs older than
//     [WorkerConfig].Retention (7 days by default).
//   - [Registry] maps job kinds to handlers; [HandleJSON] registers a typed
//     one.
//
// Delivery is at least once: a job runs again only if a worker lost its
// lease while running it (the process was killed, or stalled past the
// lease). Outcomes are fenced by attempt and owner, so a worker that lost
// its lease cannot overwrite the result of a newer attempt.
//
// States, transitions and defaults are in docs/jobs.md.
package jobs
