package admit

import "time"

// Windows over which the completion rate behind Retry-After is measured:
// a window closes once it is at least rateMinWindow long and has seen
// rateMinCount completions (so one more or less moves the figure by 5% at
// most), or once it is rateMaxWindow long. Closed windows are averaged
// with weight 1/2 for the newest, unless the window was long, in which
// case it replaces the average.
const (
	rateMinWindow = 250 * time.Millisecond
	rateMinCount  = 20
	rateMaxWindow = 5 * time.Second
)

// drainRate estimates how fast admitted requests finish. It is updated
// lazily, when a refusal or Stats asks for it, so the admitted path pays
// nothing for it beyond a counter.
type drainRate struct {
	start  time.Time // start of the open window
	base   uint64    // Limiter.completed at start
	perSec float64   // smoothed rate over closed windows; 0 if unknown
}

// rateLocked returns the completions per second of admitted requests, or
// 0 if none finished in the last rateMaxWindow.
func (l *Limiter) rateLocked(now time.Time) float64 {
	e := &l.rate
	el := now.Sub(e.start)
	n := l.completed - e.base
	if el >= rateMinWindow && (n >= rateMinCount || el >= rateMaxWindow) {
		inst := float64(n) / el.Seconds()
		if e.perSec == 0 || el >= rateMaxWindow {
			e.perSec = inst
		} else {
			e.perSec = (e.perSec + inst) / 2
		}
		e.start, e.base = now, l.completed
		return e.perSec
	}
	if e.perSec == 0 && n > 0 && el > 0 {
		return float64(n) / el.Seconds() // no closed window yet: the open one
	}
	return e.perSec
}

// retryAfterLocked estimates when a request of class c will likely find a
// slot: the completions needed (in-flight requests above c's limit, plus
// one, plus the waiters of c's class and above, who go first) divided by
// the recent completion rate, within [MinRetryAfter, MaxRetryAfter]. With
// no rate known it answers MinRetryAfter. A draining Limiter answers
// MinRetryAfter: the retry should go to another instance.
func (l *Limiter) retryAfterLocked(c Class, why Reason) time.Duration {
	if why == ReasonDraining {
		return MinRetryAfter
	}
	need := max(l.total-l.limits[c]+1, 1)
	for k := c; k < numClasses; k++ {
		need += l.queues[k].n
	}
	rate := l.rateLocked(time.Now())
	if rate <= 0 {
		return MinRetryAfter
	}
	d := time.Duration(float64(need) / rate * float64(time.Second))
	return min(max(d, MinRetryAfter), l.maxRetryAfter)
}

// Stats is a snapshot of a Limiter's state and counters. Counters only
// grow. Arrays are indexed by Class (and Reason).
type Stats struct {
	MaxInFlight int
	// Limits[c] is the in-flight count (all classes) below which class c
	// is admitted; Limits[ClassCritical] == MaxInFlight.
	Limits    [numClasses]int
	InFlight  [numClasses]int // admitted, not yet finished
	Queued    [numClasses]int // waiting for a slot
	QueueSize int             // the queue's bound; 0 when queueing is off
	Draining  bool            // Close was called

	Admitted  [numClasses]uint64 // requests admitted, queued first or not
	Completed uint64             // admitted requests that finished
	// Refused counts refusals per class and reason. Requests with a bad
	// priority header count as ClassDefault.
	Refused [numClasses][numReasons]uint64
	// CompletionRate is the recent completion rate of admitted requests,
	// per second, behind the Retry-After estimates; 0 if unknown.
	CompletionRate float64
}

// TotalInFlight returns the number of admitted requests in flight.
func (s Stats) TotalInFlight() int { return s.InFlight[0] + s.InFlight[1] + s.InFlight[2] }

// TotalQueued returns the number of waiting requests.
func (s Stats) TotalQueued() int { return s.Queued[0] + s.Queued[1] + s.Queued[2] }

// TotalRefused returns the number of refusals of class c, all reasons.
func (s Stats) TotalRefused(c Class) uint64 {
	var n uint64
	for _, v := range s.Refused[c] {
		n += v
	}
	return n
}

// Stats returns a snapshot. It takes the Limiter's lock briefly.
func (l *Limiter) Stats() Stats {
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	s := Stats{
		MaxInFlight:    l.maxInFlight,
		Limits:         l.limits,
		InFlight:       l.inFlight,
		QueueSize:      l.queueSize,
		Draining:       l.closed,
		Admitted:       l.admitted,
		Completed:      l.completed,
		Refused:        l.refused,
		CompletionRate: l.rateLocked(now),
	}
	for c := range numClasses {
		s.Queued[c] = l.queues[c].n
	}
	return s
}
