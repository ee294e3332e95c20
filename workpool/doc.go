// Package workpool runs func(ctx) error tasks on a bounded number of
// goroutines, with a bounded, prioritized queue, and makes every way work
// can be refused explicit and observable.
//
// # Bounds
//
// Config.Workers bounds how many tasks run at once; Config.QueueSize bounds
// how many accepted tasks wait (0: a task starts now or is refused). Both
// can be changed at run time with SetWorkers and SetQueueSize. Nothing in a
// Pool grows without bound: workers start on demand up to the bound, and
// the queue never holds more than QueueSize tasks.
//
// # Priorities and policies
//
// Each task has a Priority class (low, normal, high, critical); a free
// worker always takes the oldest task of the highest class. When no worker
// is free and the queue is full, the Policy decides, per pool with a
// per-task override in Options:
//
//   - Reject refuses at once with ErrQueueFull.
//   - Wait blocks the submitter until a slot frees, its context ends, or
//     MaxWait passes, then refuses with ErrQueueFull.
//   - ShedLowest evicts the newest queued task of the lowest class if that
//     class is below the new task's (the evicted task resolves with
//     ErrShed); otherwise it refuses with ErrQueueFull.
//
// Every refusal is a *RejectError carrying its Reason and a RetryAfter
// estimate derived from the pool's recent drain rate, so that an HTTP
// layer can answer 429 or 503 with a Retry-After header without guessing.
//
// # Deadlines
//
// A queued task whose context is canceled or whose deadline passes leaves
// the queue at once (not when a worker reaches it) and resolves with
// ErrExpired; it never runs. MaxQueueWait bounds the time in the queue,
// and CoDel mode (CoDelTarget, CoDelInterval) drops tasks that waited
// longer than the target once the queue has stood for an interval. A
// running task's context is canceled when its submitter's is, and at
// Close's hard stop.
//
// # Panics
//
// A task that panics is recovered: its handle resolves with a *PanicError
// holding the value and the stack, Hooks.OnPanic is called, and the worker
// goes on. A task that calls runtime.Goexit resolves with ErrGoexit and its
// worker is replaced. Either way the pool keeps its size.
//
// # Stop
//
// Close refuses new work at once, lets queued and running tasks finish
// until its context ends, then cancels running tasks, waits for them, and
// returns the tasks that never started, so that a durable caller can
// re-enqueue them. No goroutine started by the pool outlives Close.
//
// # Observability
//
// Stats returns a snapshot of the pool's gauges and counters; Hooks report
// each start, finish, panic and refusal with queue-wait and run durations.
// Package workpoolprom registers both as Prometheus metrics; this package
// itself has no dependencies.
//
// # Costs
//
// Submit allocates the *Task handle and nothing else when the submitter's
// context has no Done channel; a cancelable context costs a few more
// allocations (the task's derived context and the queue expiry). A refusal
// costs one allocation (the *RejectError). Go and GoOpts with a background
// context and no MaxQueueWait allocate nothing. Queues are ring buffers
// that grow by doubling (amortized, not per task). See docs/benchmarks.md for
// measured figures beside other pools.
package workpool
