package jobs_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/sluicehq/sluice/jobs"
	"github.com/sluicehq/sluice/jobs/sqlitestore"
	"github.com/sluicehq/sluice/lifecycle"
)

// Email is the payload of the "email" job kind.
type Email struct {
	To      string `json:"to"`
	Subject string `json:"subject"`
}

// The library use: a Go program registers a typed handler per job kind and
// runs a worker in its own process, under a lifecycle.Service that drains
// it on SIGTERM and closes the database last.
func Example() {
	dir, _ := os.MkdirTemp("", "jobs-example")
	defer os.RemoveAll(dir)
	ctx := context.Background()

	store, err := sqlitestore.Open(ctx, filepath.Join(dir, "jobs.db"), sqlitestore.Config{})
	if err != nil {
		fmt.Println(err)
		return
	}
	sent := make(chan string, 1)
	reg := jobs.NewRegistry()
	jobs.HandleJSON(reg, "email", func(ctx context.Context, job *jobs.Job, e Email) error {
		sent <- fmt.Sprintf("to %s: %s (attempt %d)", e.To, e.Subject, job.Attempt)
		return nil
	})
	quiet := slog.New(slog.DiscardHandler)
	worker := jobs.NewWorker(store, reg, jobs.WorkerConfig{Logger: quiet, PollInterval: time.Millisecond})

	svc := lifecycle.New(lifecycle.Config{Logger: quiet, Signals: []os.Signal{}})
	svc.Add("database", lifecycle.Hook{OnStop: func(context.Context) error { return store.Close() }})
	svc.Add("worker", worker) // stops before the database: reverse order
	if err := svc.Start(ctx); err != nil {
		fmt.Println(err)
		return
	}

	client := jobs.NewClient(store, jobs.ClientConfig{})
	res, err := client.Enqueue(ctx, jobs.NewJob{Kind: "email", Payload: []byte(`{"to":"ada@example.com","subject":"hello"}`)})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("enqueued:", res.Job.State)
	fmt.Println("handled:", <-sent)

	fmt.Println("stop:", svc.Stop())
	// Output:
	// enqueued: waiting
	// handled: to ada@example.com: hello (attempt 1)
	// stop: <nil>
}
