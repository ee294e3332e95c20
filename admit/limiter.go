package admit

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"sync"
	"time"
)

// Defaults of the Config fields.
const (
	DefaultMaxInFlight    = 256
	DefaultSheddableShare = 0.5
	DefaultDefaultShare   = 0.9
	DefaultPriorityHeader = "Sluice-Priority"
	DefaultDeadlineHeader = "Sluice-Deadline"
	DefaultMaxRetryAfter  = time.Minute
)

// MinRetryAfter is the floor of every Retry-After estimate: the header
// counts whole seconds, and zero would invite an immediate retry.
const MinRetryAfter = time.Second

// Config holds a Limiter's optional settings. The zero value works: 256
// slots; sheddable requests admitted while fewer than 128 are in flight,
// default ones while fewer than 230, critical ones up to 256; no queueing;
// classes from the Sluice-Priority header and deadlines from the
// Sluice-Deadline header.
type Config struct {
	// MaxInFlight bounds how many admitted requests are being served at
	// once, all classes together. Zero or negative means 256. It can be
	// changed at run time with SetMaxInFlight.
	MaxInFlight int

	// SheddableShare is the fraction of MaxInFlight that sheddable
	// requests may fill: a sheddable request is admitted only while fewer
	// than floor(SheddableShare × MaxInFlight) requests of any class are in
	// flight (at least 1). Zero means 0.5. It must be in [0, 1]; New panics
	// otherwise.
	SheddableShare float64
	// DefaultShare is the same for default requests. Zero means 0.9. It
	// must be in [0, 1] and, after defaults, not below SheddableShare; New
	// panics otherwise. Critical requests may always fill all of
	// MaxInFlight, so the slots above the default limit are reserved for
	// critical requests, and those above the sheddable limit for default
	// and critical ones.
	DefaultShare float64

	// MaxQueueWait enables queueing when positive: a request that finds no
	// slot for its class waits up to MaxQueueWait (less if its deadline is
	// nearer) in a bounded queue, and is admitted when a slot frees, most
	// important class first, oldest first within a class. A waiting
	// request leaves at once when its context ends. Zero means no queueing:
	// a request without a slot is refused at once. Queueing costs one
	// allocation and one timer per waiting request.
	MaxQueueWait time.Duration
	// QueueSize bounds how many requests wait, all classes together; a
	// request that finds the queue full evicts the newest waiter of the
	// least important class below its own, or is refused. Zero means
	// MaxInFlight/2 (at least 1). Ignored when MaxQueueWait is zero.
	QueueSize int

	// PriorityHeader names the request header that carries the class:
	// "critical", "default" or "sheddable", exactly. A missing header means
	// default; a repeated header or any other value is answered 400
	// (code bad_priority). Empty means "Sluice-Priority". The header is
	// trusted: strip or set it at the edge, or use Classify.
	PriorityHeader string
	// Classify, when set, gives each request's class instead of
	// PriorityHeader, which is then not read. It is called on every
	// request, on the request's goroutine, and must be fast and safe for
	// concurrent use. A value above ClassCritical counts as critical.
	// ParseClass helps it read a header of its own.
	Classify func(r *http.Request) Class

	// DeadlineHeader names the request header that carries the request's
	// deadline: a Go duration relative to arrival ("250ms", "2s", "1m30s")
	// or an absolute RFC 3339 timestamp ("2026-01-02T15:04:05.5Z"). The
	// handler's context gets that deadline (or its own, if earlier). A
	// duration of zero or less, or a timestamp already past, is answered
	// 504 (code deadline_exceeded) without calling the handler; a repeated
	// or unparsable header is answered 400 (code bad_deadline). A missing
	// header leaves the context alone. Empty means "Sluice-Deadline"; "-"
	// means no deadline header is read.
	DeadlineHeader string
	// MaxDeadline caps a header deadline at MaxDeadline after arrival.
	// Zero means no cap.
	MaxDeadline time.Duration

	// MaxRetryAfter caps the Retry-After estimate. Zero means one minute.
	// Values below MinRetryAfter are raised to it.
	MaxRetryAfter time.Duration

	// OnRefuse, when set, is called for every refusal, before the
	// middleware writes its response (or before Acquire returns), on the
	// refused request's goroutine, without the Limiter's lock held. It must
	// be safe for concurrent use and fast: it is on the path that has to
	// stay cheap under overload.
	OnRefuse func(Event)
}

