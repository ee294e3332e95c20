// Package storetest is the conformance suite every jobs.Store must pass.
//
// A store's own test calls Run with a function that opens a fresh, empty
// store for each sub-test:
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) jobs.Store {
//			s, err := mystore.Open(...)
//			if err != nil {
//				t.Fatal(err)
//			}
//			t.Cleanup(func() { s.Close() })
//			return s
//		})
//	}
//
// Every sub-test fixes its clock (T0 and offsets from it) and passes it to
// the store explicitly; a store that reads the wall clock for job logic
// fails. Each rule in the jobs.Store documentation has at least one
// sub-test that fails when the rule is broken.
package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/jobs"
)

// T0 is the base time of every sub-test.
var T0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// at returns T0 + d.
func at(d time.Duration) time.Time { return T0.Add(d) }

// Run runs the suite. open must return a fresh, empty store and register
// its Close with t.Cleanup.
func Run(t *testing.T, open func(t *testing.T) jobs.Store) {
	groups := []struct {
		name  string
		tests []subtest
	}{
		{"Enqueue", enqueueTests},
		{"List", listTests},
		{"Fetch", fetchTests},
		{"Complete", completeTests},
		{"Heartbeat", heartbeatTests},
		{"RecoverLeases", recoverTests},
		{"Capacity", capacityTests},
		{"Idempotency", idempotencyTests},
		{"Group", groupTests},
		{"Cancel", cancelTests},
		{"DeleteFinished", retentionTests},
		{"Text", textTests},
		{"Queues", queueTests},
		{"Concurrent", concurrentTests},
		{"Context", contextTests},
		{"Lookahead", lookaheadTests},
	}
	for _, g := range groups {
		t.Run(g.name, func(t *testing.T) {
			for _, st := range g.tests {
				t.Run(st.name, func(t *testing.T) {
					st.f(&h{t: t, s: open(t), ctx: context.Background()})
				})
			}
		})
	}
}

type subtest struct {
	name string
	f    func(h *h)
}

// h bundles a sub-test's store with helpers that fail the test on
// unexpected errors.
type h struct {
	t   *testing.T
	s   jobs.Store
	ctx context.Context
}

// job returns a NewJob of kind "k" in queue q, for editing.
func job(q string) jobs.NewJob { return jobs.NewJob{Kind: "k", Queue: q} }

// normalized returns n normalized at now, failing the test if it is invalid.
func (h *h) normalized(now time.Time, n jobs.NewJob) jobs.NewJob {
	h.t.Helper()
	if err := n.Normalize(now); err != nil {
		h.t.Fatalf("Normalize(%+v): %v", n, err)
	}
	return n
}

// tryEnqueue normalizes the jobs at now and enqueues them into queue.
func (h *h) tryEnqueue(now time.Time, queue string, ns ...jobs.NewJob) ([]jobs.EnqueueResult, error) {
	h.t.Helper()
	batch := make([]jobs.NewJob, len(ns))
	for i, n := range ns {
		if n.Queue == "" {
			n.Queue = queue
		}
		batch[i] = h.normalized(now, n)
	}
	res, err := h.s.Enqueue(h.ctx, now, queue, batch)
	if err == nil && len(res) != len(batch) {
		h.t.Fatalf("Enqueue of %d jobs returned %d results", len(batch), len(res))
	}
	return res, err
}

// enqueue is tryEnqueue that fails the test on an error, including one in
// a result.
func (h *h) enqueue(now time.Time, queue string, ns ...jobs.NewJob) []*jobs.Job {
	h.t.Helper()
	res, err := h.tryEnqueue(now, queue, ns...)
	if err != nil {
		h.t.Fatalf("Enqueue into %q at %v: %v", queue, now, err)
	}
	out := make([]*jobs.Job, len(res))
	for i, r := range res {
		if r.Err != nil || r.Job == nil || r.Duplicate {
			h.t.Fatalf("Enqueue into %q: result %d = {Job: %v, Duplicate: %v, Err: %v}, want a new job", queue, i, r.Job, r.Duplicate, r.Err)
		}
		out[i] = r.Job
	}
	return out
}

// enqueue1 enqueues one job into its queue (or the default queue).
func (h *h) enqueue1(now time.Time, n jobs.NewJob) *jobs.Job {
	h.t.Helper()
	q := n.Queue
	if q == "" {
		q = jobs.DefaultQueue
	}
	return h.enqueue(now, q, n)[0]
}

func (h *h) fetch(now time.Time, queue, owner string, limit int, lease time.Duration) []*jobs.Job {
	h.t.Helper()
	js, err := h.s.Fetch(h.ctx, now, queue, owner, limit, lease)
	if err != nil {
		h.t.Fatalf("Fetch(%q, owner %q, limit %d) at %v: %v", queue, owner, limit, now, err)
	}
	if len(js) > limit {
		h.t.Fatalf("Fetch(limit %d) claimed %d jobs", limit, len(js))
	}
	return js
}

