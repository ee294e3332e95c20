package chaos

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// OpenLoop is an open-loop load generator: arrival i is due at start +
// i/Rate whatever happened to the others, so a slow system under test
// cannot slow the arrivals down (a closed loop would hide its latency).
// Senders goroutines take arrivals in order, sleep until each is due and
// call send(i); one that finds an arrival already past due sends it at
// once (late), or skips it (missed) when it is more than MissAfter past
// due, so that a run ends on time. Used by `sluice bench latency` and by
// bench/river's latency mode, so that both measure the same way.
type OpenLoop struct {
	Rate    float64 // arrivals per second; required
	N       int64   // arrivals in the schedule; required
	Senders int     // goroutines calling send; zero means 1
	// Warmup is how many calls with index -1 each sender makes before the
	// schedule starts (to open and prime connections). Zero means none.
	Warmup int
	// LateAfter and MissAfter: zero means 1ms and 1s.
	LateAfter, MissAfter time.Duration
}

// LoadStats is what an OpenLoop run did.
type LoadStats struct {
	Due      int64         // arrivals in the schedule
	Sent     int64         // send calls that succeeded
	Late     int64         // arrivals sent more than LateAfter behind schedule
	Missed   int64         // arrivals not sent: more than MissAfter behind
	Errs     int64         // send calls that failed
	MaxLag   time.Duration // worst delay of a sent arrival behind its due time
	FirstErr error         // the first send error
}

// Run runs the schedule and returns when every arrival was sent, missed or
// failed, or with ctx's cause when ctx ends first. A failed warm-up call
// ends the run with its error.
func (l OpenLoop) Run(ctx context.Context, send func(ctx context.Context, i int64) error) (LoadStats, error) {
	if l.Rate <= 0 || l.N < 0 {
		return LoadStats{}, fmt.Errorf("chaos: open loop: rate %v, n %d", l.Rate, l.N)
	}
	senders := max(l.Senders, 1)
	lateAfter, missAfter := l.bounds()
	var warm sync.WaitGroup
	warmErrs := make([]error, senders)
	for g := range senders {
		warm.Go(func() {
			for range l.Warmup {
				if err := send(ctx, -1); err != nil {
					warmErrs[g] = err
					return
				}
			}
		})
	}
	warm.Wait()
	if err := errors.Join(warmErrs...); err != nil {
		return LoadStats{}, fmt.Errorf("chaos: open loop warm-up: %w", err)
	}

	var (
		next                     atomic.Int64
		sent, late, missed, nerr atomic.Int64
		mu                       sync.Mutex
		maxLag                   time.Duration // guarded by mu
		firstErr                 error         // guarded by mu
		wg                       sync.WaitGroup
	)
	start := time.Now().Add(20 * time.Millisecond)
	for range senders {
		wg.Go(func() {
			var timer *time.Timer
			for ctx.Err() == nil {
				i := next.Add(1) - 1
				if i >= l.N {
					return
				}
				due := start.Add(time.Duration(float64(i) * float64(time.Second) / l.Rate))
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
					missed.Add(1)
					continue
				}
				if lag > lateAfter {
					late.Add(1)
				}
				if err := send(ctx, i); err != nil {
					if nerr.Add(1) == 1 {
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
		return LoadStats{}, fmt.Errorf("chaos: open loop: %w", context.Cause(ctx))
	}
	return LoadStats{Due: l.N, Sent: sent.Load(), Late: late.Load(), Missed: missed.Load(), Errs: nerr.Load(),
		MaxLag: maxLag, FirstErr: firstErr}, nil
}

// bounds returns LateAfter and MissAfter with their defaults.
func (l OpenLoop) bounds() (lateAfter, missAfter time.Duration) {
	lateAfter, missAfter = l.LateAfter, l.MissAfter
	if lateAfter <= 0 {
		lateAfter = time.Millisecond
	}
	if missAfter <= 0 {
		missAfter = time.Second
	}
	return lateAfter, missAfter
}

// Report prints a run's two lines to out: the arrivals it made over the
// schedule's length, and the percentiles of latencies (one per job that
// started; waited is how long the caller waited for them). It returns an
// error when nothing was sent or some sent jobs never started. Both
// latency benchmarks print through it, so their lines compare.
func (l OpenLoop) Report(out io.Writer, over time.Duration, st LoadStats, latencies []time.Duration, waited time.Duration) error {
	lateAfter, missAfter := l.bounds()
	sum := Summarize(latencies)
	achieved := float64(st.Sent) / over.Seconds()
	fmt.Fprintf(out, "arrivals: %d due at %g/s over %v: %d enqueued (%.0f/s achieved), %d late (>%v behind), %d missed (>%v behind), %d enqueue errors, max lag %v\n",
		st.Due, l.Rate, over, st.Sent, achieved, st.Late, lateAfter, st.Missed, missAfter, st.Errs, st.MaxLag.Round(time.Microsecond))
	if st.FirstErr != nil {
		fmt.Fprintf(out, "first enqueue error: %v\n", st.FirstErr)
	}
	if sum.N > 0 {
		fmt.Fprintf(out, "latency: %d jobs at %.0f/s: p50 %v p90 %v p99 %v max %v\n", sum.N, achieved,
			roundLatency(sum.P50), roundLatency(sum.P90), roundLatency(sum.P99), roundLatency(sum.Max))
	}
	var errs []error
	if int64(sum.N) < st.Sent {
		errs = append(errs, fmt.Errorf("%d of %d sent jobs had not started after %v", st.Sent-int64(sum.N), st.Sent, waited))
	}
	if st.Sent == 0 {
		errs = append(errs, errors.New("no job was sent"))
	}
	return errors.Join(errs...)
}

// roundLatency keeps three or four significant digits for printing.
func roundLatency(d time.Duration) time.Duration {
	if d < 10*time.Millisecond {
		return d.Round(time.Microsecond)
	}
	return d.Round(10 * time.Microsecond)
}

// Latencies summarizes latency samples with exact percentiles (nearest
// rank over the sorted samples).
type Latencies struct {
	N                  int
	P50, P90, P99, Max time.Duration
}

// Summarize sorts a copy of samples and returns their percentiles.
func Summarize(samples []time.Duration) Latencies {
	s := slices.Clone(samples)
	slices.Sort(s)
	if len(s) == 0 {
		return Latencies{}
	}
	at := func(p float64) time.Duration {
		k := int(math.Ceil(p / 100 * float64(len(s))))
		return s[min(max(k, 1), len(s))-1]
	}
	return Latencies{N: len(s), P50: at(50), P90: at(90), P99: at(99), Max: s[len(s)-1]}
}
