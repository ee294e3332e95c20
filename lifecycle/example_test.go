package lifecycle_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/sluicehq/sluice/lifecycle"
)

// fakeDB stands in for a database pool.
type fakeDB struct{}

func (*fakeDB) Open(context.Context) error  { fmt.Println("db: open"); return nil }
func (*fakeDB) Close(context.Context) error { fmt.Println("db: closed"); return nil }

type job struct {
	name string
	done chan error // buffered 1: the worker never blocks on it
}

func process(ctx context.Context, j job) error {
	fmt.Println("worker: ran", j.name)
	return ctx.Err()
}

// The common service shape: a database that starts first and closes last,
// a background worker, and an HTTP server that hands jobs to the worker.
// In a real main, lifecycle.Main(svc) replaces Start and Stop: it runs until
// SIGINT or SIGTERM and exits with the right status.
func Example() {
	svc := lifecycle.New(lifecycle.Config{
		Logger:          slog.New(slog.DiscardHandler),
		ShutdownTimeout: 10 * time.Second,
		DrainDelay:      0, // in Kubernetes, a few seconds so endpoints update
		OnPhase:         func(p lifecycle.Phase, _ time.Time) { fmt.Println("phase:", p) },
	})

	db := &fakeDB{}
	svc.Add("db", lifecycle.Hook{OnStart: db.Open, OnStop: db.Close})

	jobs := make(chan job)
	if err := svc.Go("worker", func(ctx context.Context) error {
		for {
			select {
			case <-ctx.Done(): // phase 3: stop taking jobs
				return nil
			case j := <-jobs:
				// The job in hand runs under WorkContext: it may finish
				// after phase 3, until the drain deadline cancels it.
				j.done <- process(svc.WorkContext(), j)
			}
		}
	}); err != nil {
		fmt.Println(err)
		return
	}

	mux := http.NewServeMux()
	mux.Handle("GET /readyz", svc.ReadyzHandler())
	mux.Handle("GET /healthz", svc.HealthzHandler())
	mux.HandleFunc("POST /jobs", func(w http.ResponseWriter, r *http.Request) {
		j := job{name: r.FormValue("name"), done: make(chan error, 1)}
		select {
		case jobs <- j:
		case <-r.Context().Done():
			http.Error(w, "shutting down", http.StatusServiceUnavailable)
			return
		}
		if err := <-j.done; err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		_, _ = io.WriteString(w, "done")
	})
	srv := svc.AddHTTPServer("http", &http.Server{Addr: "127.0.0.1:0", Handler: mux}, lifecycle.HTTPServerConfig{})

	if err := svc.Start(context.Background()); err != nil {
		fmt.Println(err)
		return
	}

	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.PostForm("http://"+srv.Addr().String()+"/jobs", url.Values{"name": {"resize photo 1"}})
	if err != nil {
		fmt.Println(err)
		return
	}
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	fmt.Println("POST /jobs:", resp.Status, string(body))

	fmt.Println("stopped:", svc.Stop())
	// Output:
	// db: open
	// worker: ran resize photo 1
	// POST /jobs: 200 OK done
	// phase: not-ready
	// phase: drain-delay
	// phase: quiesce
	// phase: drain
	// phase: stop
	// db: closed
	// phase: stopped
	// stopped: <nil>
}

// A task's error is fatal: it starts the shutdown and becomes Run's result,
// which ExitCode maps to a non-zero status.
func ExampleService_Go() {
	svc := lifecycle.New(lifecycle.Config{Logger: slog.New(slog.DiscardHandler), Signals: []os.Signal{}})
	svc.Add("db", lifecycle.Hook{OnStop: func(context.Context) error { fmt.Println("db: closed"); return nil }})
	_ = svc.Go("poller", func(ctx context.Context) error {
		return errors.New("queue unreachable")
	})

	err := svc.Run(context.Background())
	fmt.Println(err)
	fmt.Println("exit status:", lifecycle.ExitCode(err))
	// Output:
	// db: closed
	// lifecycle: task "poller": queue unreachable
	// exit status: 1
}

// A component whose Stop ignores its context does not hold the shutdown
// hostage: it is abandoned Margin after its deadline and named, with its
// stack, in a StopTimeoutError.
func ExampleStopTimeoutError() {
	release := make(chan struct{})
	defer close(release) // lets the abandoned goroutine end, for the leak check

	svc := lifecycle.New(lifecycle.Config{
		Logger:          slog.New(slog.DiscardHandler),
		ShutdownTimeout: 100 * time.Millisecond,
		Margin:          50 * time.Millisecond,
	})
	svc.Add("cache", lifecycle.Hook{OnStop: func(context.Context) error {
		<-release // ignores its context
		return nil
	}})
	if err := svc.Start(context.Background()); err != nil {
		fmt.Println(err)
		return
	}

	err := svc.Stop()
	var te *lifecycle.StopTimeoutError
	if errors.As(err, &te) {
		for _, s := range te.Stuck {
			fmt.Printf("not stopped: %s, stack included: %t\n", s, strings.HasPrefix(s.Stack, "goroutine "))
		}
	}
	fmt.Println("deadline exceeded:", errors.Is(err, context.DeadlineExceeded))
	// Output:
	// not stopped: stop "cache", stack included: true
	// deadline exceeded: true
}
