package httptarget_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"sync/atomic"

	"github.com/sluicehq/sluice/httptarget"
	"github.com/sluicehq/sluice/jobs"
)

// A server registers the handler for jobs of kind "http". Here a test
// target stands in for a webhook receiver: it is busy on the first
// attempt and accepts the second. In a server the worker calls Work; this
// example calls it directly to show each outcome.
func Example() {
	var busy atomic.Bool // the target is busy once
	busy.Store(true)
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		fmt.Printf("target: %s %s key=%s attempt=%s\n", r.Method, body, r.Header.Get("Idempotency-Key"), r.Header.Get("Sluice-Attempt"))
		if busy.CompareAndSwap(true, false) {
			w.Header().Set("Retry-After", "30")
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	defer target.Close()

	h := httptarget.New(httptarget.Config{
		// The test target is on loopback, which is refused by default.
		AllowPrefixes: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
		MaxHostPause:  -1, // let the second attempt through at once
		Logger:        slog.New(slog.DiscardHandler),
	})
	defer h.Close() // after the worker stopped: releases idle connections
	reg := jobs.NewRegistry()
	h.Register(reg) // the worker now runs jobs of kind httptarget.Kind with h

	payload, _ := json.Marshal(httptarget.Request{URL: target.URL + "/orders", Body: json.RawMessage(`{"order":42}`)})
	job := &jobs.Job{ID: 7, Attempt: 1, NewJob: jobs.NewJob{Kind: httptarget.Kind, Payload: payload}}

	err := h.Work(context.Background(), job)
	var ra jobs.RetryAfterer
	if errors.As(err, &ra) {
		fmt.Println("attempt 1: retry after", ra.RetryAfter())
	}
	job.Attempt = 2
	fmt.Println("attempt 2:", h.Work(context.Background(), job))
	// Output:
	// target: POST {"order":42} key=sluice-job-7 attempt=1
	// attempt 1: retry after 30s
	// target: POST {"order":42} key=sluice-job-7 attempt=2
	// attempt 2: <nil>
}
