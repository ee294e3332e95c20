package pgstore_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/sluicehq/sluice/jobs"
	"github.com/sluicehq/sluice/jobs/pgstore"
)

// A node opens the shared database (migrating it if needed), enqueues a
// job, and a worker on any node claims and completes it. It needs a
// server, so it is compiled but not run by go test.
func Example() {
	ctx := context.Background()
	s, err := pgstore.Open(ctx, "postgres://postgres@127.0.0.1:5432/test?sslmode=disable", pgstore.Config{})
	if err != nil {
		log.Fatal(err) // wraps jobs.ErrUnavailable when the server cannot be reached
	}
	defer s.Close()

	// Wake up at once when jobs arrive or a running job is canceled.
	lctx, stop := context.WithCancel(ctx)
	defer stop()
	events, err := s.Listen(lctx)
	if err != nil {
		log.Fatal(err)
	}

	now := time.Now()
	n := jobs.NewJob{Kind: "email", Queue: "mail", Payload: []byte(`{"to":"ann@example.com"}`)}
	if err := n.Normalize(now); err != nil {
		log.Fatal(err)
	}
	if _, err := s.Enqueue(ctx, now, "mail", []jobs.NewJob{n}); err != nil {
		log.Fatal(err) // a *jobs.QueueFullError when the queue is at capacity
	}
	fmt.Println("notified:", (<-events).Queue)

	claimed, err := s.Fetch(ctx, now, "mail", "worker-1", 10, 30*time.Second)
	if err != nil {
		log.Fatal(err)
	}
	j := claimed[0]
	applied, err := s.Complete(ctx, time.Now(), "worker-1", []jobs.Outcome{
		{Attempt: jobs.Attempt{ID: j.ID, Attempt: j.Attempt}, Kind: jobs.Succeeded},
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("applied:", applied[0])
}

// A deployment tool migrates the schema before rolling out new nodes
// (which can then open it with Config.NoMigrate).
func ExampleMigrate() {
	applied, err := pgstore.Migrate(context.Background(), "postgres://postgres@127.0.0.1:5432/test?sslmode=disable", "sluice")
	if err != nil {
		log.Fatal(err) // errors.Is(err, pgstore.ErrSchemaNewer): an older build must not touch it
	}
	fmt.Println("applied versions:", applied, "now at", pgstore.SchemaVersion())
}
