package admit

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"time"
)

// Middleware returns a handler that admits each request to next or
// refuses it, in this order:
//
//  1. the class, from Config.Classify or the priority header (400
//     bad_priority if the header is repeated or unknown);
//  2. the deadline header (400 bad_deadline if repeated or unparsable;
//     504 deadline_exceeded if already past);
//  3. a slot for the class (503 shutting_down after Close; 429
//     overloaded, with Retry-After, if none frees in time; 504 or 503 if
//     the deadline passes or the context ends while queued).
//
// A refused request's body is never read and next is not called; the
// response is a small JSON object {"error":{"code":...,"message":...}},
// the Connection header is left alone. An admitted request reaches next
// with its original ResponseWriter (so Flusher, Hijacker and friends keep
// working) and, when it had a deadline header, a context with that
// deadline. Its slot is released when next returns or panics; a panic is
// not recovered.
//
// Costs, measured by the package's benchmarks on a 2-core VM (see
// docs/admit.md): a refusal takes about 0.6 µs and one allocation (the
// response header values); an admission adds about 150 ns and no
// allocation without a deadline header, and about 2 µs and five
// allocations (a derived context and a request copy) with one.
func (l *Limiter) Middleware(next http.Handler) http.Handler {
	return &middleware{l: l, next: next}
}

type middleware struct {
	l    *Limiter
	next http.Handler
}

func (m *middleware) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	l := m.l
	c, ok := l.classOf(r)
	if !ok {
		l.refuseNow(w, r, ClassDefault, ReasonBadPriority)
		return
	}
	var deadline time.Time
	if l.deadlineKey != "" {
		if vals := r.Header[l.deadlineKey]; len(vals) > 0 {
			now := time.Now()
			if len(vals) > 1 {
				l.refuseNow(w, r, c, ReasonBadDeadline)
				return
			}
			deadline, ok = parseDeadline(vals[0], now)
			if !ok {
				l.refuseNow(w, r, c, ReasonBadDeadline)
				return
			}
			if !deadline.After(now) {
				l.refuseNow(w, r, c, ReasonExpired)
				return
			}
			if l.maxDeadline > 0 && deadline.Sub(now) > l.maxDeadline {
				deadline = now.Add(l.maxDeadline)
			}
		}
	}
	g := l.acquire(r.Context(), c, deadline)
	if g.reason != admitted {
		l.refuseEvent(r, c, g)
		l.writeRefusal(w, c, g.reason, g.retryAfter)
		return
	}
	defer l.release(c)
	if !deadline.IsZero() {
		ctx, cancel := context.WithDeadline(r.Context(), deadline)
		defer cancel()
		r = r.WithContext(ctx)
	}
	m.next.ServeHTTP(w, r)
}

// classOf reads r's class.
func (l *Limiter) classOf(r *http.Request) (Class, bool) {
	if l.classify != nil {
		c := l.classify(r)
		if c >= numClasses {
			c = ClassCritical
		}
		return c, true
	}
	switch vals := r.Header[l.priorityKey]; len(vals) {
	case 0:
		return ClassDefault, true
	case 1:
		return parseClass(vals[0])
	}
	return ClassDefault, false
}

// refuseNow refuses a request before any slot was looked at.
func (l *Limiter) refuseNow(w http.ResponseWriter, r *http.Request, c Class, why Reason) {
	l.countRefusal(c, why)
	l.refuseEvent(r, c, grant{reason: why})
	l.writeRefusal(w, c, why, 0)
}

func (l *Limiter) refuseEvent(r *http.Request, c Class, g grant) {
	if l.onRefuse != nil {
		l.onRefuse(Event{Request: r, Class: c, Reason: g.reason, RetryAfter: g.retryAfter, QueueWait: g.queueWait})
	}
}

// writeRefusal writes the refusal response, which no cache may keep. Its
// only allocation is the backing array of the header values.
func (l *Limiter) writeRefusal(w http.ResponseWriter, c Class, why Reason, retryAfter time.Duration) {
	h := w.Header()
	vals := make([]string, 4)
	vals[0], vals[1], vals[2] = "application/json", "nosniff", "no-store"
	h["Content-Type"] = vals[0:1:1]
	h["X-Content-Type-Options"] = vals[1:2:2]
	h["Cache-Control"] = vals[2:3:3]
	if retryAfter > 0 {
		vals[3] = strconv.Itoa(RetryAfterSeconds(retryAfter))
		h["Retry-After"] = vals[3:4:4]
	}
	w.WriteHeader(reasonInfo[why].status)
	_, _ = w.Write(l.bodies[why][c]) // an error means the client has gone: nothing to do
}

