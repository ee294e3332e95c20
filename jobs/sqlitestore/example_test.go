package sqlitestore_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/sluicehq/sluice/jobs"
	"github.com/sluicehq/sluice/jobs/sqlitestore"
)

// A job's life in the store: enqueue, claim, complete, and close.
func Example() {
	dir, err := os.MkdirTemp("", "sluice-example")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)

	ctx := context.Background()
	s, err := sqlitestore.Open(ctx, filepath.Join(dir, "jobs.db"), sqlitestore.Config{})
	if err != nil {
		panic(err)
	}
	defer s.Close()

	// The engine owns the clock; the store takes now from its caller.
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	n := jobs.NewJob{Kind: "email", Queue: "mail", Payload: []byte(`{"to":"ann@example.com"}`)}
	if err := n.Normalize(now); err != nil {
		panic(err)
	}
	res, err := s.Enqueue(ctx, now, "mail", []jobs.NewJob{n})
	if err != nil {
		panic(err)
	}
	fmt.Println("enqueued:", res[0].Job.State)

	claimed, err := s.Fetch(ctx, now, "mail", "worker-1", 10, 30*time.Second)
	if err != nil {
		panic(err)
	}
	j := claimed[0]
	fmt.Println("claimed:", j.State, "attempt", j.Attempt, "lease until", j.LeaseExpiresAt.Format(time.TimeOnly))

	applied, err := s.Complete(ctx, now.Add(time.Second), "worker-1", []jobs.Outcome{
		{Attempt: jobs.Attempt{ID: j.ID, Attempt: j.Attempt}, Kind: jobs.Succeeded},
	})
	if err != nil {
		panic(err)
	}
	j, err = s.Get(ctx, j.ID)
	if err != nil {
		panic(err)
	}
	fmt.Println("applied:", applied[0], "now", j.State)
	// Output:
	// enqueued: waiting
	// claimed: running attempt 1 lease until 00:00:30
	// applied: true now succeeded
}
