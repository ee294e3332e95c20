package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
)

// Handler runs one attempt of a job. ctx ends at the job's deadline, at
// its attempt timeout, when the job is canceled, and when the worker stops
// past its drain deadline; a handler must return soon after.
//
// Returning nil completes the job. An error retries it with backoff until
// its attempts run out; an error wrapped by Permanent fails it at once. A
// panic is recovered and counts as an error, with its stack.
type Handler interface {
	Work(ctx context.Context, job *Job) error
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, job *Job) error

// Work calls f.
func (f HandlerFunc) Work(ctx context.Context, job *Job) error { return f(ctx, job) }

// Registry maps job kinds to handlers. Safe for concurrent use.
type Registry struct {
	mu sync.RWMutex
	m  map[string]Handler // guarded by mu
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry { return &Registry{m: make(map[string]Handler)} }

// Handle registers h for kind, replacing any earlier handler.
func (r *Registry) Handle(kind string, h Handler) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.m[kind] = h
}

// HandleJSON registers a typed handler: the job's payload is decoded into
// a T first. A payload that does not decode fails the job for good.
func HandleJSON[T any](r *Registry, kind string, fn func(ctx context.Context, job *Job, payload T) error) {
	r.Handle(kind, HandlerFunc(func(ctx context.Context, job *Job) error {
		var v T
		if err := json.Unmarshal(job.Payload, &v); err != nil {
			return Permanent(fmt.Errorf("decode %s payload: %w", kind, err))
		}
		return fn(ctx, job, v)
	}))
}

func (r *Registry) handler(kind string) Handler {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.m[kind]
}

// Permanent marks err as not worth retrying: the job fails at once.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err}
}

type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// IsPermanent reports whether err was marked by Permanent.
func IsPermanent(err error) bool {
	var p *permanentError
	return errors.As(err, &p)
}