// Event describes one refusal to Config.OnRefuse.
type Event struct {
	Request *http.Request // nil for refusals by Acquire
	Class   Class
	Reason  Reason
	// RetryAfter is the estimate sent in Retry-After (before rounding up
	// to whole seconds), or zero when the response carries none.
	RetryAfter time.Duration
	// QueueWait is how long the request waited in the queue; zero if it
	// never queued.
	QueueWait time.Duration
}

// Limiter admits or refuses requests by class against a bound on
// in-flight requests. Use Middleware for net/http, or Acquire and Release
// around any other unit of work. All methods are safe for concurrent use.
//
// A Limiter starts no goroutine.
type Limiter struct {
	// Read-only after New.
	share          [numClasses]float64 // critical's is 1
	maxQueueWait   time.Duration
	queueSize      int // 0 when MaxQueueWait is 0
	priorityKey    string
	classify       func(*http.Request) Class
	deadlineKey    string // "" when no deadline header is read
	maxDeadline    time.Duration
	maxRetryAfter  time.Duration
	onRefuse       func(Event)
	bodies         [numReasons][numClasses][]byte // refusal JSON bodies
	queueSizeFixed bool                           // Config.QueueSize was set

	mu          sync.Mutex
	maxInFlight int                  // guarded by mu
	limits      [numClasses]int      // guarded by mu; admit class c while total < limits[c]
	total       int                  // guarded by mu; sum of inFlight
	inFlight    [numClasses]int      // guarded by mu
	queues      [numClasses]waitList // guarded by mu
	queued      int                  // guarded by mu; sum of queue lengths
	closed      bool                 // guarded by mu
	idle        chan struct{}        // closed under mu once closed && total == 0
	idleClosed  bool                 // guarded by mu
	completed   uint64               // guarded by mu; admitted requests that finished
	rate        drainRate            // guarded by mu
	admitted    [numClasses]uint64   // guarded by mu
	refused     [numClasses][numReasons]uint64
}

// New returns a Limiter. It panics if cfg's shares are out of range.
func New(cfg Config) *Limiter {
	if cfg.SheddableShare == 0 {
		cfg.SheddableShare = DefaultSheddableShare
	}
	if cfg.DefaultShare == 0 {
		cfg.DefaultShare = DefaultDefaultShare
	}
	if !(cfg.SheddableShare >= 0 && cfg.SheddableShare <= 1) || !(cfg.DefaultShare >= 0 && cfg.DefaultShare <= 1) {
		panic(fmt.Sprintf("admit: shares must be in [0, 1], got SheddableShare %v, DefaultShare %v", cfg.SheddableShare, cfg.DefaultShare))
	}
	if cfg.DefaultShare < cfg.SheddableShare {
		panic(fmt.Sprintf("admit: DefaultShare %v below SheddableShare %v", cfg.DefaultShare, cfg.SheddableShare))
	}
	if cfg.MaxInFlight <= 0 {
		cfg.MaxInFlight = DefaultMaxInFlight
	}
	if cfg.PriorityHeader == "" {
		cfg.PriorityHeader = DefaultPriorityHeader
	}
	switch cfg.DeadlineHeader {
	case "":
		cfg.DeadlineHeader = DefaultDeadlineHeader
	case "-":
		cfg.DeadlineHeader = ""
	}
	if cfg.MaxRetryAfter == 0 {
		cfg.MaxRetryAfter = DefaultMaxRetryAfter
	}
	cfg.MaxRetryAfter = max(cfg.MaxRetryAfter, MinRetryAfter)
	l := &Limiter{
		share:          [numClasses]float64{cfg.SheddableShare, cfg.DefaultShare, 1},
		classify:       cfg.Classify,
		priorityKey:    http.CanonicalHeaderKey(cfg.PriorityHeader),
		maxDeadline:    max(cfg.MaxDeadline, 0),
		maxRetryAfter:  cfg.MaxRetryAfter,
		onRefuse:       cfg.OnRefuse,
		idle:           make(chan struct{}),
		rate:           drainRate{start: time.Now()},
		queueSizeFixed: cfg.QueueSize > 0,
	}
	if cfg.DeadlineHeader != "" {
		l.deadlineKey = http.CanonicalHeaderKey(cfg.DeadlineHeader)
	}
	if cfg.MaxQueueWait > 0 {
		l.maxQueueWait = cfg.MaxQueueWait
		l.queueSize = cfg.QueueSize
	}
	l.bodies = refusalBodies(cfg.PriorityHeader, cfg.DeadlineHeader)
	l.mu.Lock()
	l.setMaxInFlightLocked(cfg.MaxInFlight)
	l.mu.Unlock()
	return l
}

