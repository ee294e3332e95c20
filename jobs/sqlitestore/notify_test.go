package sqlitestore

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/sluicehq/sluice/jobs"
)

// next receives one notification, failing after a second.
func next(t *testing.T, ch <-chan jobs.Notification) jobs.Notification {
	t.Helper()
	select {
	case n, ok := <-ch:
		if !ok {
			t.Fatal("notifications closed")
		}
		return n
	case <-time.After(time.Second):
		t.Fatal("no notification")
	}
	panic("unreachable")
}

// none fails if a notification is waiting.
func none(t *testing.T, ch <-chan jobs.Notification, after string) {
	t.Helper()
	select {
	case n := <-ch:
		t.Fatalf("after %s: unexpected notification %+v", after, n)
	default:
	}
}

func TestListen(t *testing.T) {
	ctx := context.Background()
	s := open(t, Config{})
	lctx, stop := context.WithCancel(ctx)
	ch, err := s.Listen(lctx)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	enq := func(n jobs.NewJob) jobs.EnqueueResult {
		t.Helper()
		res, err := s.Enqueue(ctx, now, "q", []jobs.NewJob{n})
		if err != nil {
			t.Fatal(err)
		}
		return res[0]
	}

	// Jobs inserted, due now or later.
	a := enq(jobs.NewJob{Kind: "k", IdempotencyKey: "a"})
	if n := next(t, ch); n != (jobs.Notification{Queue: "q"}) {
		t.Fatalf("after Enqueue: %+v", n)
	}
	later := now.Add(time.Hour)
	enq(jobs.NewJob{Kind: "k", RunAt: later})
	if n := next(t, ch); n.Queue != "q" || n.CancelID != 0 || !n.At.Equal(later) {
		t.Fatalf("after a scheduled Enqueue: %+v, want queue q at %v", n, later)
	}
	// Several jobs: due now if one is, else the earliest RunAt.
	both := func(a, b time.Time) jobs.Notification {
		t.Helper()
		if _, err := s.Enqueue(ctx, now, "q", []jobs.NewJob{{Kind: "k", RunAt: a}, {Kind: "k", RunAt: b}}); err != nil {
			t.Fatal(err)
		}
		return next(t, ch)
	}
	if n := both(later, now); !n.At.IsZero() {
		t.Fatalf("a batch with a job due now: At = %v, want zero", n.At)
	}
	if n := both(now, later); !n.At.IsZero() {
		t.Fatalf("a batch with a job due now first: At = %v, want zero", n.At)
	}
	if n := both(later, now.Add(time.Minute)); !n.At.Equal(now.Add(time.Minute)) {
		t.Fatalf("a scheduled batch: At = %v, want its earliest RunAt %v", n.At, now.Add(time.Minute))
	}
	// Nothing inserted: a duplicate.
	if r := enq(jobs.NewJob{Kind: "k", IdempotencyKey: "a"}); !r.Duplicate {
		t.Fatalf("not a duplicate: %+v", r)
	}
	none(t, ch, "a duplicate Enqueue")

	// Cancel: only a running job's cancellation is news to a worker.
	w := enq(jobs.NewJob{Kind: "k", RunAt: later})
	next(t, ch)
	if _, err := s.Cancel(ctx, now, w.Job.ID, "no"); err != nil {
		t.Fatal(err)
	}
	none(t, ch, "canceling a waiting job")
	js, err := s.Fetch(ctx, now, "q", "w", 1, time.Minute)
	if err != nil || len(js) != 1 || js[0].ID != a.Job.ID {
		t.Fatalf("Fetch: %v, %v", js, err)
	}
	if _, err := s.Cancel(ctx, now, a.Job.ID, "stop"); err != nil {
		t.Fatal(err)
	}
	if n := next(t, ch); n != (jobs.Notification{CancelID: a.Job.ID}) {
		t.Fatalf("after canceling a running job: %+v", n)
	}

	// A group's failure requests the cancellation of its running jobs.
	if _, err := s.Enqueue(ctx, now, "g", []jobs.NewJob{
		{Kind: "k", Group: "grp", CancelGroupOnFailure: true, MaxAttempts: 1},
		{Kind: "k", Group: "grp"},
	}); err != nil {
		t.Fatal(err)
	}
	next(t, ch)
	gs, err := s.Fetch(ctx, now, "g", "w", 2, time.Minute)
	if err != nil || len(gs) != 2 {
		t.Fatalf("Fetch: %v, %v", gs, err)
	}
	failing, other := gs[0], gs[1]
	if !failing.CancelGroupOnFailure {
		failing, other = other, failing
	}
	if _, err := s.Complete(ctx, now, "w", []jobs.Outcome{{Attempt: jobs.Attempt{ID: failing.ID, Attempt: failing.Attempt}, Kind: jobs.Failed, Error: "boom"}}); err != nil {
		t.Fatal(err)
	}
	if n := next(t, ch); n != (jobs.Notification{CancelID: other.ID}) {
		t.Fatalf("after a group's failure: %+v, want the cancellation of job %d", n, other.ID)
	}
	none(t, ch, "a group's failure")
	// The same when the failure is a lease that expired on its last attempt.
	if _, err := s.Enqueue(ctx, now, "g", []jobs.NewJob{
		{Kind: "k", Group: "grp2", CancelGroupOnFailure: true, MaxAttempts: 1},
		{Kind: "k", Group: "grp2"},
	}); err != nil {
		t.Fatal(err)
	}
	next(t, ch)
	short, err := s.Fetch(ctx, now, "g", "w", 1, time.Second)
	if err != nil || len(short) != 1 || !short[0].CancelGroupOnFailure {
		t.Fatalf("Fetch: %v, %v", short, err)
	}
	long, err := s.Fetch(ctx, now, "g", "w", 1, time.Hour)
	if err != nil || len(long) != 1 {
		t.Fatalf("Fetch: %v, %v", long, err)
	}
	if n, err := s.RecoverLeases(ctx, now.Add(2*time.Second)); err != nil || n != 1 {
		t.Fatalf("RecoverLeases: %d, %v", n, err)
	}
	if n := next(t, ch); n != (jobs.Notification{CancelID: long[0].ID}) {
		t.Fatalf("after a lease expired on a group's last attempt: %+v, want the cancellation of job %d", n, long[0].ID)
	}

	// PutQueue (a queue may have been resumed).
	q := jobs.QueueConfig{Name: "r"}
	if err := q.Normalize(); err != nil {
		t.Fatal(err)
	}
	if err := s.PutQueue(ctx, q); err != nil {
		t.Fatal(err)
	}
	if n := next(t, ch); n != (jobs.Notification{Queue: "r"}) {
		t.Fatalf("after PutQueue: %+v", n)
	}

	// A listener that does not read never blocks the store: notifications
	// beyond its buffer are dropped.
	for i := range listenBuffer + 10 {
		enq(jobs.NewJob{Kind: "k", IdempotencyKey: fmt.Sprint("b", i)})
	}
	if got := len(ch); got != listenBuffer {
		t.Fatalf("%d notifications buffered, want %d", got, listenBuffer)
	}

	// The channel closes when ctx ends.
	stop()
	deadline := time.After(time.Second)
	for open := true; open; {
		select {
		case _, open = <-ch:
		case <-deadline:
			t.Fatal("channel still open after its ctx ended")
		}
	}
	if !s.LocalOnly() {
		t.Fatal("LocalOnly() = false")
	}
}

func TestListenEndsWithClose(t *testing.T) {
	s, err := Open(context.Background(), filepath.Join(t.TempDir(), "jobs.db"), Config{})
	if err != nil {
		t.Fatal(err)
	}
	ch, err := s.Listen(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, ok := <-ch; ok {
		t.Fatal("a notification after Close")
	}
	if _, err := s.Listen(context.Background()); !errors.Is(err, jobs.ErrClosed) {
		t.Fatalf("Listen after Close: %v, want ErrClosed", err)
	}
	// Writes after Close fail; none may send on the closed channel.
	if _, err := s.Enqueue(context.Background(), time.Now(), "q", []jobs.NewJob{{Kind: "k"}}); !errors.Is(err, jobs.ErrClosed) {
		t.Fatalf("Enqueue after Close: %v", err)
	}
}
