package storetest

import (
	"time"

	"github.com/sluicehq/sluice/jobs"
)

var heartbeatTests = []subtest{
	{"Extends", func(h *h) {
		h.enqueue1(T0, job("q"))
		j := h.fetch1(T0, "q", "w", 10*time.Second)
		lost, cancel := h.heartbeat(at(8*time.Second), "w", 10*time.Second, att(j))
		if len(lost) != 0 || len(cancel) != 0 {
			h.t.Fatalf("Heartbeat of a held job: lost %v, cancel %v, want none", lost, cancel)
		}
		got := h.get(j.ID)
		h.wantTime("LeaseExpiresAt after Heartbeat", got.LeaseExpiresAt, at(18*time.Second))
		if n := h.recover(at(15 * time.Second)); n != 0 {
			h.t.Errorf("RecoverLeases after the original lease but within the extended one = %d, want 0", n)
		}
		got = h.wantState(j.ID, jobs.StateRunning)
		if got.LeaseOwner != "w" || got.Attempt != 1 {
			h.t.Errorf("job after Heartbeat = %s, want owner w, attempt 1", show(got))
		}
		if n := h.recover(at(19 * time.Second)); n != 1 {
			h.t.Errorf("RecoverLeases after the extended lease = %d, want 1", n)
		}
	}},
	{"Lost", func(h *h) {
		// j1..j3 in queue "short" lose their lease; j4, j5 in "long" keep it.
		short := func(prio int) jobs.NewJob { n := job("short"); n.Priority = prio; return n }
		h.enqueue(T0, "short", short(0), short(5), short(0))
		h.enqueue(T0, "long", job("long"), job("long"))
		s := h.fetch(T0, "short", "w1", 3, 10*time.Second)
		l := h.fetch(T0, "long", "w1", 2, time.Hour)
		if len(s) != 3 || len(l) != 2 {
			h.t.Fatalf("Fetch claimed %d and %d jobs, want 3 and 2", len(s), len(l))
		}
		// takenOver (priority 5) will be refetched and finished by w2,
		// canceled canceled while waiting, waiting left waiting.
		var takenOver, canceled, waiting *jobs.Job
		for _, j := range s {
			switch {
			case j.Priority == 5:
				takenOver = j
			case canceled == nil:
				canceled = j
			default:
				waiting = j
			}
		}
		j4, j5 := l[0], l[1]
		if n := h.recover(at(20 * time.Second)); n != 3 {
			h.t.Fatalf("RecoverLeases = %d, want 3", n)
		}
		h.cancel(at(20*time.Second), canceled.ID, "stop")
		// w2 takes the priority-5 job and finishes it.
		j := h.fetch1(at(20*time.Second), "short", "w2", time.Minute)
		if j.ID != takenOver.ID {
			h.t.Fatalf("w2 fetched %s, want job %d", show(j), takenOver.ID)
		}
		h.completeOK(at(21*time.Second), "w2", ok(j, jobs.Succeeded))

		// w2's heartbeat for w1's job is not w2's.
		if lost, _ := h.heartbeat(at(21*time.Second), "w2", time.Hour, att(j4)); !sameIDs(lost, []int64{j4.ID}) {
			h.t.Errorf("Heartbeat by another owner: lost = %v, want [%d]", lost, j4.ID)
		}
		h.wantTime("LeaseExpiresAt after another owner's Heartbeat", h.get(j4.ID).LeaseExpiresAt, at(time.Hour))

		stale := att(j5)
		stale.Attempt = 7
		unknown := jobs.Attempt{ID: j5.ID + 1000, Attempt: 1}
		lost, cancel := h.heartbeat(at(22*time.Second), "w1", time.Hour,
			att(waiting), att(takenOver), att(canceled), att(j4), stale, unknown)
		want := []int64{waiting.ID, takenOver.ID, canceled.ID, j5.ID, unknown.ID}
		if !sameIDs(lost, want) {
			h.t.Errorf("Heartbeat lost = %v, want %v (recovered and waiting, finished by another, canceled, wrong attempt, unknown)", lost, want)
		}
		if len(cancel) != 0 {
			h.t.Errorf("Heartbeat cancel = %v, want none", cancel)
		}
		h.wantTime("held job's LeaseExpiresAt", h.get(j4.ID).LeaseExpiresAt, at(22*time.Second+time.Hour))
		h.wantState(waiting.ID, jobs.StateWaiting)
		h.wantState(takenOver.ID, jobs.StateSucceeded)
		h.wantState(canceled.ID, jobs.StateCanceled)
		h.wantTime("LeaseExpiresAt of the job heartbeated with a wrong attempt", h.get(j5.ID).LeaseExpiresAt, at(time.Hour))
	}},
	{"CancelRequested", func(h *h) {
		h.enqueue(T0, "q", job("q"), job("q"))
		js := h.fetch(T0, "q", "w", 2, 10*time.Second)
		if len(js) != 2 {
			h.t.Fatalf("Fetch claimed %d, want 2", len(js))
		}
		h.cancel(at(time.Second), js[0].ID, "user")
		lost, cancel := h.heartbeat(at(2*time.Second), "w", 10*time.Second, att(js[0]), att(js[1]))
		if len(lost) != 0 || !sameIDs(cancel, []int64{js[0].ID}) {
			h.t.Errorf("Heartbeat after Cancel of a running job: lost %v, cancel %v, want none and [%d]", lost, cancel, js[0].ID)
		}
		// The lease stays the worker's until it reports the outcome.
		got := h.wantState(js[0].ID, jobs.StateRunning)
		h.wantTime("cancel-requested job's LeaseExpiresAt", got.LeaseExpiresAt, at(12*time.Second))
	}},
}