// fetch1 fetches exactly one job, failing the test otherwise.
// claim enqueues n jobs in queue at T0 and fetches them all for owner
// with a one-minute lease.
func (h *h) claim(queue, owner string, n int) []*jobs.Job {
	h.t.Helper()
	batch := make([]jobs.NewJob, n)
	for i := range batch {
		batch[i] = job(queue)
	}
	h.enqueue(T0, queue, batch...)
	js := h.fetch(T0, queue, owner, n, time.Minute)
	if len(js) != n {
		h.t.Fatalf("Fetch claimed %d, want %d", len(js), n)
	}
	return js
}

func (h *h) fetch1(now time.Time, queue, owner string, lease time.Duration) *jobs.Job {
	h.t.Helper()
	js := h.fetch(now, queue, owner, 1, lease)
	if len(js) != 1 {
		h.t.Fatalf("Fetch(%q) at %v claimed %d jobs, want 1", queue, now, len(js))
	}
	return js[0]
}

func (h *h) complete(now time.Time, owner string, os ...jobs.Outcome) []bool {
	h.t.Helper()
	applied, err := h.s.Complete(h.ctx, now, owner, os)
	if err != nil {
		h.t.Fatalf("Complete(owner %q, %+v): %v", owner, os, err)
	}
	if len(applied) != len(os) {
		h.t.Fatalf("Complete of %d outcomes returned %d applied flags", len(os), len(applied))
	}
	return applied
}

// retryAt records a Retry of j (held by "w") at T0, to run again at
// at(runAt).
func (h *h) retryAt(j *jobs.Job, runAt time.Duration) {
	h.t.Helper()
	o := ok(j, jobs.Retry)
	o.RunAt, o.Error = at(runAt), "retry"
	h.completeOK(T0, "w", o)
}

// completeOK completes and requires every outcome to apply.
func (h *h) completeOK(now time.Time, owner string, os ...jobs.Outcome) {
	h.t.Helper()
	for i, ok := range h.complete(now, owner, os...) {
		if !ok {
			h.t.Fatalf("Complete: outcome %d (%+v) not applied, want applied", i, os[i])
		}
	}
}

func (h *h) heartbeat(now time.Time, owner string, lease time.Duration, held ...jobs.Attempt) (lost, cancel []int64) {
	h.t.Helper()
	lost, cancel, err := h.s.Heartbeat(h.ctx, now, owner, held, lease)
	if err != nil {
		h.t.Fatalf("Heartbeat(owner %q, %v): %v", owner, held, err)
	}
	return lost, cancel
}

func (h *h) get(id int64) *jobs.Job {
	h.t.Helper()
	j, err := h.s.Get(h.ctx, id)
	if err != nil {
		h.t.Fatalf("Get(%d): %v", id, err)
	}
	if j.ID != id {
		h.t.Fatalf("Get(%d) returned job %d", id, j.ID)
	}
	return j
}

func (h *h) list(f jobs.ListFilter) []*jobs.Job {
	h.t.Helper()
	js, err := h.s.List(h.ctx, f)
	if err != nil {
		h.t.Fatalf("List(%+v): %v", f, err)
	}
	return js
}

func (h *h) putQueue(q jobs.QueueConfig) jobs.QueueConfig {
	h.t.Helper()
	if err := q.Normalize(); err != nil {
		h.t.Fatalf("QueueConfig.Normalize(%+v): %v", q, err)
	}
	if err := h.s.PutQueue(h.ctx, q); err != nil {
		h.t.Fatalf("PutQueue(%+v): %v", q, err)
	}
	return q
}

func (h *h) recover(now time.Time) int {
	h.t.Helper()
	n, err := h.s.RecoverLeases(h.ctx, now)
	if err != nil {
		h.t.Fatalf("RecoverLeases at %v: %v", now, err)
	}
	return n
}

func (h *h) cancel(now time.Time, id int64, reason string) *jobs.Job {
	h.t.Helper()
	j, err := h.s.Cancel(h.ctx, now, id, reason)
	if err != nil {
		h.t.Fatalf("Cancel(%d): %v", id, err)
	}
	if j == nil || j.ID != id {
		h.t.Fatalf("Cancel(%d) returned %+v", id, j)
	}
	return j
}

// wantState fails unless job id is in state want, and returns it.
func (h *h) wantState(id int64, want jobs.State) *jobs.Job {
	h.t.Helper()
	j := h.get(id)
	if j.State != want {
		h.t.Fatalf("job %d: State = %q, want %q (job: %s)", id, j.State, want, show(j))
	}
	return j
}

// wantTime reports a time field that differs from want.
func (h *h) wantTime(what string, got, want time.Time) {
	h.t.Helper()
	if !got.Equal(want) {
		h.t.Errorf("%s = %v, want %v", what, got, want)
	}
}

// ok is an Outcome of kind k for job j's current attempt.
func ok(j *jobs.Job, k jobs.OutcomeKind) jobs.Outcome {
	return jobs.Outcome{Attempt: jobs.Attempt{ID: j.ID, Attempt: j.Attempt}, Kind: k}
}

func att(j *jobs.Job) jobs.Attempt { return jobs.Attempt{ID: j.ID, Attempt: j.Attempt} }

