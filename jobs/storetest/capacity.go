package storetest

import (
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/sluicehq/sluice/jobs"
)

// prio returns a job of queue q with priority p.
func prio(q string, p int) jobs.NewJob {
	n := job(q)
	n.Priority = p
	return n
}

var capacityTests = []subtest{
	{"Reject", func(h *h) {
		h.putQueue(jobs.QueueConfig{Name: "small", Capacity: 3, Policy: jobs.FullReject})
		first := h.enqueue(T0, "small", job("small"), job("small"))
		_, err := h.tryEnqueue(at(time.Second), "small", job("small"), job("small"))
		h.wantQueueFull(err, "small", 3, false)
		if got := ids(h.list(jobs.ListFilter{Queue: "small"})); !slicesEqual(got, ids(first)) {
			h.t.Fatalf("after a refused batch the queue holds %v, want only %v: a refused batch inserts nothing", got, ids(first))
		}
		h.enqueue(at(2*time.Second), "small", job("small"))
		_, err = h.tryEnqueue(at(3*time.Second), "small", prio("small", jobs.MaxPriority))
		h.wantQueueFull(err, "small", 3, false)

		// A batch larger than the capacity of an empty queue.
		h.putQueue(jobs.QueueConfig{Name: "tiny", Capacity: 1})
		_, err = h.tryEnqueue(T0, "tiny", job("tiny"), job("tiny"))
		h.wantQueueFull(err, "tiny", 1, false)
		if got := h.list(jobs.ListFilter{Queue: "tiny"}); len(got) != 0 {
			h.t.Errorf("refused batch inserted %v", ids(got))
		}
	}},
	{"WaitPolicyRejects", func(h *h) {
		h.putQueue(jobs.QueueConfig{Name: "w", Capacity: 1, Policy: jobs.FullWait, MaxWait: time.Minute})
		h.enqueue(T0, "w", job("w"))
		start := time.Now()
		_, err := h.tryEnqueue(T0, "w", job("w"))
		h.wantQueueFull(err, "w", 1, false)
		if d := time.Since(start); d > 5*time.Second {
			h.t.Errorf("Enqueue into a full FullWait queue took %v: the store must refuse at once (waiting is the caller's business)", d)
		}
	}},
	{"CountsWaitingOnly", func(h *h) {
		h.putQueue(jobs.QueueConfig{Name: "c", Capacity: 2})
		later := job("c")
		later.RunAt = at(time.Hour) // scheduled jobs are waiting jobs
		h.enqueue(T0, "c", later, job("c"))
		_, err := h.tryEnqueue(T0, "c", job("c"))
		h.wantQueueFull(err, "c", 2, false)

		running := h.fetch1(T0, "c", "w", time.Hour)
		h.enqueue(T0, "c", job("c")) // the running job does not count
		_, err = h.tryEnqueue(T0, "c", job("c"))
		h.wantQueueFull(err, "c", 2, false)

		h.completeOK(at(time.Second), "w", ok(running, jobs.Succeeded))
		_, err = h.tryEnqueue(at(time.Second), "c", job("c"))
		h.wantQueueFull(err, "c", 2, false) // nor does a finished one

		w := h.waitingIDs("c")
		h.cancel(at(time.Second), w[0], "make room")
		h.enqueue(at(time.Second), "c", job("c"))
		if got := len(h.waitingIDs("c")); got != 2 {
			h.t.Errorf("queue holds %d waiting jobs, want 2", got)
		}
	}},
	{"Shed", func(h *h) {
		h.putQueue(jobs.QueueConfig{Name: "s", Capacity: 3, Policy: jobs.FullShed})
		a := h.enqueue1(T0, prio("s", 1))
		b := h.enqueue1(at(time.Second), prio("s", 0))
		c := h.enqueue1(at(2*time.Second), prio("s", 0))

		// The newest of the lowest priority goes, and the result says so.
		res, err := h.tryEnqueue(at(3*time.Second), "s", prio("s", 5))
		if err != nil || len(res) != 1 || res[0].Job == nil {
			h.t.Fatalf("Enqueue into a full FullShed queue = %v, %v", res, err)
		}
		n := res[0].Job
		if res[0].Shed != c.ID {
			h.t.Errorf("EnqueueResult.Shed = %d, want %d (the job shed to make room)", res[0].Shed, c.ID)
		}
		shed := h.wantState(c.ID, jobs.StateShed)
		h.wantTime("shed job's FinishedAt", shed.FinishedAt, at(3*time.Second))
		if !strings.Contains(shed.Reason, strconv.FormatInt(n.ID, 10)) {
			h.t.Errorf("shed job's Reason = %q, want it to name the new job %d", shed.Reason, n.ID)
		}
		if w := h.waitingIDs("s"); !sameIDs(w, []int64{a.ID, b.ID, n.ID}) {
			h.t.Errorf("waiting after the shed = %v, want %v", w, []int64{a.ID, b.ID, n.ID})
		}

		// Nothing ranks below a priority-0 job: refused.
		_, err = h.tryEnqueue(at(4*time.Second), "s", prio("s", 0))
		h.wantQueueFull(err, "s", 3, true)
		h.wantState(b.ID, jobs.StateWaiting)

		p := h.enqueue1(at(5*time.Second), prio("s", 1)) // sheds b, the only lower job
		h.wantState(b.ID, jobs.StateShed)

		// Equal priority is not lower: refused.
		_, err = h.tryEnqueue(at(6*time.Second), "s", prio("s", 1))
		h.wantQueueFull(err, "s", 3, true)

		h.enqueue1(at(7*time.Second), prio("s", 9)) // sheds p, the newer of a and p
		h.wantState(p.ID, jobs.StateShed)
		h.wantState(a.ID, jobs.StateWaiting)
		h.wantState(n.ID, jobs.StateWaiting)
	}},
	{"ShedRollback", func(h *h) {
		h.putQueue(jobs.QueueConfig{Name: "s", Capacity: 2, Policy: jobs.FullShed})
		old := h.enqueue(T0, "s", prio("s", 0), prio("s", 0))
		// The first job would shed one, the second cannot: the whole call
		// fails and the shed is undone.
		_, err := h.tryEnqueue(at(time.Second), "s", prio("s", 5), prio("s", 0))
		h.wantQueueFull(err, "s", 2, true)
		all := h.list(jobs.ListFilter{Queue: "s"})
		if !slicesEqual(ids(all), ids(old)) {
			h.t.Errorf("queue holds %v after a refused batch, want %v", ids(all), ids(old))
		}
		for _, j := range all {
			if j.State != jobs.StateWaiting {
				h.t.Errorf("job %d is %s after a refused batch, want waiting", j.ID, j.State)
			}
		}
	}},
}

