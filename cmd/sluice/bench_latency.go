package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/sluicehq/sluice/chaos"
	"github.com/sluicehq/sluice/jobs"
)

// latencySettings are the knobs of "sluice bench latency".
type latencySettings struct {
	rate        float64       // arrivals per second
	duration    time.Duration // length of the arrival schedule
	concurrency int           // queue concurrency
	enqueuers   int           // goroutines that enqueue
	queues      int           // queues the arrivals are spread over, round robin
	wait        time.Duration // bound on waiting for the last jobs to start
}

// latencyPayload is what each job carries: its arrival index and the wall
// clock just before its Enqueue call, in Unix ns. Warm-up jobs have I = -1.
type latencyPayload struct {
	I int64 `json:"i"`
	T int64 `json:"t"`
}

// runLatency is "sluice bench latency".
func runLatency(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("bench latency", flag.ContinueOnError)
	fs.SetOutput(stderr)
	db := benchDB{cmd: "latency"}
	db.flags(fs)
	var s latencySettings
	fs.Float64Var(&s.rate, "rate", 5000, "arrivals per second (single-job Enqueue calls)")
	fs.DurationVar(&s.duration, "duration", 10*time.Second, "length of the arrival schedule")
	fs.IntVar(&s.concurrency, "concurrency", 1000, "jobs run at once")
	fs.IntVar(&s.enqueuers, "enqueuers", 16, "goroutines sharing the arrival schedule")
	fs.IntVar(&s.queues, "queues", 1, "spread the arrivals round robin over this many queues (latency_0, latency_1, ...), all worked by the one worker")
	fs.DurationVar(&s.wait, "wait", 30*time.Second, "after the schedule, wait at most this long for every job to start")
	timeout := fs.Duration("timeout", 10*time.Minute, "give up after this long")
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile of the run to this file")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() != 0 {
		return benchExit(stderr, "latency", fmt.Errorf("%w: unexpected argument %q", errBenchUsage, fs.Arg(0)))
	}
	if !(s.rate > 0) || math.IsInf(s.rate, 0) || s.duration <= 0 || s.concurrency <= 0 || s.enqueuers <= 0 || s.queues <= 0 || s.wait <= 0 {
		return benchExit(stderr, "latency", fmt.Errorf("%w: --rate, --duration, --concurrency, --enqueuers, --queues and --wait must be positive", errBenchUsage))
	}
	if n := s.rate * s.duration.Seconds(); n < 1 || n > 100_000_000 {
		return benchExit(stderr, "latency", fmt.Errorf("%w: --rate × --duration must be 1..100,000,000 jobs", errBenchUsage))
	}
	if err := db.check(); err != nil {
		return benchExit(stderr, "latency", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	// One connection per enqueuer, and room for the worker's fetches,
	// completions, heartbeats and maintenance.
	store, cleanup, err := db.open(ctx, stderr, int32(min(s.enqueuers+8, 1000)))
	if err != nil {
		return benchExit(stderr, "latency", err)
	}
	if *cpuprofile != "" {
		stop, err := startCPUProfile(*cpuprofile)
		if err != nil {
			return benchExit(stderr, "latency", errors.Join(err, cleanup()))
		}
		defer stop()
	}
	err = latency(ctx, stdout, stderr, store, s)
	return benchExit(stderr, "latency", errors.Join(err, cleanup()))
}

// latency runs the benchmark on store: a worker, then the arrival
// schedule, then the wait for every enqueued job to start.
func latency(ctx context.Context, out, stderr io.Writer, store jobs.Store, s latencySettings) error {
	n := int64(math.Round(s.rate * s.duration.Seconds()))
	client := jobs.NewClient(store, jobs.ClientConfig{})
	queues := make([]string, s.queues)
	for k := range queues {
		queues[k] = "latency"
		if s.queues > 1 {
			queues[k] = "latency_" + strconv.Itoa(k)
		}
		capacity := int(n)/s.queues + s.enqueuers*3 + 1000
		if _, err := client.PutQueue(ctx, jobs.QueueConfig{Name: queues[k], Concurrency: s.concurrency, Capacity: capacity}); err != nil {
			return err
		}
	}

	// samples[i] is arrival i's enqueue-to-start latency in ns, written
	// once, by the first start of the job (0: not started yet).
	samples := make([]int64, n)
	var started, bad atomic.Int64
	reg := jobs.NewRegistry()
	reg.Handle("latency", jobs.HandlerFunc(func(_ context.Context, j *jobs.Job) error {
		now := time.Now().UnixNano()
		var p latencyPayload
		if err := json.Unmarshal(j.Payload, &p); err != nil || p.I >= n {
			bad.Add(1)
			return nil
		}
		if p.I < 0 {
			return nil // warm-up
		}
		if atomic.CompareAndSwapInt64(&samples[p.I], 0, max(now-p.T, 1)) {
			started.Add(1)
		}
		return nil
	}))
	w := jobs.NewWorker(store, reg, jobs.WorkerConfig{
		Queues: queues,
		Logger: slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err := w.Start(ctx); err != nil {
		return err
	}
	stopCtx, cancelStop := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancelStop()
	defer func() { _ = w.Stop(stopCtx) }() // on early returns; the normal path stops below

	enqueue := func(ctx context.Context, i int64) error {
		p := strconv.AppendInt(append(make([]byte, 0, 48), `{"i":`...), i, 10)
		p = append(p, `,"t":`...)
		p = strconv.AppendInt(p, time.Now().UnixNano(), 10)
		p = append(p, '}')
		_, err := client.Enqueue(ctx, jobs.NewJob{Kind: "latency", Queue: queues[(i+int64(s.queues))%int64(s.queues)], Payload: p})
		return err
	}
	fmt.Fprintf(stderr, "sluice bench latency: %d arrivals at %g/s over %v, %d enqueuers, %d queue(s) of concurrency %d\n",
		n, s.rate, s.duration, s.enqueuers, s.queues, s.concurrency)
	loop := chaos.OpenLoop{Rate: s.rate, N: n, Senders: s.enqueuers, Warmup: 3}
	a, err := loop.Run(ctx, enqueue)
	if err != nil {
		return err
	}

	// Wait, bounded, for every enqueued job to start. Polling is fine
	// here: it delays the report, not the jobs.
	waitUntil := time.Now().Add(s.wait)
	for started.Load() < a.Sent && time.Now().Before(waitUntil) && ctx.Err() == nil {
		time.Sleep(5 * time.Millisecond)
	}
	stopErr := w.Stop(stopCtx)

	return report(out, loop, n, s, a, samples, bad.Load(), stopErr)
}

// report prints the run's lines (chaos.OpenLoop.Report) and adds the
// checks of this benchmark: stray payloads and the worker's stop.
func report(out io.Writer, loop chaos.OpenLoop, n int64, s latencySettings, a chaos.LoadStats, samples []int64, bad int64, stopErr error) error {
	lat := make([]time.Duration, 0, len(samples))
	for _, v := range samples {
		if v != 0 {
			lat = append(lat, time.Duration(v))
		}
	}
	errs := []error{loop.Report(out, s.duration, a, lat, s.wait)}
	if bad > 0 {
		errs = append(errs, fmt.Errorf("%d jobs carried a payload that is not the benchmark's", bad))
	}
	if stopErr != nil {
		errs = append(errs, fmt.Errorf("stop worker: %w", stopErr))
	}
	return errors.Join(errs...)
}