func ids(js []*jobs.Job) []int64 {
	out := make([]int64, len(js))
	for i, j := range js {
		out[i] = j.ID
	}
	return out
}

// sameIDs reports whether a and b hold the same IDs, in any order.
func sameIDs(a, b []int64) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

func show(j *jobs.Job) string {
	if j == nil {
		return "<nil>"
	}
	return fmt.Sprintf("{ID:%d Queue:%q State:%s Attempt:%d/%d Priority:%d RunAt:%v Owner:%q LeaseExpiresAt:%v CancelRequested:%v LastError:%q Reason:%q FinishedAt:%v}",
		j.ID, j.Queue, j.State, j.Attempt, j.MaxAttempts, j.Priority, j.RunAt, j.LeaseOwner, j.LeaseExpiresAt,
		j.CancelRequested, j.LastError, j.Reason, j.FinishedAt)
}

// jsonEqual compares two JSON documents by value.
func jsonEqual(a, b json.RawMessage) bool {
	var va, vb any
	if json.Unmarshal(a, &va) != nil || json.Unmarshal(b, &vb) != nil {
		return false
	}
	return reflect.DeepEqual(va, vb)
}

// diffJobs lists the fields in which got differs from want.
func diffJobs(got, want *jobs.Job) []string {
	var d []string
	field := func(name string, g, w any) {
		if gt, ok := g.(time.Time); ok {
			if !gt.Equal(w.(time.Time)) {
				d = append(d, fmt.Sprintf("%s = %v, want %v", name, g, w))
			}
			return
		}
		if !reflect.DeepEqual(g, w) {
			d = append(d, fmt.Sprintf("%s = %v, want %v", name, g, w))
		}
	}
	field("ID", got.ID, want.ID)
	field("Kind", got.Kind, want.Kind)
	field("Queue", got.Queue, want.Queue)
	if !jsonEqual(got.Payload, want.Payload) {
		d = append(d, fmt.Sprintf("Payload = %s, want %s", got.Payload, want.Payload))
	}
	field("Priority", got.Priority, want.Priority)
	field("IdempotencyKey", got.IdempotencyKey, want.IdempotencyKey)
	field("RunAt", got.RunAt, want.RunAt)
	field("Deadline", got.Deadline, want.Deadline)
	field("AttemptTimeout", got.AttemptTimeout, want.AttemptTimeout)
	field("MaxAttempts", got.MaxAttempts, want.MaxAttempts)
	field("BackoffMin", got.BackoffMin, want.BackoffMin)
	field("BackoffMax", got.BackoffMax, want.BackoffMax)
	field("Group", got.Group, want.Group)
	field("CancelGroupOnFailure", got.CancelGroupOnFailure, want.CancelGroupOnFailure)
	field("State", got.State, want.State)
	field("Attempt", got.Attempt, want.Attempt)
	field("LastError", got.LastError, want.LastError)
	field("Reason", got.Reason, want.Reason)
	field("CreatedAt", got.CreatedAt, want.CreatedAt)
	field("UpdatedAt", got.UpdatedAt, want.UpdatedAt)
	field("FinishedAt", got.FinishedAt, want.FinishedAt)
	field("LeaseOwner", got.LeaseOwner, want.LeaseOwner)
	field("LeaseExpiresAt", got.LeaseExpiresAt, want.LeaseExpiresAt)
	field("CancelRequested", got.CancelRequested, want.CancelRequested)
	return d
}

func (h *h) wantSameJob(what string, got, want *jobs.Job) {
	h.t.Helper()
	if d := diffJobs(got, want); len(d) > 0 {
		h.t.Errorf("%s differs:\n\t%s", what, strings.Join(d, "\n\t"))
	}
}

// wantQueueFull fails unless err is a *jobs.QueueFullError for queue with
// the given capacity and Shed flag.
func (h *h) wantQueueFull(err error, queue string, capacity int, shed bool) {
	h.t.Helper()
	if err == nil {
		h.t.Fatalf("Enqueue into full queue %q succeeded, want *jobs.QueueFullError", queue)
	}
	var qf *jobs.QueueFullError
	if !errors.As(err, &qf) {
		h.t.Fatalf("Enqueue into full queue %q: error %v (%T) is not a *jobs.QueueFullError", queue, err, err)
	}
	if !errors.Is(err, jobs.ErrQueueFull) {
		h.t.Errorf("errors.Is(%v, ErrQueueFull) = false", err)
	}
	if qf.Queue != queue || qf.Capacity != capacity || qf.Shed != shed {
		h.t.Errorf("QueueFullError = {Queue: %q, Capacity: %d, Shed: %v}, want {%q, %d, %v}",
			qf.Queue, qf.Capacity, qf.Shed, queue, capacity, shed)
	}
	if qf.RetryAfter < 0 {
		h.t.Errorf("QueueFullError.RetryAfter = %v, want >= 0", qf.RetryAfter)
	}
}

// waitingIDs lists the IDs of queue's waiting jobs.
func (h *h) waitingIDs(queue string) []int64 {
	h.t.Helper()
	return ids(h.list(jobs.ListFilter{Queue: queue, State: jobs.StateWaiting, Limit: 10000}))
}
