package httptarget

import (
	"context"
	"log/slog"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/failsafe-go/failsafe-go/adaptivelimiter"
	"github.com/failsafe-go/failsafe-go/circuitbreaker"
)

// Counts are what the handler did, per host and in total. Every call of
// Work that got past payload validation counts once in exactly one of the
// fields from Succeeded on; Sent counts the requests among them that were
// handed to the network.
type Counts struct {
	Sent           uint64 // requests written to the target (success or not)
	Succeeded      uint64 // 2xx
	Retried        uint64 // retryable failures of sent requests: 408, 429, 5xx, timeouts, connection errors
	Failed         uint64 // permanent failures: other 4xx, 3xx, refused addresses
	Limited        uint64 // not sent: the host's concurrency limit was reached
	ShortCircuited uint64 // not sent: the host's breaker was open
	Paused         uint64 // not sent: the host asked for a pause with Retry-After
	Canceled       uint64 // the job's context ended (cancel, deadline, shutdown) before an answer
}

// HostStats is a snapshot of one target host's guards, for a metrics
// adapter. Plain values; taking it does not block requests.
type HostStats struct {
	Host string // "hostname:port"
	// Adaptive concurrency: the current limit, requests in flight, and
	// jobs waiting for a permit.
	Limit, Inflight, Queued int
	// Breaker is "closed", "open" or "half-open"; BreakerDelay is how long
	// an open breaker stays open.
	Breaker      string
	BreakerDelay time.Duration
	// PausedFor is what is left of a pause asked with Retry-After.
	PausedFor time.Duration
	Counts
}

// Stats is a snapshot of the handler: totals since New, and the hosts it
// currently tracks, sorted by name. Hosts idle for long may be forgotten
// (see Config.MaxHosts); their counts stay in Total.
type Stats struct {
	Total Counts
	Hosts []HostStats
}

// counters is Counts updated atomically.
type counters struct {
	sent, succeeded, retried, failed, limited, shortCircuited, paused, canceled atomic.Uint64
}

func (c *counters) snapshot() Counts {
	return Counts{
		Sent: c.sent.Load(), Succeeded: c.succeeded.Load(), Retried: c.retried.Load(), Failed: c.failed.Load(),
		Limited: c.limited.Load(), ShortCircuited: c.shortCircuited.Load(), Paused: c.paused.Load(), Canceled: c.canceled.Load(),
	}
}

// host holds one target host's guards.
type host struct {
	name    string
	limiter adaptivelimiter.AdaptiveLimiter[any]
	breaker circuitbreaker.CircuitBreaker[any]
	counts  counters

	users       int          // guarded by Handler.mu: Work calls using this host now
	lastUsed    time.Time    // guarded by Handler.mu
	pausedUntil atomic.Int64 // unix nanoseconds; 0: not paused
}

// hostKey is the guard key of a URL: lower-case hostname and port, with
// the scheme's default port filled in.
func hostKey(u *url.URL) string {
	port := u.Port()
	if port == "" {
		port = "80"
		if u.Scheme == "https" {
			port = "443"
		}
	}
	h := normHost(u.Hostname())
	if strings.Contains(h, ":") {
		return "[" + h + "]:" + port
	}
	return h + ":" + port
}

// acquireHost returns the host's guards, creating them if needed, and
// marks them in use until releaseHost.
func (h *Handler) acquireHost(name string) *host {
	h.mu.Lock()
	defer h.mu.Unlock()
	hs := h.hosts[name]
	if hs == nil {
		if len(h.hosts) >= h.cfg.MaxHosts {
			h.evictIdleLocked()
		}
		hs = h.newHost(name)
		h.hosts[name] = hs
	}
	hs.users++
	hs.lastUsed = h.cfg.Now()
	return hs
}

func (h *Handler) releaseHost(hs *host) {
	h.mu.Lock()
	hs.users--
	h.mu.Unlock()
}

// evictIdleLocked forgets hosts that nobody uses now and whose guards hold
// no state worth keeping (breaker closed, no pause): the oldest first,
// until a quarter of MaxHosts is free.
func (h *Handler) evictIdleLocked() {
	now := h.cfg.Now()
	var idle []*host
	for _, hs := range h.hosts {
		if hs.users == 0 && hs.breaker.IsClosed() && hs.pausedUntil.Load() <= now.UnixNano() {
			idle = append(idle, hs)
		}
	}
	slices.SortFunc(idle, func(a, b *host) int { return a.lastUsed.Compare(b.lastUsed) })
	for _, hs := range idle {
		if len(h.hosts) < h.cfg.MaxHosts*3/4 {
			break
		}
		delete(h.hosts, hs.name)
	}
}

func (h *Handler) newHost(name string) *host {
	lc, bc := h.cfg.Limiter, h.cfg.Breaker
	log := h.cfg.Logger.With("host", name)
	lb := adaptivelimiter.NewBuilder[any]().
		WithLimits(lc.Min, lc.Max, lc.Initial).
		OnLimitChanged(func(e adaptivelimiter.LimitChangedEvent) {
			log.Debug("httptarget: concurrency limit changed", "from", e.OldLimit, "to", e.NewLimit)
		})
	cb := circuitbreaker.NewBuilder[any]().
		WithFailureThresholdRatio(bc.Failures, bc.Window).
		WithSuccessThreshold(bc.Successes).
		WithDelay(bc.Delay).
		WithJitterFactor(bc.JitterFactor).
		OnStateChanged(func(e circuitbreaker.StateChangedEvent) {
			lvl := slog.LevelInfo
			if e.NewState == circuitbreaker.OpenState {
				lvl = slog.LevelWarn
			}
			log.Log(context.Background(), lvl, "httptarget: circuit breaker "+e.NewState.String(), "from", e.OldState.String())
		})
	return &host{name: name, limiter: lb.Build(), breaker: cb.Build()}
}

// pausedFor returns what is left of the host's Retry-After pause.
func (hs *host) pausedFor(now time.Time) time.Duration {
	until := hs.pausedUntil.Load()
	if until == 0 {
		return 0
	}
	return max(0, time.Duration(until-now.UnixNano()))
}

// pause extends the host's pause to now+d unless it already ends later.
func (hs *host) pause(now time.Time, d time.Duration) {
	until := now.Add(d).UnixNano()
	for {
		cur := hs.pausedUntil.Load()
		if cur >= until || hs.pausedUntil.CompareAndSwap(cur, until) {
			return
		}
	}
}

// Stats returns a snapshot of the handler's counters and of every host it
// tracks. Safe for concurrent use; it holds the handler's lock only to
// list the hosts.
func (h *Handler) Stats() Stats {
	h.mu.Lock()
	hosts := make([]*host, 0, len(h.hosts))
	for _, hs := range h.hosts {
		hosts = append(hosts, hs)
	}
	h.mu.Unlock()
	now := h.cfg.Now()
	st := Stats{Total: h.total.snapshot(), Hosts: make([]HostStats, 0, len(hosts))}
	for _, hs := range hosts {
		st.Hosts = append(st.Hosts, HostStats{
			Host:         hs.name,
			Limit:        hs.limiter.Limit(),
			Inflight:     hs.limiter.Inflight(),
			Queued:       hs.limiter.Queued(),
			Breaker:      hs.breaker.State().String(),
			BreakerDelay: hs.breaker.RemainingDelay(),
			PausedFor:    hs.pausedFor(now),
			Counts:       hs.counts.snapshot(),
		})
	}
	slices.SortFunc(st.Hosts, func(a, b HostStats) int { return strings.Compare(a.Host, b.Host) })
	return st
}