// SetMaxInFlight changes the bound (n ≤ 0 means 256) and the per-class
// limits derived from it. A larger bound admits waiting requests at once;
// a smaller one refuses new requests until enough in-flight ones finish
// (nothing in flight is interrupted). An adaptive controller can call it
// as often as it likes: it takes the lock briefly.
func (l *Limiter) SetMaxInFlight(n int) {
	if n <= 0 {
		n = DefaultMaxInFlight
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.setMaxInFlightLocked(n)
	l.dispatchLocked()
}

func (l *Limiter) setMaxInFlightLocked(n int) {
	l.maxInFlight = n
	prev := 1
	for c := range numClasses {
		// The epsilon keeps 0.29 × 100 from flooring to 28.
		lim := max(int(math.Floor(l.share[c]*float64(n)+1e-9)), prev)
		l.limits[c] = lim
		prev = lim
	}
	l.limits[ClassCritical] = n
	if l.maxQueueWait > 0 && !l.queueSizeFixed {
		l.queueSize = max(n/2, 1)
	}
}

// Acquire admits one unit of work of class c, waiting in the queue if
// queueing is configured, or returns a *RefusedError. After a nil error
// the caller must call Release(c) exactly once when the work is done.
// ctx bounds the wait in the queue; a request admitted as its context
// ends is still admitted. A class above ClassCritical counts as critical.
//
// Admission without waiting takes the lock once and allocates nothing; a
// refusal allocates the *RefusedError.
func (l *Limiter) Acquire(ctx context.Context, c Class) error {
	if c >= numClasses {
		c = ClassCritical
	}
	g := l.acquire(ctx, c, time.Time{})
	if g.reason == admitted {
		return nil
	}
	l.refuseEvent(nil, c, g)
	return &RefusedError{Reason: g.reason, Class: c, RetryAfter: g.retryAfter, Cause: g.cause}
}

// Release ends work admitted by Acquire with class c. It panics if no
// such work is in flight.
func (l *Limiter) Release(c Class) {
	if c >= numClasses {
		c = ClassCritical
	}
	l.release(c)
}

// admitted is the reason of a grant that admitted.
const admitted Reason = numReasons

// grant is the outcome of acquire.
type grant struct {
	reason     Reason // admitted, or why not
	retryAfter time.Duration
	queueWait  time.Duration
	cause      error
}

// acquire admits class c or says why not. A non-zero deadline bounds the
// wait in the queue besides ctx (the middleware has not put it in a
// context yet, to keep refusals free of allocations).
func (l *Limiter) acquire(ctx context.Context, c Class, deadline time.Time) grant {
	l.mu.Lock()
	if l.closed {
		return l.refuseLocked(c, ReasonDraining, 0, nil)
	}
	// Invariant (kept by dispatchLocked): no waiter could be admitted, so
	// a free slot for c means that no waiter of class c or above exists.
	if l.total < l.limits[c] {
		l.admitLocked(c)
		l.mu.Unlock()
		return grant{reason: admitted}
	}
	if l.queueSize == 0 {
		return l.refuseLocked(c, ReasonOverloaded, 0, nil)
	}
	if l.queued >= l.queueSize {
		victim := l.victimLocked(c)
		if victim == nil {
			return l.refuseLocked(c, ReasonOverloaded, 0, nil)
		}
		l.removeLocked(victim)
		victim.state = stateShed
		victim.ready <- struct{}{}
	}
	return l.waitLocked(ctx, c, deadline)
}

// waitLocked queues a request of class c and waits for a slot, the end of
// ctx, the queue-wait bound or the deadline. It unlocks l.mu.
func (l *Limiter) waitLocked(ctx context.Context, c Class, deadline time.Time) grant {
	start := time.Now()
	w := &waiter{class: c, ready: make(chan struct{}, 1)}
	l.queues[c].pushBack(w)
	l.queued++
	l.mu.Unlock()

	bound, expiry := l.maxQueueWait, false
	if !deadline.IsZero() {
		if d := deadline.Sub(start); d < bound {
			bound, expiry = d, true
		}
	}
	timer := time.NewTimer(bound)
	defer timer.Stop()
	var why Reason
	var cause error
	select {
	case <-w.ready:
	case <-ctx.Done():
		why, cause = ReasonCanceled, ctx.Err()
		if cause == context.DeadlineExceeded {
			why = ReasonExpired
		}
	case <-timer.C:
		why = ReasonQueueTimeout
		if expiry {
			why = ReasonExpired
		}
	}

	l.mu.Lock()
	wait := time.Since(start)
	var g grant
	switch w.state {
	case stateGranted:
		l.mu.Unlock()
		return grant{reason: admitted, queueWait: wait}
	case stateShed:
		g = l.refuseLocked(c, ReasonShed, wait, nil)
	case stateDrained:
		g = l.refuseLocked(c, ReasonDraining, wait, nil)
	default:
		l.removeLocked(w)
		g = l.refuseLocked(c, why, wait, cause)
	}
	return g
}

// refuseLocked counts a refusal of class c, estimates Retry-After if the
// reason's response has one, and unlocks l.mu.
func (l *Limiter) refuseLocked(c Class, why Reason, wait time.Duration, cause error) grant {
	l.refused[c][why]++
	g := grant{reason: why, queueWait: wait, cause: cause}
	if reasonInfo[why].retry {
		g.retryAfter = l.retryAfterLocked(c, why)
	}
	l.mu.Unlock()
	return g
}

// countRefusal counts a refusal decided without the lock (bad headers,
// a deadline passed on arrival).
func (l *Limiter) countRefusal(c Class, why Reason) {
	l.mu.Lock()
	l.refused[c][why]++
	l.mu.Unlock()
}

func (l *Limiter) admitLocked(c Class) {
	l.total++
	l.inFlight[c]++
	l.admitted[c]++
}

func (l *Limiter) release(c Class) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.inFlight[c] <= 0 {
		panic("admit: Release of class " + c.String() + " with nothing of that class in flight")
	}
	l.inFlight[c]--
	l.total--
	l.completed++
	if l.queued > 0 {
		l.dispatchLocked()
	}
	l.checkIdleLocked()
}

