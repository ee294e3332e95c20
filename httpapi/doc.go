// Package httpapi is the JSON API of a Sluice job server, over net/http
// with Go 1.22 routing patterns. [New] returns a [*Server], an
// http.Handler over a *jobs.Client:
//
//	POST /v1/queues/{queue}/jobs    enqueue one job, or {"jobs": [...]} atomically
//	GET  /v1/jobs/{id}              a job
//	GET  /v1/jobs?queue=&state=&group=&after=&limit=   jobs, paged by id
//	POST /v1/jobs/{id}/cancel       cancel a job
//	GET  /v1/groups/{name}          a group's outcome
//	GET  /v1/queues                 every queue's configuration
//	GET  /v1/queues/{name}          a queue's configuration
//	PUT  /v1/queues/{name}          create or replace a queue's configuration
//	POST /v1/queues/{name}/pause    pause a queue (it accepts jobs, starts none)
//	POST /v1/queues/{name}/resume   resume it
//	GET  /healthz, /readyz          liveness and readiness, never behind the token
//	GET  /metrics                   Config.Metrics, when set
//
// Field names are snake_case, durations Go duration strings ("1.5s"),
// times RFC 3339. Request bodies are decoded strictly: unknown, repeated
// or mistyped fields and trailing data are refused with 400
// invalid_request naming the field. Every error is
// {"error": {"code", "message", "field"}}, its status chosen by one table
// of error kinds (errorKinds in errors.go, reproduced in docs/api.md):
// a full queue is 429 and an unavailable or closing store 503, both with
// Retry-After.
//
// The Server holds no goroutines and owns nothing: the caller closes the
// store behind the client. Admission control (package admit) wraps it
// from outside.
package httpapi
