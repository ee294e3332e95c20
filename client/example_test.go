package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"

	"github.com/sluicehq/sluice/client"
	"github.com/sluicehq/sluice/httpapi"
	"github.com/sluicehq/sluice/jobs"
	"github.com/sluicehq/sluice/jobs/sqlitestore"
)

// Enqueue a job, read it back, and handle a full queue by its
// Retry-After.
func Example() {
	// A server to talk to (in real use: "sluice serve").
	dir, _ := os.MkdirTemp("", "client-example")
	defer os.RemoveAll(dir)
	store, err := sqlitestore.Open(context.Background(), filepath.Join(dir, "jobs.db"), sqlitestore.Config{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer store.Close()
	srv := httptest.NewServer(httpapi.New(jobs.NewClient(store, jobs.ClientConfig{}), httpapi.Config{Logger: slog.New(slog.DiscardHandler)}))
	defer srv.Close()

	ctx := context.Background()
	c, err := client.New(srv.URL, client.Config{})
	if err != nil {
		fmt.Println(err)
		return
	}
	if _, err := c.PutQueue(ctx, client.Queue{Name: "mail", Capacity: 1}); err != nil {
		fmt.Println(err)
		return
	}
	res, err := c.Enqueue(ctx, client.NewJob{Kind: "email", Queue: "mail", Payload: json.RawMessage(`{"to":"ada@example.com"}`)})
	if err != nil {
		fmt.Println(err)
		return
	}
	j, err := c.Get(ctx, res.Job.ID)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("job", j.ID, j.Kind, j.State)

	_, err = c.Enqueue(ctx, client.NewJob{Kind: "email", Queue: "mail"})
	var ae *client.APIError
	if errors.Is(err, client.ErrQueueFull) && errors.As(err, &ae) {
		fmt.Println("queue full; retry after at least", ae.RetryAfter >= 1e9)
	}
	// Output:
	// job 1 email waiting
	// queue full; retry after at least true
}
