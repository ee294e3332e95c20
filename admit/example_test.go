package admit_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/sluicehq/sluice/admit"
)

// The middleware in front of a handler: admitted requests reach it,
// carrying the deadline from the Sluice-Deadline header.
func Example() {
	lim := admit.New(admit.Config{MaxInFlight: 64})
	api := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		deadline, ok := r.Context().Deadline()
		fmt.Fprintf(w, "hello; deadline set: %v, within 2s: %v", ok, time.Until(deadline) <= 2*time.Second)
	})
	h := lim.Middleware(api) // e.g. &http.Server{Handler: h}

	req := httptest.NewRequest("GET", "/jobs/42", nil)
	req.Header.Set("Sluice-Priority", "critical")
	req.Header.Set("Sluice-Deadline", "2s")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	fmt.Println(rec.Code, rec.Body.String())
	// Output: 200 hello; deadline set: true, within 2s: true
}

// Under overload, sheddable requests are refused first, then default ones;
// critical ones may use every slot. Refusals are 429 with Retry-After and
// a JSON body, and the request body is never read.
func Example_priorities() {
	// 10 slots: sheddable admitted below 5 in flight, default below 9.
	lim := admit.New(admit.Config{MaxInFlight: 10})
	h := lim.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	probe := func(class string) {
		req := httptest.NewRequest("POST", "/jobs", strings.NewReader(`{"big":"payload"}`))
		req.Header.Set("Sluice-Priority", class)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		line := fmt.Sprintln(" ", class, rec.Code, rec.Header().Get("Retry-After"), rec.Body.String())
		fmt.Println(strings.TrimRight(line, " \n"))
	}
	occupy := func(n int) { // stand-ins for long requests in flight
		for range n {
			lim.Acquire(context.Background(), admit.ClassCritical)
		}
	}

	occupy(5)
	fmt.Println("5 in flight:")
	probe("sheddable")
	probe("default")
	occupy(4)
	fmt.Println("9 in flight:")
	probe("default")
	probe("critical")
	// Output:
	// 5 in flight:
	//   sheddable 429 1 {"error":{"code":"overloaded","message":"the server is overloaded and refuses sheddable requests; retry after the delay in Retry-After"}}
	//   default 200
	// 9 in flight:
	//   default 429 1 {"error":{"code":"overloaded","message":"the server is overloaded and refuses default requests; retry after the delay in Retry-After"}}
	//   critical 200
}

// Shutdown: Close (lifecycle's stop-accepting phase) makes new requests
// fail with 503 while admitted ones finish; Wait returns when they have.
func ExampleLimiter_Close() {
	lim := admit.New(admit.Config{})
	h := lim.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))

	lim.Acquire(context.Background(), admit.ClassDefault) // a request still being served
	lim.Close()

	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	fmt.Println(rec.Code, rec.Header().Get("Retry-After"), strings.TrimSpace(rec.Body.String()))

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	fmt.Println("wait:", lim.Wait(ctx))
	cancel()

	lim.Release(admit.ClassDefault) // the request finishes
	fmt.Println("wait:", lim.Wait(context.Background()))
	// Output:
	// 503 1 {"error":{"code":"shutting_down","message":"the server is shutting down and accepts no new requests; retry after the delay in Retry-After, preferably on another instance"}}
	// wait: context deadline exceeded
	// wait: <nil>
}

// Bad headers are answered 400 with a stable code; a deadline already
// past is answered 504, without calling the handler.
func Example_badHeaders() {
	h := admit.New(admit.Config{}).Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Println("not reached")
	}))
	for _, hdr := range [][2]string{
		{"Sluice-Priority", "urgent"},
		{"Sluice-Deadline", "soon"},
		{"Sluice-Deadline", "2001-01-01T00:00:00Z"},
	} {
		req := httptest.NewRequest("GET", "/", nil)
		req.Header.Set(hdr[0], hdr[1])
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		fmt.Println(rec.Code, rec.Body.String()[:strings.Index(rec.Body.String(), `,"message"`)]+"...")
	}
	// Output:
	// 400 {"error":{"code":"bad_priority"...
	// 400 {"error":{"code":"bad_deadline"...
	// 504 {"error":{"code":"deadline_exceeded"...
}

// Acquire and Release guard work that is not an HTTP request, with the
// same classes and limits; a refusal is a *RefusedError.
func ExampleLimiter_Acquire() {
	lim := admit.New(admit.Config{MaxInFlight: 2}) // sheddable limit 1
	ctx := context.Background()

	if err := lim.Acquire(ctx, admit.ClassDefault); err != nil {
		fmt.Println(err)
		return
	}
	defer lim.Release(admit.ClassDefault)

	err := lim.Acquire(ctx, admit.ClassSheddable)
	var re *admit.RefusedError
	if errors.As(err, &re) {
		fmt.Println(errors.Is(err, admit.ErrOverloaded), re.Reason, re.Class, re.Reason.Status(), re.RetryAfter >= admit.MinRetryAfter)
	}
	// Output: true overloaded sheddable 429 true
}
