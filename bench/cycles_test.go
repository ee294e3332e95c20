package bench

import (
	"context"
	"slices"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkCycles explains the io1ms workloads' ns/task. Each task records
// when it starts, then sleeps 1 ms like ioWork. The 256 workers of
// io1ms/1ku-20t then move in cycles: the runtime's timers wake the
// sleeping workers together, they all start their next task within a
// short burst, and the process idles until the timers fire again. The
// cycle is longer than 1 ms because the runtime's netpoller sleeps in
// whole milliseconds (epoll's timeout) and because every worker's turn in
// the burst adds to it. A pool's ns/task on these workloads therefore
// follows the length of its bursts, and whatever else runs inside them,
// such as submitters woken to refill a bounded queue, lengthens the cycle
// for all 256 workers.
//
// Metrics, per iteration, from the task start times: cycles (runs of
// starts with no gap over 300 µs), period-µs (mean time from one full
// cycle's first start to the next one's), burst-µs (median time from a
// full cycle's first start to its last), wide-bursts (full cycles whose
// burst is over twice the median: refills, GC, a noisy host) and
// submit-ms (time until every submitter has returned).
func BenchmarkCycles(b *testing.B) {
	for _, sub := range []struct {
		name string
		s    subject
	}{{"sluice", new(sluiceGoSubject)}, {"pond", new(pondSubject)}} {
		b.Run(sub.name, func(b *testing.B) {
			const users, perUser, limit = 1_000, 20, 256
			var cycles, period, burst, wide, submit float64
			for b.Loop() {
				st := runStamped(b, sub.s, users, perUser, limit)
				c := cyclesOf(st.starts, limit)
				cycles += float64(c.n)
				period += c.period
				burst += c.burst
				wide += float64(c.wide)
				submit += float64(st.submitted.Microseconds()) / 1e3
			}
			n := float64(b.N)
			b.ReportMetric(cycles/n, "cycles")
			b.ReportMetric(period/n, "period-µs")
			b.ReportMetric(burst/n, "burst-µs")
			b.ReportMetric(wide/n, "wide-bursts")
			b.ReportMetric(submit/n, "submit-ms")
		})
	}
}

// stampedRun is one iteration's task start times (since the iteration
// began) and when the last submitter returned.
type stampedRun struct {
	starts    []time.Duration
	submitted time.Duration
}

var (
	stampBase time.Time
	stamps    []time.Duration
	stampNext atomic.Int64
)

func stampWork() {
	stamps[stampNext.Add(1)-1] = time.Since(stampBase)
	ioWork()
}

func stampPlain()                    { stampWork() }
func stampErr() error                { stampWork(); return nil }
func stampCtx(context.Context) error { stampWork(); return nil }
func stampDone()                     { stampWork(); taskWG.Done() }

var stampTasks = taskSet{stampPlain, stampErr, stampCtx, stampDone}

// runStamped runs one iteration of a workload of stamped io tasks on s,
// like runPeer.
func runStamped(b *testing.B, s subject, users, perUser, limit int) stampedRun {
	total := users * perUser
	if len(stamps) != total {
		stamps = make([]time.Duration, total)
	}
	ran.Store(0)
	stampNext.Store(0)
	submitErr.Store(nil)
	curSubject, curPerUser = s, perUser
	stampBase = time.Now()
	s.start(limit, stampTasks)
	submitters.Add(users)
	for range users {
		go submitLoop()
	}
	submitters.Wait()
	submitted := time.Since(stampBase)
	stopErr := s.stop()
	if p := submitErr.Load(); p != nil {
		b.Fatalf("submit: %v", *p)
	}
	if stopErr != nil {
		b.Fatalf("stop: %v", stopErr)
	}
	if got := ran.Load(); got != int64(total) {
		b.Fatalf("%d tasks ran, want %d", got, total)
	}
	return stampedRun{starts: slices.Clone(stamps), submitted: submitted}
}

// cycleStats summarizes the cycles of one iteration's start times.
type cycleStats struct {
	n      int     // cycles
	period float64 // µs, mean over full cycles
	burst  float64 // µs, median over full cycles
	wide   int     // full cycles with a burst over twice the median
}

// cyclesOf splits sorted task start times into cycles at gaps over
// 300 µs. A full cycle is one with at least 3/4 of limit starts; the
// first and last full cycles bound the mean period.
func cyclesOf(starts []time.Duration, limit int) cycleStats {
	slices.Sort(starts)
	type cycle struct {
		first, last time.Duration
		n           int
	}
	var cs []cycle
	for _, t := range starts {
		if len(cs) == 0 || t-cs[len(cs)-1].last > 300*time.Microsecond {
			cs = append(cs, cycle{first: t, last: t})
		}
		c := &cs[len(cs)-1]
		c.last = t
		c.n++
	}
	var full []cycle
	for _, c := range cs {
		if c.n >= limit*3/4 {
			full = append(full, c)
		}
	}
	out := cycleStats{n: len(cs)}
	if len(full) < 2 {
		return out
	}
	out.period = float64((full[len(full)-1].first - full[0].first).Microseconds()) / float64(len(full)-1)
	widths := make([]time.Duration, len(full))
	for i, c := range full {
		widths[i] = c.last - c.first
	}
	slices.Sort(widths)
	med := widths[len(widths)/2]
	out.burst = float64(med.Microseconds())
	for _, w := range widths {
		if w > 2*med {
			out.wide++
		}
	}
	return out
}

// TestCyclesOf checks the cycle split on made-up start times.
func TestCyclesOf(t *testing.T) {
	us := func(v int) time.Duration { return time.Duration(v) * time.Microsecond }
	var starts []time.Duration
	// Three full cycles of 4 starts 1,250 µs apart with bursts of 30, 30
	// and 90 µs, a straggler 500 µs after the second, and one start at the
	// end.
	for _, base := range []int{0, 1250, 2500} {
		step := 10
		if base == 2500 {
			step = 30
		}
		for i := range 4 {
			starts = append(starts, us(base+i*step))
		}
	}
	starts = append(starts, us(1750), us(4000))
	c := cyclesOf(starts, 4)
	want := cycleStats{n: 5, period: 1250, burst: 30, wide: 1}
	if c != want {
		t.Fatalf("cyclesOf = %+v, want %+v", c, want)
	}
}