// dispatchLocked admits waiters while slots allow, most important class
// first, oldest first within a class. Afterwards no waiter is admissible.
func (l *Limiter) dispatchLocked() {
	for c := ClassCritical; ; c-- {
		for l.queues[c].n > 0 && l.total < l.limits[c] {
			w := l.queues[c].popFront()
			l.queued--
			l.admitLocked(c)
			w.state = stateGranted
			w.ready <- struct{}{}
		}
		if c == ClassSheddable {
			return
		}
	}
}

// victimLocked returns the newest waiter of the least important class
// below c, or nil.
func (l *Limiter) victimLocked(c Class) *waiter {
	for k := ClassSheddable; k < c; k++ {
		if w := l.queues[k].tail; w != nil {
			return w
		}
	}
	return nil
}

func (l *Limiter) removeLocked(w *waiter) {
	l.queues[w.class].remove(w)
	l.queued--
}

// Close makes the Limiter refuse every new request with ErrDraining (503
// with Retry-After from the middleware) and refuses every waiting request
// the same way, at once. Requests already admitted go on; Wait waits for
// them. Close does not wait; it is idempotent and safe from several
// goroutines. Call it when the service stops accepting work, before
// http.Server.Shutdown, so that requests on open keep-alive connections
// get a clear 503 instead of queueing behind the drain.
func (l *Limiter) Close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return
	}
	l.closed = true
	for c := range numClasses {
		for w := l.queues[c].popFront(); w != nil; w = l.queues[c].popFront() {
			l.queued--
			w.state = stateDrained
			w.ready <- struct{}{}
		}
	}
	l.checkIdleLocked()
}

// Quiesce calls Close and returns nil, for lifecycle's phase 3 (stop
// accepting); the HTTP server component drains the admitted requests in
// phase 4:
//
//	svc.Add("admit", lifecycle.Hook{OnQuiesce: lim.Quiesce})
func (l *Limiter) Quiesce(context.Context) error {
	l.Close()
	return nil
}

// Wait returns nil once Close has been called and no admitted request is
// in flight, or ctx's error if ctx ends first. It does not interrupt
// in-flight requests (the server's shutdown does that).
func (l *Limiter) Wait(ctx context.Context) error {
	select {
	case <-l.idle:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (l *Limiter) checkIdleLocked() {
	if l.closed && l.total == 0 && !l.idleClosed {
		l.idleClosed = true
		close(l.idle)
	}
}