// RetryAfterSeconds returns d as a Retry-After header value: whole
// seconds, rounded up, at least 1.
func RetryAfterSeconds(d time.Duration) int {
	return max(int(math.Ceil(d.Seconds())), 1)
}

// ParseDeadline parses a deadline header value against the arrival time
// now: a Go duration ("250ms", "2s", "1m30s"; see time.ParseDuration) or a
// bare integer, which counts milliseconds ("250", as the Sluice-Deadline
// header of httptarget's requests carries it), is relative to now; an RFC
// 3339 timestamp ("2026-01-02T15:04:05Z", with optional fractional seconds
// and any offset) is absolute. The result may
// be at or before now (a duration of zero or less, or a past timestamp):
// the middleware answers such requests 504. Anything else is an error that
// matches ErrBadDeadline.
//
// Durations are preferred: they do not depend on the clocks of client and
// server agreeing.
func ParseDeadline(v string, now time.Time) (time.Time, error) {
	if t, ok := parseDeadline(v, now); ok {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("%w: %q is neither a Go duration, milliseconds, nor an RFC 3339 timestamp", ErrBadDeadline, v)
}

// parseDeadline is ParseDeadline without the error. Timestamps are told
// apart from durations by their shape (a date's '-' at index 4), so the
// common case parses once without allocating.
func parseDeadline(v string, now time.Time) (time.Time, bool) {
	if len(v) >= len("2006-01-02T15:04:05Z") && v[4] == '-' {
		t, err := time.Parse(time.RFC3339Nano, v)
		return t, err == nil
	}
	if ms, ok := parseMillis(v); ok {
		return now.Add(time.Duration(ms) * time.Millisecond), true
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return time.Time{}, false
	}
	return now.Add(d), true
}

// parseMillis parses v as a count of milliseconds: 1 to 12 ASCII digits
// (up to about 31 years), nothing else.
func parseMillis(v string) (int64, bool) {
	if len(v) == 0 || len(v) > 12 {
		return 0, false
	}
	var n int64
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// refusalBodies renders every refusal body once, so that refusing costs
// no encoding.
func refusalBodies(priorityHeader, deadlineHeader string) [numReasons][numClasses][]byte {
	retry := "; retry after the delay in Retry-After"
	var out [numReasons][numClasses][]byte
	for why := range numReasons {
		for c := range numClasses {
			var msg string
			switch why {
			case ReasonOverloaded:
				msg = "the server is overloaded and refuses " + c.String() + " requests" + retry
			case ReasonQueueTimeout:
				msg = "the server is overloaded: no capacity freed up for this " + c.String() + " request within the queue-wait bound" + retry
			case ReasonShed:
				msg = "the server is overloaded: this " + c.String() + " request was dropped from the queue for more important work" + retry
			case ReasonDraining:
				msg = "the server is shutting down and accepts no new requests" + retry + ", preferably on another instance"
			case ReasonExpired:
				msg = "the request's deadline passed before it could be served"
			case ReasonCanceled:
				msg = "the request was canceled while it waited for capacity"
			case ReasonBadPriority:
				msg = "the " + priorityHeader + " header must appear at most once, with value critical, default or sheddable"
			case ReasonBadDeadline:
				msg = "the " + deadlineHeader + " header must appear at most once, with a Go duration such as 250ms or 2s, or an RFC 3339 timestamp such as 2026-01-02T15:04:05Z"
			}
			type body struct {
				Error struct {
					Code    string `json:"code"`
					Message string `json:"message"`
				} `json:"error"`
			}
			var b body
			b.Error.Code, b.Error.Message = why.Code(), msg
			buf, err := json.Marshal(b)
			if err != nil {
				panic(err) // cannot happen: strings only
			}
			out[why][c] = append(buf, '\n')
		}
	}
	return out
}
