// Package httptarget is the built-in job kind that delivers a job to an
// HTTP endpoint, like a Cloud Tasks HTTP target: the job's payload (a
// Request) names a URL, and the Handler sends the body there with the
// job's id, attempt, idempotency key and remaining time in headers.
//
// A 2xx answer completes the job; 429 and 503 retry it at the target's
// Retry-After; 408, 5xx, timeouts and connection errors retry it with
// backoff; other answers fail it for good. Every target host gets an
// adaptive concurrency limit and a circuit breaker (failsafe-go), each
// attempt a timeout derived from the job's deadline, and every connection
// an address check at dial time that refuses loopback, private,
// link-local and cloud metadata addresses unless the Config allows them.
//
// docs/httptarget.md has the payload format, the headers, the outcome
// table and the address rules.
package httptarget
