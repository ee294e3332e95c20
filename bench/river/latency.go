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

// Schedule tolerances, as in "sluice bench latency": an arrival whose
// Insert call starts more than lateAfter after its due time is late; one
// that would start more than missAfter after it is not sent (missed).
const (
	lateAfter = time.Millisecond
	missAfter = time.Second
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
	a, err := chaos.OpenLoop{Rate: s.rate, N: n, Senders: s.enqueuers, Warmup: 3, LateAfter: lateAfter, MissAfter: missAfter}.Run(ctx, insert)
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
	return report(stdout, s, a, samples, bad.Load(), stopErr)
}

// report prints the arrival line and the latency line, and returns an
// error when jobs never started or carried a foreign index.
func report(out io.Writer, s settings, a chaos.LoadStats, samples []int64, bad int64, stopErr error) error {
	lat := make([]time.Duration, 0, len(samples))
	for _, v := range samples {
		if v != 0 {
			lat = append(lat, time.Duration(v))
		}
	}
	sum := chaos.Summarize(lat)
	achieved := float64(a.Sent) / s.duration.Seconds()
	fmt.Fprintf(out, "arrivals: %d due at %g/s over %v: %d enqueued (%.0f/s achieved), %d late (>%v behind), %d missed (>%v behind), %d enqueue errors, max lag %v\n",
		a.Due, s.rate, s.duration, a.Sent, achieved, a.Late, lateAfter, a.Missed, missAfter, a.Errs, a.MaxLag.Round(time.Microsecond))
	if a.FirstErr != nil {
		fmt.Fprintf(out, "first enqueue error: %v\n", a.FirstErr)
	}
	if sum.N > 0 {
		fmt.Fprintf(out, "latency: %d jobs at %.0f/s: p50 %v p90 %v p99 %v max %v\n", sum.N, achieved,
			fmtLatency(sum.P50), fmtLatency(sum.P90), fmtLatency(sum.P99), fmtLatency(sum.Max))
	}
	var errs []error
	if int64(len(lat)) < a.Sent {
		errs = append(errs, fmt.Errorf("%d of %d inserted jobs had not started after --wait %v", a.Sent-int64(len(lat)), a.Sent, s.wait))
	}
	if bad > 0 {
		errs = append(errs, fmt.Errorf("%d jobs carried an arrival index outside the schedule", bad))
	}
	if a.Sent == 0 {
		errs = append(errs, errors.New("no job was inserted"))
	}
	if stopErr != nil {
		errs = append(errs, stopErr)
	}
	return errors.Join(errs...)
}

// fmtLatency rounds a latency for printing: to 1 µs below 10 ms, to
// 10 µs above.
func fmtLatency(d time.Duration) time.Duration {
	if d < 10*time.Millisecond {
		return d.Round(time.Microsecond)
	}
	return d.Round(10 * time.Microsecond)
}
