package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver"
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

// arrivalStats is what the generator saw.
type arrivalStats struct {
	due      int64         // arrivals in the schedule
	sent     int64         // Insert calls that succeeded
	late     int64         // arrivals sent more than lateAfter behind schedule
	missed   int64         // arrivals not sent: more than missAfter behind
	errs     int64         // Insert calls that failed
	maxLag   time.Duration // worst delay of a sent arrival behind its due time
	firstErr error
}

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
	a, err := arrivals(ctx, n, s, insert)
	if err != nil {
		return err
	}

	// Wait, bounded, for every inserted job to start. Polling delays the
	// report, not the jobs.
	waitUntil := time.Now().Add(s.wait)
	for started.Load() < a.sent && time.Now().Before(waitUntil) && ctx.Err() == nil {
		time.Sleep(5 * time.Millisecond)
	}
	stopErr := client.Stop(stopCtx)
	if stopErr != nil {
		stopErr = fmt.Errorf("stop: %w", stopErr)
	}
	return report(stdout, s, a, samples, bad.Load(), stopErr)
}

// arrivals runs the open-loop schedule: arrival i is due at start +
// i/rate, whatever happened to the others. s.enqueuers goroutines take
// arrivals in order, sleep until each is due and call insert(i); one that
// finds an arrival already past due sends it at once (late), or skips it
// (missed) when it is more than missAfter past due. Three warm-up inserts
// per goroutine (index -1) open and prime the connections first.
func arrivals(ctx context.Context, n int64, s settings, insert func(context.Context, int64) error) (arrivalStats, error) {
	var warm sync.WaitGroup
	warmErrs := make([]error, s.enqueuers)
	for g := range s.enqueuers {
		warm.Go(func() {
			for range 3 {
				if err := insert(ctx, -1); err != nil {
					warmErrs[g] = err
					return
				}
			}
		})
	}
	warm.Wait()
	if err := errors.Join(warmErrs...); err != nil {
		return arrivalStats{}, fmt.Errorf("warm-up: %w", err)
	}

	var (
		next                 atomic.Int64
		sent, late, miss, ne atomic.Int64
		mu                   sync.Mutex
		maxLag               time.Duration // guarded by mu
		firstErr             error         // guarded by mu
		wg                   sync.WaitGroup
	)
	start := time.Now().Add(20 * time.Millisecond)
	for range s.enqueuers {
		wg.Go(func() {
			var timer *time.Timer
			for ctx.Err() == nil {
				i := next.Add(1) - 1
				if i >= n {
					return
				}
				due := start.Add(time.Duration(float64(i) * float64(time.Second) / s.rate))
				if d := time.Until(due); d > 0 {
					if timer == nil {
						timer = time.NewTimer(d)
					} else {
						timer.Reset(d)
					}
					select {
					case <-timer.C:
					case <-ctx.Done():
						return
					}
				}
				lag := time.Since(due)
				if lag > missAfter {
					miss.Add(1)
					continue
				}
				if lag > lateAfter {
					late.Add(1)
				}
				if err := insert(ctx, i); err != nil {
					if ne.Add(1) == 1 {
						mu.Lock()
						firstErr = err
						mu.Unlock()
					}
					continue
				}
				sent.Add(1)
				mu.Lock()
				maxLag = max(maxLag, lag)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if ctx.Err() != nil {
		return arrivalStats{}, fmt.Errorf("arrivals: %w", context.Cause(ctx))
	}
	return arrivalStats{due: n, sent: sent.Load(), late: late.Load(), missed: miss.Load(), errs: ne.Load(),
		maxLag: maxLag, firstErr: firstErr}, nil
}

// report prints the arrival line and the latency line, and returns an
// error when jobs never started or carried a foreign index.
func report(out io.Writer, s settings, a arrivalStats, samples []int64, bad int64, stopErr error) error {
	lat := make([]time.Duration, 0, len(samples))
	for _, v := range samples {
		if v != 0 {
			lat = append(lat, time.Duration(v))
		}
	}
	slices.Sort(lat)
	achieved := float64(a.sent) / s.duration.Seconds()
	fmt.Fprintf(out, "arrivals: %d due at %g/s over %v: %d enqueued (%.0f/s achieved), %d late (>%v behind), %d missed (>%v behind), %d enqueue errors, max lag %v\n",
		a.due, s.rate, s.duration, a.sent, achieved, a.late, lateAfter, a.missed, missAfter, a.errs, a.maxLag.Round(time.Microsecond))
	if a.firstErr != nil {
		fmt.Fprintf(out, "first enqueue error: %v\n", a.firstErr)
	}
	if len(lat) > 0 {
		fmt.Fprintf(out, "latency: %d jobs at %.0f/s: p50 %v p90 %v p99 %v max %v\n", len(lat), achieved,
			fmtLatency(percentile(lat, 50)), fmtLatency(percentile(lat, 90)), fmtLatency(percentile(lat, 99)), fmtLatency(lat[len(lat)-1]))
	}
	var errs []error
	if int64(len(lat)) < a.sent {
		errs = append(errs, fmt.Errorf("%d of %d inserted jobs had not started after --wait %v", a.sent-int64(len(lat)), a.sent, s.wait))
	}
	if bad > 0 {
		errs = append(errs, fmt.Errorf("%d jobs carried an arrival index outside the schedule", bad))
	}
	if a.sent == 0 {
		errs = append(errs, errors.New("no job was inserted"))
	}
	if stopErr != nil {
		errs = append(errs, stopErr)
	}
	return errors.Join(errs...)
}

// percentile returns the p-th percentile of sorted (non-empty) by the
// nearest-rank method: the smallest sample that at least p% of the samples
// do not exceed.
func percentile(sorted []time.Duration, p float64) time.Duration {
	k := int(math.Ceil(p / 100 * float64(len(sorted))))
	return sorted[min(max(k, 1), len(sorted))-1]
}

// fmtLatency rounds a latency for printing: to 1 µs below 10 ms, to
// 10 µs above.
func fmtLatency(d time.Duration) time.Duration {
	if d < 10*time.Millisecond {
		return d.Round(time.Microsecond)
	}
	return d.Round(10 * time.Microsecond)
}