var recoverTests = []subtest{
	{"Requeue", func(h *h) {
		n := job("q")
		n.MaxAttempts = 3
		h.enqueue1(T0, n)
		j := h.fetch1(T0, "q", "w", 10*time.Second)
		if n := h.recover(at(10 * time.Second)); n != 0 {
			h.t.Errorf("RecoverLeases at the lease's expiry = %d, want 0 (only leases expired before now)", n)
		}
		if n := h.recover(at(10*time.Second + time.Nanosecond)); n != 1 {
			h.t.Fatalf("RecoverLeases after the lease's expiry = %d, want 1", n)
		}
		got := h.wantState(j.ID, jobs.StateWaiting)
		if got.Attempt != 1 || !got.FinishedAt.IsZero() {
			h.t.Errorf("recovered job = %s, want Attempt 1 (the attempt was used), no FinishedAt", show(got))
		}
		j2 := h.fetch1(at(11*time.Second), "q", "w2", time.Minute)
		if j2.ID != j.ID || j2.Attempt != 2 {
			h.t.Errorf("refetched = %s, want job %d attempt 2", show(j2), j.ID)
		}
		if n := h.recover(at(12 * time.Second)); n != 0 {
			h.t.Errorf("RecoverLeases with a fresh lease = %d, want 0", n)
		}
	}},
	{"Exhausted", func(h *h) {
		n := job("q")
		n.MaxAttempts = 1
		h.enqueue1(T0, n)
		j := h.fetch1(T0, "q", "w", 10*time.Second)
		if n := h.recover(at(time.Minute)); n != 1 {
			h.t.Fatalf("RecoverLeases = %d, want 1", n)
		}
		got := h.wantState(j.ID, jobs.StateFailed)
		h.wantTime("FinishedAt", got.FinishedAt, at(time.Minute))
		if js := h.fetch(at(time.Minute), "q", "w", 10, time.Minute); len(js) != 0 {
			h.t.Errorf("Fetch claimed %v after the job failed", ids(js))
		}
	}},
	{"Unexpired", func(h *h) {
		h.enqueue(T0, "a", job("a"))
		h.enqueue(T0, "b", job("b"))
		a := h.fetch1(T0, "a", "w", 10*time.Second)
		b := h.fetch1(T0, "b", "w", time.Minute)
		if n := h.recover(at(30 * time.Second)); n != 1 {
			h.t.Fatalf("RecoverLeases = %d, want 1", n)
		}
		h.wantState(a.ID, jobs.StateWaiting)
		h.wantSameJob("job with an unexpired lease", h.get(b.ID), b)
		if n := h.recover(at(30 * time.Second)); n != 0 {
			h.t.Errorf("a second RecoverLeases = %d, want 0", n)
		}
	}},
}
