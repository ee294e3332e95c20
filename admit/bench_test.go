package admit_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/sluicehq/sluice/admit"
)

// discard is a minimal ResponseWriter whose header map is reused.
type discard struct {
	h    http.Header
	code int
}

func (d *discard) Header() http.Header         { return d.h }
func (d *discard) Write(p []byte) (int, error) { return len(p), nil }
func (d *discard) WriteHeader(code int)        { d.code = code }

var noop = http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})

// BenchmarkRefuse measures a 429 refusal of a default request by a
// saturated Limiter: header parsing, the decision, the Retry-After
// estimate and the response.
func BenchmarkRefuse(b *testing.B) {
	lim := admit.New(admit.Config{MaxInFlight: 1})
	if err := lim.Acquire(context.Background(), admit.ClassCritical); err != nil {
		b.Fatal(err)
	}
	h := lim.Middleware(noop)
	req := httptest.NewRequest("POST", "/jobs", nil)
	req.Header.Set("Sluice-Priority", "default")
	w := &discard{h: make(http.Header)}
	b.ReportAllocs()
	for b.Loop() {
		clear(w.h)
		h.ServeHTTP(w, req)
	}
	if w.code != http.StatusTooManyRequests {
		b.Fatal(w.code)
	}
	lim.Release(admit.ClassCritical)
}

// BenchmarkRefuseParallel is BenchmarkRefuse from GOMAXPROCS goroutines.
func BenchmarkRefuseParallel(b *testing.B) {
	lim := admit.New(admit.Config{MaxInFlight: 1})
	if err := lim.Acquire(context.Background(), admit.ClassCritical); err != nil {
		b.Fatal(err)
	}
	h := lim.Middleware(noop)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		req := httptest.NewRequest("POST", "/jobs", nil)
		req.Header.Set("Sluice-Priority", "sheddable")
		w := &discard{h: make(http.Header)}
		for pb.Next() {
			clear(w.h)
			h.ServeHTTP(w, req)
		}
		if w.code != 0 && w.code != http.StatusTooManyRequests {
			b.Error(w.code)
		}
	})
	lim.Release(admit.ClassCritical)
}

// BenchmarkAdmit measures the middleware's overhead on an admitted
// request (the handler does nothing).
func BenchmarkAdmit(b *testing.B) {
	h := admit.New(admit.Config{}).Middleware(noop)
	req := httptest.NewRequest("GET", "/jobs/1", nil)
	req.Header.Set("Sluice-Priority", "default")
	w := &discard{h: make(http.Header)}
	b.ReportAllocs()
	for b.Loop() {
		h.ServeHTTP(w, req)
	}
}

// BenchmarkAdmitDeadline is BenchmarkAdmit with a Sluice-Deadline header,
// which costs a derived context and a shallow copy of the request.
func BenchmarkAdmitDeadline(b *testing.B) {
	h := admit.New(admit.Config{}).Middleware(noop)
	req := httptest.NewRequest("GET", "/jobs/1", nil)
	req.Header.Set("Sluice-Priority", "default")
	req.Header.Set("Sluice-Deadline", "2s")
	w := &discard{h: make(http.Header)}
	b.ReportAllocs()
	for b.Loop() {
		h.ServeHTTP(w, req)
	}
}

// BenchmarkAdmitParallel is BenchmarkAdmit from GOMAXPROCS goroutines
// sharing one Limiter.
func BenchmarkAdmitParallel(b *testing.B) {
	h := admit.New(admit.Config{}).Middleware(noop)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		req := httptest.NewRequest("GET", "/jobs/1", nil)
		w := &discard{h: make(http.Header)}
		for pb.Next() {
			h.ServeHTTP(w, req)
		}
	})
}
