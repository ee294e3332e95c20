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
// for all 256 workers. The subjects are three of BenchmarkPeers': "sluice"
// with a queue that holds the workload, "sluice-q4096" with one that
// makes the 1,000 submitters wait and refill it, and pond.
//
// Metrics, per iteration, from the task start times: cycles (runs of
// starts with no gap over 300 µs), period-µs (mean time from one full
// cycle's first start to the next one's, over consecutive full cycles),
// burst-µs (median time from a full cycle's first start to its last),
// wide-bursts (full cycles whose burst is over twice the median: refills,
// GC, a noisy host), submit-ms (time until every submitter has returned)
// and, for the sluice subjects, waits (submissions that blocked on the
// full queue, Stats.Waited). The analysis runs after the timed loop, so
// ns/op is the workload's alone.
func BenchmarkCycles(b *testing.B) {
	for _, sub := range []struct {
		name string
		s    subject
	}{
		{"sluice", new(sluiceGoSubject)},
		{"sluice-q4096", &sluiceGoSubject{sluiceSubject{queue: smallQueueSize}}},
		{"pond", new(pondSubject)},
	} {
		b.Run(sub.name, func(b *testing.B) {
			const users, perUser, limit = 1_000, 20, 256
			var runs []stampedRun
			for b.Loop() {
				runs = append(runs, runStamped(b, sub.s, users, perUser, limit))
			}
			var cycles, period, burst, wide, submit, waits float64
			for _, r := range runs {
				c := cyclesOf(r.starts, limit)
				cycles += float64(c.n)
				period += c.period
				burst += c.burst
				wide += float64(c.wide)
				submit += float64(r.submitted.Microseconds()) / 1e3
				waits += float64(r.waits)
			}
			n := float64(len(runs))
			b.ReportMetric(cycles/n, "cycles")
			b.ReportMetric(period/n, "period-µs")
			b.ReportMetric(burst/n, "burst-µs")
			b.ReportMetric(wide/n, "wide-bursts")
			b.ReportMetric(submit/n, "submit-ms")
			if _, ok := sub.s.(*sluiceGoSubject); ok {
				b.ReportMetric(waits/n, "waits")
			}
		})
	}
}

// stampedRun is one iteration's task start times (since the iteration
// began), when the last submitter returned, and for sluice how many
// submissions blocked on the full queue.
type stampedRun struct {
	starts    []time.Duration
	submitted time.Duration
	waits     uint64
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

// runStamped runs one iteration of a workload of stamped io tasks on s
// (see runIteration).
func runStamped(b *testing.B, s subject, users, perUser, limit int) stampedRun {
	if total := users * perUser; len(stamps) != total {
		stamps = make([]time.Duration, total)
	}
	stampNext.Store(0)
	var out stampedRun
	stampBase = time.Now()
	runIteration(b, s, users, perUser, limit, stampTasks, func() {
		out.submitted = time.Since(stampBase)
		if sg, ok := s.(*sluiceGoSubject); ok {
			out.waits = sg.p.Stats().Waited
		}
	})
	out.starts = slices.Clone(stamps)
	return out
}

// cycleStats summarizes the cycles of one iteration's start times.
type cycleStats struct {
	n      int     // cycles
	period float64 // µs, mean over consecutive full cycles
	burst  float64 // µs, median over full cycles
	wide   int     // full cycles with a burst over twice the median
}

// cyclesOf splits task start times into cycles at gaps over 300 µs. A
// full cycle is one with at least 3/4 of limit starts. The period is the
// mean gap between consecutive cycles that are both full, leaving out
// gaps over 1.5 times their median: a cycle split into parts too small to
// count leaves no gap, and two bursts merged into one (a burst as long as
// a cycle) leave one gap that spans two periods.
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
	isFull := func(c cycle) bool { return c.n >= limit*3/4 }
	out := cycleStats{n: len(cs)}
	var widths, gaps []time.Duration
	for i, c := range cs {
		if !isFull(c) {
			continue
		}
		widths = append(widths, c.last-c.first)
		if i > 0 && isFull(cs[i-1]) {
			gaps = append(gaps, c.first-cs[i-1].first)
		}
	}
	if len(gaps) > 0 {
		limit := median(gaps) * 3 / 2
		var sum time.Duration
		n := 0
		for _, g := range gaps {
			if g <= limit {
				sum += g
				n++
			}
		}
		out.period = float64(sum.Microseconds()) / float64(n)
	}
	if len(widths) == 0 {
		return out
	}
	med := median(widths)
	out.burst = float64(med.Microseconds())
	for _, w := range widths {
		if w > 2*med {
			out.wide++
		}
	}
	return out
}

// median returns the median of v (the mean of the middle two for an even
// count), sorting v.
func median(v []time.Duration) time.Duration {
	slices.Sort(v)
	m := v[len(v)/2]
	if len(v)%2 == 0 {
		m = (v[len(v)/2-1] + m) / 2
	}
	return m
}

// TestCyclesOf checks the cycle split on made-up start times.
func TestCyclesOf(t *testing.T) {
	us := func(v int) time.Duration { return time.Duration(v) * time.Microsecond }
	// cycle returns n starts from base, step µs apart.
	cycle := func(base, n, step int) []time.Duration {
		var out []time.Duration
		for i := range n {
			out = append(out, us(base+i*step))
		}
		return out
	}
	cat := func(parts ...[]time.Duration) []time.Duration { return slices.Concat(parts...) }
	for _, tc := range []struct {
		name   string
		starts []time.Duration
		want   cycleStats
	}{{
		// Full cycles 1,250 µs apart with bursts of 30, 30 and 90 µs, a
		// straggler 500 µs after the second, and one start at the end.
		name:   "stragglers",
		starts: cat(cycle(0, 4, 10), cycle(1250, 4, 10), []time.Duration{us(1750)}, cycle(2500, 4, 30), []time.Duration{us(4000)}),
		want:   cycleStats{n: 5, period: 1250, burst: 30, wide: 1},
	}, {
		// The cycle at 2,500 µs is split into two parts too small to be
		// full: no gap spans it, so the period stays 1,250 µs. The median
		// of the four full bursts (9, 18, 30 and 39 µs) is the mean of the
		// middle two.
		name:   "split cycle, even count",
		starts: cat(cycle(0, 4, 3), cycle(1250, 4, 6), cycle(2500, 2, 10), cycle(2900, 2, 10), cycle(3750, 4, 10), cycle(5000, 4, 13)),
		want:   cycleStats{n: 6, period: 1250, burst: 24, wide: 0},
	}, {
		// The bursts at 2,500 and 3,750 µs run into each other (a burst
		// 1,250 µs long): one full cycle whose gap to the next spans two
		// periods, left out of the mean.
		name:   "merged bursts",
		starts: cat(cycle(0, 4, 10), cycle(1250, 4, 10), cycle(2500, 6, 250), cycle(5000, 4, 10), cycle(6250, 4, 10)),
		want:   cycleStats{n: 5, period: 1250, burst: 30, wide: 1},
	}, {
		name:   "unsorted input",
		starts: cat(cycle(1250, 4, 10), cycle(0, 4, 10)),
		want:   cycleStats{n: 2, period: 1250, burst: 30, wide: 0},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			if got := cyclesOf(tc.starts, 4); got != tc.want {
				t.Fatalf("cyclesOf = %+v, want %+v", got, tc.want)
			}
		})
	}
}
