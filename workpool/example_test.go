package workpool_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"strconv"
	"time"

	"github.com/sluicehq/sluice/workpool"
)

// The basic flow: submit, wait for the outcome, close.
func Example() {
	pool := workpool.New(workpool.Config{Workers: 4, QueueSize: 16})

	task, err := pool.Submit(context.Background(), func(ctx context.Context) error {
		fmt.Println("working")
		return nil
	})
	if err != nil {
		fmt.Println("refused:", err)
		return
	}
	fmt.Println("outcome:", task.Wait(context.Background()))

	unstarted, err := pool.Close(context.Background())
	fmt.Println("closed:", len(unstarted), err)
	// Output:
	// working
	// outcome: <nil>
	// closed: 0 <nil>
}

// A typed result.
func ExampleSubmitResult() {
	pool := workpool.New(workpool.Config{})
	defer pool.Close(context.Background())

	sum, err := workpool.SubmitResult(context.Background(), pool, workpool.Options{}, func(ctx context.Context) (int, error) {
		return 40 + 2, nil
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	v, err := sum.Wait(context.Background())
	fmt.Println(v, err)
	// Output: 42 <nil>
}

// An HTTP handler that answers 429 with Retry-After when the pool refuses
// work, instead of queueing without bound.
func ExampleRejectError() {
	pool := workpool.New(workpool.Config{Workers: 1}) // no backlog
	defer pool.Close(context.Background())

	busy := make(chan struct{})
	started := make(chan struct{})
	pool.Submit(context.Background(), func(ctx context.Context) error {
		close(started)
		<-busy
		return nil
	})
	<-started

	handler := func(w http.ResponseWriter, r *http.Request) {
		task, err := pool.Submit(r.Context(), func(ctx context.Context) error { return nil })
		var rej *workpool.RejectError
		if errors.As(err, &rej) {
			secs := int(math.Ceil(rej.RetryAfter.Seconds()))
			w.Header().Set("Retry-After", strconv.Itoa(secs))
			http.Error(w, rej.Reason.String(), http.StatusTooManyRequests)
			return
		}
		if err := task.Wait(r.Context()); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
		}
	}
	rec := httptest.NewRecorder()
	handler(rec, httptest.NewRequest("POST", "/work", nil))
	fmt.Println(rec.Code, rec.Header().Get("Retry-After") != "", rec.Body.String())
	close(busy)
	// Output: 429 true queue_full
}

// Shedding: when the queue is full, a more important task evicts the
// newest task of the lowest class.
func ExamplePolicy_shedLowest() {
	pool := workpool.New(workpool.Config{Workers: 1, QueueSize: 1, Policy: workpool.ShedLowest})
	release := make(chan struct{})
	started := make(chan struct{})
	pool.Submit(context.Background(), func(ctx context.Context) error { close(started); <-release; return nil })
	<-started

	low, _ := pool.SubmitOpts(context.Background(), workpool.Options{Priority: workpool.PriorityLow}, func(context.Context) error { return nil })
	high, _ := pool.SubmitOpts(context.Background(), workpool.Options{Priority: workpool.PriorityHigh}, func(context.Context) error { return nil })
	fmt.Println("low:", low.Wait(context.Background()))
	close(release)
	fmt.Println("high:", high.Wait(context.Background()))
	pool.Close(context.Background())
	// Output:
	// low: workpool: task shed for higher priority work (retry after 1s)
	// high: <nil>
}

// Shutdown: Close drains until its deadline, then cancels running tasks and
// hands back the tasks that never started, so a durable caller can put
// them back in its store.
func ExamplePool_Close() {
	pool := workpool.New(workpool.Config{Workers: 1, QueueSize: 10})
	started := make(chan struct{})
	pool.Submit(context.Background(), func(ctx context.Context) error {
		close(started)
		<-ctx.Done() // a long task that honours cancellation
		return ctx.Err()
	})
	<-started
	for _, job := range []string{"job-1", "job-2"} {
		pool.SubmitOpts(context.Background(), workpool.Options{Tag: job}, func(context.Context) error { return nil })
	}

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	unstarted, err := pool.Close(ctx)
	fmt.Println("close:", err)
	for _, t := range unstarted {
		fmt.Println("re-enqueue", t.Tag())
	}
	// Output:
	// close: workpool: close: context deadline exceeded
	// re-enqueue job-1
	// re-enqueue job-2
}