var idempotencyTests = []subtest{
	{"Duplicate", func(h *h) {
		n := job("q")
		n.IdempotencyKey, n.Payload = "key", json.RawMessage(`{"a":1}`)
		j := h.enqueue1(T0, n)
		res, err := h.tryEnqueue(at(time.Minute), "q", n)
		if err != nil {
			h.t.Fatalf("Enqueue of a duplicate: %v", err)
		}
		if r := res[0]; !r.Duplicate || r.Err != nil || r.Job == nil || r.Job.ID != j.ID {
			h.t.Fatalf("duplicate's result = {Job: %s, Duplicate: %v, Err: %v}, want job %d with Duplicate", show(r.Job), r.Duplicate, r.Err, j.ID)
		}
		if got := h.list(jobs.ListFilter{}); len(got) != 1 {
			h.t.Errorf("store holds %d jobs after a duplicate Enqueue, want 1", len(got))
		}
		// The binding holds after the job finished, and the duplicate
		// reports the job as it is now.
		f := h.fetch1(at(time.Minute), "q", "w", time.Minute)
		h.completeOK(at(2*time.Minute), "w", ok(f, jobs.Succeeded))
		res, err = h.tryEnqueue(at(3*time.Minute), "q", n)
		if err != nil || !res[0].Duplicate || res[0].Job.ID != j.ID || res[0].Job.State != jobs.StateSucceeded {
			h.t.Errorf("duplicate of a finished job = %+v, %v, want job %d succeeded with Duplicate", res, err, j.ID)
		}
	}},
	{"Conflict", func(h *h) {
		n := job("q")
		n.IdempotencyKey, n.Payload = "key", json.RawMessage(`{"a":1}`)
		h.enqueue1(T0, n)
		otherPayload := n
		otherPayload.Payload = json.RawMessage(`{"a":2}`)
		otherKind := n
		otherKind.Kind = "other"
		res, err := h.tryEnqueue(at(time.Second), "q", otherPayload, otherKind, job("q"))
		if err != nil {
			h.t.Fatalf("Enqueue with conflicting keys failed as a whole: %v, want per-job errors", err)
		}
		for i, what := range []string{"another payload", "another kind"} {
			if r := res[i]; !errors.Is(r.Err, jobs.ErrIdempotencyConflict) || r.Duplicate {
				h.t.Errorf("key bound to a job with %s: result = {Job: %s, Duplicate: %v, Err: %v}, want Err ErrIdempotencyConflict",
					what, show(r.Job), r.Duplicate, r.Err)
			}
		}
		if r := res[2]; r.Err != nil || r.Job == nil || r.Duplicate {
			h.t.Errorf("unrelated job in the same batch: {Job: %s, Duplicate: %v, Err: %v}, want inserted", show(r.Job), r.Duplicate, r.Err)
		}
		if got := h.list(jobs.ListFilter{}); len(got) != 2 {
			h.t.Errorf("store holds %d jobs, want 2", len(got))
		}
	}},
	{"Window", func(h *h) {
		h.putQueue(jobs.QueueConfig{Name: "q", IdempotencyWindow: time.Hour})
		n := job("q")
		n.IdempotencyKey = "key"
		first := h.enqueue1(T0, n)
		res, err := h.tryEnqueue(at(59*time.Minute), "q", n)
		if err != nil || !res[0].Duplicate || res[0].Job.ID != first.ID {
			h.t.Fatalf("within the window: %+v, %v, want a duplicate of %d", res, err, first.ID)
		}
		second := h.enqueue1(at(time.Hour+time.Second), n) // the binding has lapsed
		if second.ID == first.ID {
			h.t.Fatalf("after the window Enqueue returned the old job")
		}
		res, err = h.tryEnqueue(at(time.Hour+2*time.Second), "q", n)
		if err != nil || !res[0].Duplicate || res[0].Job.ID != second.ID {
			h.t.Errorf("the key should now be bound to the new job %d: %+v, %v", second.ID, res, err)
		}
		other := n
		other.Payload = json.RawMessage(`"different"`)
		h.enqueue1(at(3*time.Hour), other) // a lapsed key conflicts with nothing
	}},
	{"PerQueue", func(h *h) {
		a, b := job("a"), job("b")
		a.IdempotencyKey, b.IdempotencyKey = "key", "key"
		ja := h.enqueue1(T0, a)
		jb := h.enqueue1(T0, b)
		if ja.ID == jb.ID {
			h.t.Errorf("the same key in two queues returned one job")
		}
	}},
	{"InBatch", func(h *h) {
		n := job("q")
		n.IdempotencyKey = "key"
		conflict := n
		conflict.Payload = json.RawMessage(`[1]`)
		res, err := h.tryEnqueue(T0, "q", n, n, conflict)
		if err != nil {
			h.t.Fatalf("Enqueue: %v", err)
		}
		if res[0].Job == nil || res[0].Duplicate || res[0].Err != nil {
			h.t.Fatalf("first job: %+v, want inserted", res[0])
		}
		if !res[1].Duplicate || res[1].Job == nil || res[1].Job.ID != res[0].Job.ID {
			h.t.Errorf("second job with the same key in the batch: %+v, want a duplicate of %d", res[1], res[0].Job.ID)
		}
		if !errors.Is(res[2].Err, jobs.ErrIdempotencyConflict) {
			h.t.Errorf("third job (other payload): Err = %v, want ErrIdempotencyConflict", res[2].Err)
		}
		if got := h.list(jobs.ListFilter{}); len(got) != 1 {
			h.t.Errorf("store holds %d jobs, want 1", len(got))
		}
	}},
	{"CapacityAfterDuplicate", func(h *h) {
		// A duplicate is not inserted, so it needs no room.
		h.putQueue(jobs.QueueConfig{Name: "q", Capacity: 1})
		n := job("q")
		n.IdempotencyKey = "key"
		j := h.enqueue1(T0, n)
		res, err := h.tryEnqueue(T0, "q", n)
		if err != nil || !res[0].Duplicate || res[0].Job.ID != j.ID {
			h.t.Errorf("duplicate into a full queue: %+v, %v, want a duplicate of %d", res, err, j.ID)
		}
	}},
}
