// Package admit is admission control for net/http servers: a bound on
// requests in flight, priority classes that decide who is refused first
// under overload, a deadline header that becomes the request context's
// deadline, and refusals cheap enough to keep answering at ten times the
// load the server can serve.
//
// # Admission
//
// A Limiter counts admitted requests in flight, all classes together,
// against Config.MaxInFlight. Each class may fill the slots only up to its
// own limit: by default a sheddable request is admitted while fewer than
// half the slots are taken, a default request while fewer than 90% are,
// and a critical request while any slot is free. So as load rises,
// sheddable requests are refused first, then default ones, and critical
// ones only when every slot is taken; the slots above each limit are
// reserved for the more important classes.
//
// With Config.MaxQueueWait set, a request that finds no slot waits briefly
// in a bounded queue instead of being refused at once; a freed slot goes
// to the most important waiter that fits, and a waiting request leaves as
// soon as its context ends or its deadline passes.
//
// # Headers and responses
//
// The class comes from the Sluice-Priority header (critical, default or
// sheddable; missing means default) and the deadline from the
// Sluice-Deadline header (a Go duration such as 250ms, a bare integer of
// milliseconds such as 250, or an RFC 3339 timestamp). Refusals are answered before the request body is read, with
// a JSON body {"error":{"code":...,"message":...}}:
//
//	400 bad_priority, bad_deadline   a header could not be parsed
//	429 overloaded + Retry-After     no slot for the class (at once, after queueing, or shed)
//	503 shutting_down + Retry-After  Close was called
//	503 canceled                     the context ended while queued
//	504 deadline_exceeded            the deadline had passed, or passed while queued
//
// Retry-After is estimated from the recent completion rate of admitted
// requests: the completions needed before a slot frees for the class,
// divided by that rate, rounded up to whole seconds, at least one.
//
// # Shutdown
//
// Close (or Quiesce, for lifecycle's stop-accepting phase) refuses every
// new and queued request with 503 while admitted ones finish; Wait
// returns once they have.
//
// # Panics
//
// The middleware does not recover panics: a panicking handler's slot is
// released and the panic goes on to net/http (or to an outer recovering
// middleware).
//
// # Observability and costs
//
// Stats returns a snapshot of gauges and counters per class and reason;
// Config.OnRefuse sees every refusal. The package imports only the
// standard library. A Limiter starts no goroutine. Admission takes one
// short lock to admit and one to release (about 150 ns in all); a refusal
// costs about 0.6 µs and one small allocation (see docs/admit.md).
//
// Acquire and Release expose the same admission to work that is not an
// HTTP request.
package admit
