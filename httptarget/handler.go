package httptarget

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/failsafe-go/failsafe-go/adaptivelimiter"

	"github.com/sluicehq/sluice/jobs"
)

// Kind is the job kind this package handles: register a Handler under it.
const Kind = "http"

// Config holds a Handler's optional settings. The zero value works: every
// field documents its default.
type Config struct {
	// AttemptTimeout bounds each request, from the wait for a concurrency
	// permit to the end of reading the response. The effective timeout is
	// the least of this, the job's AttemptTimeout (if set) and the time
	// left until the job's Deadline (if set). Zero means 30s.
	AttemptTimeout time.Duration
	// MaxResponseBody is how much of a response body is read (and
	// discarded) so that its connection can be reused; a longer body's
	// connection is closed instead. Zero means 64 KiB; negative means none
	// is read.
	MaxResponseBody int64
	// MaxRetryAfter bounds the Retry-After of a 429 or 503 answer that the
	// returned error carries. Zero means 1h. The worker further caps it at
	// the job's BackoffMax.
	MaxRetryAfter time.Duration
	// MaxHostPause bounds how long a Retry-After pauses every job to the
	// same host (a 429 or 503 with Retry-After holds back the host's other
	// jobs until then, without sending them). Zero means 1m; negative
	// turns host pauses off.
	MaxHostPause time.Duration
	// Limiter configures each host's adaptive concurrency limit.
	Limiter LimiterConfig
	// Breaker configures each host's circuit breaker.
	Breaker BreakerConfig
	// MaxHosts is how many hosts' guards are kept; past it, hosts that are
	// idle with a closed breaker are forgotten, oldest first. Zero means
	// 1024.
	MaxHosts int

	// AllowPrivate lets targets resolve to any address, including
	// loopback, private, link-local and cloud metadata addresses. For
	// development only.
	AllowPrivate bool
	// AllowPrefixes lets targets resolve to addresses in these ranges even
	// though they are otherwise refused (for example 10.1.0.0/16 for an
	// internal service network). IPv4 prefixes also match IPv4-mapped IPv6
	// addresses.
	AllowPrefixes []netip.Prefix
	// AllowHosts names hosts (exact, case-insensitive) whose addresses are
	// not checked at all: their DNS is trusted.
	AllowHosts []string

	// UserAgent is sent with every request. Empty means "sluice-httptarget".
	UserAgent string
	// Transport is a template for the HTTP transport (TLS settings, pool
	// sizes). It is cloned, and its Proxy and dial functions are replaced
	// so that every connection goes through the address checks: a proxy
	// would make those check the proxy instead of the target. Nil means a
	// transport with net/http's usual defaults.
	Transport *http.Transport
	// Logger receives breaker state changes (Info; Warn when one opens)
	// and limit changes (Debug). Nil means slog.Default().
	Logger *slog.Logger
	// Now reads the clock for Retry-After dates and host pauses. Nil means
	// time.Now. Timeouts use the real clock.
	Now func() time.Time
}

// LimiterConfig configures the adaptive concurrency limit of each host
// (failsafe-go adaptivelimiter: the limit rises while latency stays near
// its baseline and falls when latency climbs, so that a target slowing
// down gets fewer concurrent requests and does not hold every worker).
type LimiterConfig struct {
	// Min, Max and Initial bound the limit. Zeros mean 1, 100 and 5.
	// Initial is kept low so that a host that is slow from the start
	// cannot take more than a few workers before the limiter has seen it.
	Min, Max, Initial uint
	// MaxWait is how long a job waits for a permit when the limit is
	// reached before giving up with ErrLimited (the wait also ends with
	// the attempt). Zero means 250ms; negative means no wait.
	MaxWait time.Duration
}

// BreakerConfig configures the circuit breaker of each host (failsafe-go
// circuitbreaker, count based). Failures are 408, 429 and 5xx answers,
// timeouts and connection errors; other answers are successes.
type BreakerConfig struct {
	// The breaker opens when Failures of the host's last Window requests
	// failed. Zeros mean 5 and 10.
	Failures, Window uint
	// Delay is how long the breaker stays open before it lets trial
	// requests through. Zero means 30s.
	Delay time.Duration
	// JitterFactor varies each Delay by up to ±JitterFactor×Delay, so that
	// breakers that opened together do not probe together. Zero means
	// 0.2; negative means none.
	JitterFactor float64
	// Successes is the number of trial requests let through while
	// half-open: all must succeed to close the breaker, one failure opens
	// it again. Zero means 3.
	Successes uint
}

