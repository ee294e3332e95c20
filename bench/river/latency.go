package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"sync/atomic"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver"

	"github.com/sluicehq/sluice/chaos"
)

// latencyArgs are the latency mode's job arguments: the arrival index
// (-1 for warm-up jobs) and the wall clock just before the Insert call, in
// Unix ns.
type latencyArgs struct {
	I int64 `json:"i"`
	T int64 `json:"t"`
}

// Kind implements river.JobArgs.
func (latencyArgs) Kind() string { return "latency" }

// latency starts a client whose worker records each job's
// enqueue-to-start latency, runs the arrival schedule with one Insert per
// arrival, waits for the jobs to start and reports.
func latency[TTx any](ctx context.Context, stdout, stderr io.Writer, driver riverdriver.Driver[TTx], logger *slog.Logger, s settings) error {
	n := int64(math.Round(s.rate * s.duration.Seconds()))
	// samples[i] is arrival i's latency in ns, written once, by the first
	// start of the job (0: not started yet).
	samples := make([]int64, n)
	var started, bad atomic.Int64
	workers := river.NewWorkers()
	river.AddWorker(workers, river.WorkFunc(func(_ context.Context, j *river.Job[latencyArgs]) error {
		now := time.Now().UnixNano()
		switch i := j.Args.I; {
		case i >= n:
			bad.Add(1)
		case i >= 0:
			if atomic.CompareAndSwapInt64(&samples[i], 0, max(now-j.Args.T, 1)) {
				started.Add(1)
			}
		}
		return nil
	}))
	client, err := river.NewClient(driver, &river.Config{
		FetchCooldown:     s.fetchCooldown,
		FetchPollInterval: s.fetchPollInterval,
		Logger:            logger,
		Queues:            map[string]river.QueueConfig{river.QueueDefault: {MaxWorkers: s.maxWorkers}},
		Workers:           workers,
	})
	if err != nil {
		return fmt.Errorf("new client: %w", err)
	}
	fmt.Fprintf(stderr, "river: latency: %d arrivals at %g/s over %v, %d enqueuers, MaxWorkers %d, FetchCooldown %v, FetchPollInterval %v\n",
		n, s.rate, s.duration, s.enqueuers, s.maxWorkers, s.fetchCooldown, s.fetchPollInterval)
	if err := client.Start(ctx); err != nil {
		return fmt.Errorf("start: %w", err)
	}
	stopCtx, cancelStop := context.WithTimeout(context.WithoutCancel(ctx), stopTimeout)
	defer cancelStop()
	defer func() { _ = client.Stop(stopCtx) }() // on early returns; the normal path stops below

	insert := func(ctx context.Context, i int64) error {
		_, err := client.Insert(ctx, latencyArgs{I: i, T: time.Now().UnixNano()}, nil)
		return err
	}
	loop := chaos.OpenLoop{Rate: s.rate, N: n, Senders: s.enqueuers, Warmup: 3}
	a, err := loop.Run(ctx, insert)
	if err != nil {
		return err
	}

	// Wait, bounded, for every inserted job to start. Polling delays the
	// report, not the jobs.
	waitUntil := time.Now().Add(s.wait)
	for started.Load() < a.Sent && time.Now().Before(waitUntil) && ctx.Err() == nil {
		time.Sleep(5 * time.Millisecond)
	}
	stopErr := client.Stop(stopCtx)
	if stopErr != nil {
		stopErr = fmt.Errorf("stop: %w", stopErr)
	}
	return report(stdout, loop, s, a, samples, bad.Load(), stopErr)
}

// report prints the run's lines (chaos.OpenLoop.Report) and adds the
// checks of this benchmark: stray payloads and the worker's stop.
func report(out io.Writer, loop chaos.OpenLoop, s settings, a chaos.LoadStats, samples []int64, bad int64, stopErr error) error {
	lat := make([]time.Duration, 0, len(samples))
	for _, v := range samples {
		if v != 0 {
			lat = append(lat, time.Duration(v))
		}
	}
	errs := []error{loop.Report(out, s.duration, a, lat, s.wait)}
	if bad > 0 {
		errs = append(errs, fmt.Errorf("%d jobs carried an arrival index outside the schedule", bad))
	}
	if stopErr != nil {
		errs = append(errs, stopErr)
	}
	return errors.Join(errs...)
}
