package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/pprof"
	"strings"
	"sync/atomic"
	"time"

	"github.com/sluicehq/sluice/jobs"
	"github.com/sluicehq/sluice/jobs/sqlitestore"
)

const benchUsage = `Usage:
  sluice bench burn --db sqlite:<file> [--jobs N] [--concurrency C] [--fetch-batch B]

burn inserts N no-op jobs (printing the insert rate), then starts a worker
and times from its start until the last job is recorded complete. It ends
with one line: burn: <N> jobs in <S>s: <X> jobs/s
`

// runBench dispatches "sluice bench ...".
func runBench(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "burn" {
		fmt.Fprint(stderr, benchUsage)
		return 2
	}
	fs := flag.NewFlagSet("bench burn", flag.ContinueOnError)
	fs.SetOutput(stderr)
	db := fs.String("db", "", "database: sqlite:<file> (the file is created; an existing one is refused)")
	n := fs.Int("jobs", 200_000, "number of no-op jobs")
	conc := fs.Int("concurrency", 1000, "jobs run at once")
	fetch := fs.Int("fetch-batch", 500, "jobs claimed per fetch")
	insertBatch := fs.Int("insert-batch", 5000, "jobs per enqueue transaction")
	timeout := fs.Duration("timeout", 20*time.Minute, "give up after this long")
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile of the burn phase to this file")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	if *n <= 0 || *conc <= 0 || *fetch <= 0 || *insertBatch <= 0 {
		fmt.Fprintln(stderr, "sluice bench burn: --jobs, --concurrency, --fetch-batch and --insert-batch must be positive")
		return 2
	}
	path, ok := strings.CutPrefix(*db, "sqlite:")
	if !ok || path == "" {
		fmt.Fprintln(stderr, "sluice bench burn: --db must be sqlite:<file> (PostgreSQL is not supported yet)")
		return 2
	}
	if _, err := os.Stat(path); err == nil {
		fmt.Fprintf(stderr, "sluice bench burn: %s exists; burn needs a fresh file\n", path)
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	if err := burn(ctx, stdout, path, *n, *conc, *fetch, *insertBatch, *cpuprofile); err != nil {
		fmt.Fprintln(stderr, "sluice bench burn:", err)
		return 1
	}
	return 0
}

func burn(ctx context.Context, out io.Writer, path string, n, conc, fetchBatch, insertBatch int, cpuprofile string) error {
	store, err := sqlitestore.Open(ctx, path, sqlitestore.Config{})
	if err != nil {
		return err
	}
	defer store.Close()
	client := jobs.NewClient(store, jobs.ClientConfig{})
	const queue = "burn"
	if _, err := client.PutQueue(ctx, jobs.QueueConfig{Name: queue, Concurrency: conc, Capacity: n}); err != nil {
		return err
	}

	start := time.Now()
	batch := make([]jobs.NewJob, 0, insertBatch)
	for i := 0; i < n; i += len(batch) {
		batch = batch[:0]
		for j := i; j < n && len(batch) < insertBatch; j++ {
			batch = append(batch, jobs.NewJob{Kind: "noop"})
		}
		if _, err := client.EnqueueMany(ctx, queue, batch); err != nil {
			return fmt.Errorf("insert: %w", err)
		}
	}
	el := time.Since(start)
	fmt.Fprintf(out, "insert: %d jobs in %.2fs: %.0f jobs/s\n", n, el.Seconds(), float64(n)/el.Seconds())

	var done atomic.Int64
	finished := make(chan struct{})
	reg := jobs.NewRegistry()
	reg.Handle("noop", jobs.HandlerFunc(func(context.Context, *jobs.Job) error { return nil }))
	w := jobs.NewWorker(store, reg, jobs.WorkerConfig{
		Queues:     []string{queue},
		FetchBatch: fetchBatch,
		Logger:     slog.New(slog.DiscardHandler),
		OnRecorded: func(os []jobs.Outcome, applied []bool) {
			var k int64
			for i, o := range os {
				if applied[i] && o.Kind == jobs.Succeeded {
					k++
				}
			}
			if done.Add(k) == int64(n) {
				close(finished)
			}
		},
	})
	if cpuprofile != "" {
		f, err := os.Create(cpuprofile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	start = time.Now()
	if err := w.Start(ctx); err != nil {
		return err
	}
	select {
	case <-finished:
	case <-ctx.Done():
	}
	el = time.Since(start)
	stopCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stopErr := w.Stop(stopCtx)
	if got := done.Load(); got != int64(n) {
		return fmt.Errorf("only %d of %d jobs completed before %v", got, n, context.Cause(ctx))
	}
	st, err := store.QueueStats(ctx, queue, time.Time{})
	if err != nil {
		return err
	}
	if st.Waiting != 0 || st.Running != 0 || st.Finished != n {
		return fmt.Errorf("store disagrees: %+v, want %d finished", st, n)
	}
	fmt.Fprintf(out, "burn: %d jobs in %.2fs: %.0f jobs/s\n", n, el.Seconds(), float64(n)/el.Seconds())
	return errors.Join(stopErr)
}