// Handler delivers jobs of kind Kind: it sends the job's Request to its
// URL, guarded per target host by an adaptive concurrency limit, a circuit
// breaker and Retry-After pauses, and refuses addresses that are not
// allowed. The queue's rate limit is applied by the worker before Work
// runs. Safe for concurrent use.
type Handler struct {
	cfg       Config
	guard     *guard
	transport *http.Transport
	client    *http.Client
	total     counters

	mu    sync.Mutex
	hosts map[string]*host // guarded by mu
}

var _ jobs.Handler = (*Handler)(nil)

// New returns a Handler. It starts no goroutine; Close releases its idle
// connections.
func New(cfg Config) *Handler {
	if cfg.AttemptTimeout <= 0 {
		cfg.AttemptTimeout = 30 * time.Second
	}
	if cfg.MaxResponseBody == 0 {
		cfg.MaxResponseBody = 64 << 10
	}
	if cfg.MaxRetryAfter <= 0 {
		cfg.MaxRetryAfter = time.Hour
	}
	if cfg.MaxHostPause == 0 {
		cfg.MaxHostPause = time.Minute
	}
	if cfg.MaxHosts <= 0 {
		cfg.MaxHosts = 1024
	}
	if cfg.UserAgent == "" {
		cfg.UserAgent = "sluice-httptarget"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	l := &cfg.Limiter
	if l.Min == 0 {
		l.Min = 1
	}
	if l.Max == 0 {
		l.Max = 100
	}
	if l.Initial == 0 {
		l.Initial = 5
	}
	l.Max = max(l.Max, l.Min)
	l.Initial = min(max(l.Initial, l.Min), l.Max)
	if l.MaxWait == 0 {
		l.MaxWait = 250 * time.Millisecond
	}
	l.MaxWait = max(l.MaxWait, 0)
	b := &cfg.Breaker
	if b.Failures == 0 {
		b.Failures = 5
	}
	if b.Window == 0 {
		b.Window = 10
	}
	b.Window = max(b.Window, b.Failures)
	if b.Delay <= 0 {
		b.Delay = 30 * time.Second
	}
	switch {
	case b.JitterFactor == 0:
		b.JitterFactor = 0.2
	case b.JitterFactor < 0:
		b.JitterFactor = 0
	case b.JitterFactor > 1:
		b.JitterFactor = 1
	}
	if b.Successes == 0 {
		b.Successes = 3
	}

	h := &Handler{cfg: cfg, guard: newGuard(&cfg), hosts: make(map[string]*host)}
	if cfg.Transport != nil {
		h.transport = cfg.Transport.Clone()
	} else {
		h.transport = &http.Transport{
			ForceAttemptHTTP2:     true,
			MaxIdleConns:          100,
			MaxIdleConnsPerHost:   10,
			IdleConnTimeout:       90 * time.Second,
			TLSHandshakeTimeout:   10 * time.Second,
			ExpectContinueTimeout: time.Second,
		}
	}
	h.transport.Proxy = nil
	h.transport.OnProxyConnectResponse = nil
	h.transport.DialContext = h.guard.dialer()
	h.transport.DialTLSContext = nil // TLS runs over DialContext's checked connection
	//lint:ignore SA1019 a template's deprecated DialTLS would bypass the address checks
	h.transport.DialTLS = nil
	if h.transport.MaxResponseHeaderBytes == 0 {
		h.transport.MaxResponseHeaderBytes = 64 << 10
	}
	h.client = &http.Client{
		Transport: h.transport,
		// Redirects are not followed: a 3xx fails the job for good (see
		// docs/httptarget.md). Following them would resend the payload to
		// a place the job did not name.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return h
}

// Close closes the handler's idle connections. Work may still be called
// afterwards (it opens new ones). Idempotent.
func (h *Handler) Close() error {
	h.transport.CloseIdleConnections()
	return nil
}

// Register registers h for Kind in reg.
func (h *Handler) Register(reg *jobs.Registry) { reg.Handle(Kind, h) }

// outcome kinds, for counting.
type result int

const (
	succeeded result = iota
	retried
	failed
	limited
	shortCircuited
	paused
	canceled
)

// Work runs one attempt of job: it decodes the job's Request and sends it.
// Its result, for the worker:
//
//   - nil: a 2xx answer.
//   - *RetryAfterError (retry, at its RetryAfter if not zero): a 429 or 503
//     answer, or the request withheld because the host's breaker is open,
//     its concurrency limit is reached, or it asked for a pause.
//   - another error (retry with backoff): 408 or 5xx, a timeout, a
//     connection or DNS error.
//   - jobs.Permanent (fail): a bad payload, a 3xx or other 4xx answer, a
//     refused address.
//
// Work returns soon after ctx ends. It blocks at most the attempt timeout
// (see Config.AttemptTimeout) and, when the host's limit is reached, at
// most Limiter.MaxWait before sending.
func (h *Handler) Work(ctx context.Context, job *jobs.Job) error {
	req, err := ParseRequest(job.Payload)
	if err != nil {
		return jobs.Permanent(err)
	}
	u, _ := req.parseURL() // valid: ParseRequest checked it
	hs := h.acquireHost(hostKey(u))
	defer h.releaseHost(hs)
	res, err := h.attempt(ctx, job, req, hs)
	for _, c := range []*counters{&h.total, &hs.counts} {
		switch res {
		case succeeded:
			c.succeeded.Add(1)
		case retried:
			c.retried.Add(1)
		case failed:
			c.failed.Add(1)
		case limited:
			c.limited.Add(1)
		case shortCircuited:
			c.shortCircuited.Add(1)
		case paused:
			c.paused.Add(1)
		case canceled:
			c.canceled.Add(1)
		}
	}
	return err
}

func (h *Handler) attempt(ctx context.Context, job *jobs.Job, req *Request, hs *host) (result, error) {
	// Cheap refusals first: nothing is waited for, nothing is sent.
	if d := hs.pausedFor(h.cfg.Now()); d > 0 {
		return paused, &RetryAfterError{Host: hs.name, Delay: d, Err: ErrHostPaused}
	}
	if d := hs.breaker.RemainingDelay(); d > 0 {
		return shortCircuited, &RetryAfterError{Host: hs.name, Delay: d, Err: ErrCircuitOpen}
	}

	// The worker's ctx already ends at the job's deadline and its attempt
	// timeout; they are applied here too so that the bound holds for any
	// caller, together with the handler's own.
	timeout := h.cfg.AttemptTimeout
	if job.AttemptTimeout > 0 {
		timeout = min(timeout, job.AttemptTimeout)
	}
	deadline := time.Now().Add(timeout)
	if !job.Deadline.IsZero() && job.Deadline.Before(deadline) {
		deadline = job.Deadline
	}
	actx, cancel := context.WithDeadlineCause(ctx, deadline, ErrTimeout)
	defer cancel()

	permit, err := hs.limiter.AcquirePermitWithMaxWait(actx, h.cfg.Limiter.MaxWait)
	if err != nil {
		if ctx.Err() != nil {
			return canceled, fmt.Errorf("httptarget: %s: waiting for a concurrency permit: %w", hs.name, context.Cause(ctx))
		}
		return limited, &RetryAfterError{Host: hs.name, Err: ErrLimited}
	}
	if !hs.breaker.TryAcquirePermit() {
		permit.Drop()
		return shortCircuited, &RetryAfterError{Host: hs.name, Delay: hs.breaker.RemainingDelay(), Err: ErrCircuitOpen}
	}
	trial := hs.breaker.IsHalfOpen()
	// noEvidence releases the breaker permit when the attempt says nothing
	// about the target's health. Only a half-open breaker counts permits;
	// a trial that ended without evidence counts as failed so that the
	// breaker opens again and probes later, rather than close on no
	// evidence.
	noEvidence := func() {
		if trial {
			hs.breaker.RecordFailure()
		}
	}

	hreq, err := h.newRequest(actx, job, req)
	if err != nil { // cannot happen for a validated Request
		permit.Drop()
		noEvidence()
		return failed, jobs.Permanent(fmt.Errorf("httptarget: %s: %w", hs.name, err))
	}
	start := time.Now()
	resp, err := h.client.Do(hreq)
	if err != nil {
		return h.classifyErr(ctx, actx, hs, permit, noEvidence, time.Since(start), err)
	}
	h.total.sent.Add(1)
	hs.counts.sent.Add(1)
	body := h.drain(resp)
	permit.Record() // the answer's latency, whatever its status, feeds the limit

	status := resp.StatusCode
	serr := &StatusError{Host: hs.name, Status: status, Body: snippet(body)}
	switch {
	case status >= 200 && status <= 299:
		hs.breaker.RecordSuccess()
		return succeeded, nil
	case status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable:
		hs.breaker.RecordFailure()
		now := h.cfg.Now()
		d := parseRetryAfter(resp.Header.Get("Retry-After"), now, h.cfg.MaxRetryAfter)
		if d > 0 && h.cfg.MaxHostPause > 0 {
			hs.pause(now, min(d, h.cfg.MaxHostPause))
		}
		return retried, &RetryAfterError{Host: hs.name, Delay: d, Sent: true, Err: serr}
	case status == http.StatusRequestTimeout || status >= 500:
		hs.breaker.RecordFailure()
		return retried, serr
	default: // 1xx as a final answer, 3xx (not followed), other 4xx
		hs.breaker.RecordSuccess() // the target works; the request is wrong
		if status >= 300 && status <= 399 {
			serr.Body = "redirect to " + strconv.Quote(resp.Header.Get("Location")) + " not followed"
		}
		return failed, jobs.Permanent(serr)
	}
}

// classifyErr turns a failed round trip into an outcome, releasing the
// permits with what the failure says about the target.
func (h *Handler) classifyErr(ctx, actx context.Context, hs *host, permit adaptivelimiter.Permit,
	noEvidence func(), took time.Duration, err error) (result, error) {
	var addrErr *AddressError
	if errors.As(err, &addrErr) {
		permit.Drop()
		noEvidence()
		return failed, jobs.Permanent(fmt.Errorf("httptarget: %s: %w", hs.name, addrErr))
	}
	h.total.sent.Add(1)
	hs.counts.sent.Add(1)
	switch {
	case errors.Is(actx.Err(), context.DeadlineExceeded):
		// No answer in time, whichever bound ended it (the handler's, the
		// job's attempt timeout or its deadline): the target is slow.
		permit.Record()
		hs.breaker.RecordFailure()
		if ctx.Err() != nil { // the worker's bound: say which
			return retried, fmt.Errorf("%w: %s: no answer within %v (%w)", ErrTimeout, hs.name, took.Round(time.Millisecond), context.Cause(ctx))
		}
		return retried, fmt.Errorf("%w: %s: no answer within %v", ErrTimeout, hs.name, took.Round(time.Millisecond))
	case actx.Err() != nil:
		// Canceled: the job was canceled, its lease lost, or the worker is
		// stopping. Nothing learned about the target.
		permit.Drop()
		noEvidence()
		return canceled, fmt.Errorf("httptarget: %s: %w", hs.name, context.Cause(ctx))
	}
	// Connection refused or reset, DNS failure, TLS failure, a broken
	// answer: retry with backoff. The limiter learns nothing from how fast
	// a connection failed; the breaker counts a failure.
	permit.Drop()
	hs.breaker.RecordFailure()
	var uerr *url.Error
	if errors.As(err, &uerr) {
		err = uerr.Err // drop the method and URL: the job already names them
	}
	return retried, fmt.Errorf("httptarget: %s: %w", hs.name, err)
}

// newRequest builds the HTTP request for one attempt.
func (h *Handler) newRequest(ctx context.Context, job *jobs.Job, req *Request) (*http.Request, error) {
	method := req.Method
	if method == "" {
		method = DefaultMethod
	}
	var body io.Reader
	if len(req.Body) > 0 {
		body = bytes.NewReader(req.Body)
	}
	hreq, err := http.NewRequestWithContext(ctx, method, req.URL, body)
	if err != nil {
		return nil, err
	}
	for k, v := range req.Headers {
		hreq.Header.Set(k, v)
	}
	key := job.IdempotencyKey
	if key == "" {
		key = "sluice-job-" + strconv.FormatInt(job.ID, 10)
	}
	hd := hreq.Header
	hd.Set("Idempotency-Key", key)
	hd.Set("Sluice-Job-Id", strconv.FormatInt(job.ID, 10))
	hd.Set("Sluice-Attempt", strconv.Itoa(job.Attempt))
	hd.Set("Sluice-Queue", job.Queue)
	if dl, ok := ctx.Deadline(); ok {
		hd.Set("Sluice-Deadline", strconv.FormatInt(max(time.Until(dl).Milliseconds(), 0), 10))
	}
	hd.Set("User-Agent", h.cfg.UserAgent)
	if body != nil {
		hd.Set("Content-Type", "application/json")
	}
	return hreq, nil
}

// drain reads up to MaxResponseBody of the body so that the connection can
// be reused, closes it, and returns the first bytes for error messages.
func (h *Handler) drain(resp *http.Response) []byte {
	defer resp.Body.Close()
	if h.cfg.MaxResponseBody < 0 {
		return nil
	}
	var head bytes.Buffer
	n, _ := io.CopyN(&head, resp.Body, min(256, h.cfg.MaxResponseBody))
	if n == min(256, h.cfg.MaxResponseBody) {
		_, _ = io.CopyN(io.Discard, resp.Body, h.cfg.MaxResponseBody-n)
	}
	return head.Bytes()
}
