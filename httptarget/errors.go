package httptarget

import (
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// Errors callers match with errors.Is. The handler returns them wrapped:
// ErrForbiddenAddress inside jobs.Permanent, the others inside a
// *RetryAfterError or a plain error (both retried by the worker).
var (
	// ErrForbiddenAddress: the target resolved to an address the
	// configuration does not allow (loopback, private, link-local, ...).
	// Matches every *AddressError.
	ErrForbiddenAddress = errors.New("httptarget: address not allowed")
	// ErrLimited: the host's adaptive concurrency limit was reached and no
	// permit freed up within the limiter's wait. Nothing was sent.
	ErrLimited = errors.New("httptarget: host concurrency limit reached")
	// ErrCircuitOpen: the host's circuit breaker is open (or half-open with
	// its trial requests taken). Nothing was sent.
	ErrCircuitOpen = errors.New("httptarget: circuit breaker open")
	// ErrHostPaused: the host answered 429 or 503 with Retry-After
	// recently, and that time has not passed. Nothing was sent.
	ErrHostPaused = errors.New("httptarget: host asked to retry later")
	// ErrTimeout: the target did not answer within the attempt timeout.
	ErrTimeout = errors.New("httptarget: attempt timed out")
)

// AddressError is a refused dial: the address and why it is refused.
type AddressError struct {
	Addr   netip.Addr // invalid if the dialled address did not parse
	Reason string     // "loopback", "private", "link-local (cloud metadata)", ...
}

func (e *AddressError) Error() string {
	return fmt.Sprintf("httptarget: address %v not allowed: %s", e.Addr, e.Reason)
}

// Is matches ErrForbiddenAddress.
func (e *AddressError) Is(target error) bool { return target == ErrForbiddenAddress }

// StatusError is a response outside 2xx. Body holds the start of the
// response body (at most 256 bytes, made printable) for the job's
// LastError; for a 3xx it says where the redirect pointed instead.
type StatusError struct {
	Host   string
	Status int
	Body   string
}

func (e *StatusError) Error() string {
	msg := fmt.Sprintf("httptarget: %s answered %d %s", e.Host, e.Status, http.StatusText(e.Status))
	if e.Body != "" {
		msg += ": " + strconv.Quote(e.Body)
	}
	return msg
}

// RetryAfterError asks for a retry no sooner than RetryAfter from now. The
// handler returns it for 429 and 503 responses (Delay from the target's
// Retry-After header, zero if it had none) and for requests it refused to
// send to protect the host (Err is ErrCircuitOpen, ErrHostPaused or
// ErrLimited; Delay is when the breaker half-opens or the pause ends, zero
// when unknown).
//
// It implements jobs.RetryAfterer, so the worker schedules the retry at
// RetryAfter() (capped by the job's BackoffMax) instead of its exponential
// backoff; zero means "use the backoff". NotAttempted reports that the
// target was never contacted, so that a worker can choose not to count the
// attempt (see docs/httptarget.md).
type RetryAfterError struct {
	Host  string
	Delay time.Duration // bounded by Config.MaxRetryAfter; zero: none given
	Sent  bool          // the request reached the target (a 429 or 503)
	Err   error         // a *StatusError, ErrCircuitOpen, ErrHostPaused or ErrLimited
}

func (e *RetryAfterError) Error() string {
	var b strings.Builder
	if e.Err != nil {
		b.WriteString(e.Err.Error())
	} else {
		b.WriteString("httptarget: retry later")
	}
	if !e.Sent {
		b.WriteString(" (" + e.Host + ", not sent)")
	}
	if e.Delay > 0 {
		b.WriteString(", retry after " + e.Delay.String())
	}
	return b.String()
}

func (e *RetryAfterError) Unwrap() error { return e.Err }

// RetryAfter returns Delay: how long to wait before the next attempt,
// zero when the worker's backoff should decide.
func (e *RetryAfterError) RetryAfter() time.Duration { return e.Delay }

// NotAttempted reports whether the request was withheld without
// contacting the target (breaker open, host paused, limit reached).
func (e *RetryAfterError) NotAttempted() bool { return !e.Sent }

// parseRetryAfter reads a Retry-After value: delay-seconds or an
// HTTP-date (RFC 9110 section 10.2.3). It returns zero for a missing,
// malformed or past value, and at most maxD.
func parseRetryAfter(v string, now time.Time, maxD time.Duration) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	var d time.Duration
	if v[0] >= '0' && v[0] <= '9' {
		n, err := strconv.ParseUint(v, 10, 64)
		switch {
		case err != nil && errors.Is(err, strconv.ErrRange):
			return maxD
		case err != nil:
			return 0
		case n > uint64(maxD/time.Second):
			return maxD
		}
		d = time.Duration(n) * time.Second
	} else {
		t, err := http.ParseTime(v)
		if err != nil {
			return 0
		}
		d = t.Sub(now)
	}
	return max(0, min(d, maxD))
}

// snippet makes the start of a response body printable for an error.
func snippet(b []byte) string {
	s := strings.ToValidUTF8(string(b), "?")
	s = strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	return strings.TrimSpace(s)
}
