package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
)

// HTTPServerConfig holds the optional knobs of [Service.AddHTTPServer]. The
// zero value listens on TCP at the server's Addr.
type HTTPServerConfig struct {
	// Listen opens the listener when the component starts, so that a bind
	// failure fails Start. Nil means net.ListenConfig.Listen(ctx, "tcp",
	// srv.Addr), where an empty Addr means ":http". For TLS, wrap the
	// listener with tls.NewListener here.
	Listen func(ctx context.Context) (net.Listener, error)
}

// HTTPServer is an http.Server run as a component by [Service.AddHTTPServer].
//
// Shutdown phases: at phase 3 it calls http.Server.Shutdown, which closes
// the listener and idle connections (Quiesce returns once the listener is
// closed). In phase 4 it waits for Shutdown to finish; at the drain deadline
// it cancels the server's BaseContext, so every handler's r.Context() is
// done, calls Close to drop the connections, and waits for every handler to
// return; the canceled requests are reported as an error. Shutdown alone
// would return at its deadline and leave handlers running.
type HTTPServer struct {
	svc    *Service
	name   string
	srv    *http.Server
	listen func(ctx context.Context) (net.Listener, error)

	base       context.Context // BaseContext of srv: child of svc.WorkContext
	cancelBase context.CancelFunc
	inflight   inflight

	mu             sync.Mutex
	ln             *closeListener     // guarded by mu; set by start
	cancelShutdown context.CancelFunc // guarded by mu; set by quiesce
	shutdownExited chan struct{}      // guarded by mu; closed by the Shutdown goroutine
}

// AddHTTPServer adds srv as a component named name and returns it. The
// listener opens at Start (a bind failure fails Start), and Serve runs as a
// task: an error from it other than http.ErrServerClosed is fatal.
//
// The service takes srv over: it wraps srv.Handler (nil means
// http.DefaultServeMux) to count handlers in flight, at the cost of one
// mutex lock per request start and end, and it sets srv.BaseContext to a
// child of WorkContext (a BaseContext already set is still called, and its
// context is canceled with ours). Do not call srv's Serve, Shutdown or Close
// yourself. Hijacked connections are not tracked after the hijack.
func (s *Service) AddHTTPServer(name string, srv *http.Server, cfg HTTPServerConfig) *HTTPServer {
	h := &HTTPServer{svc: s, name: name, srv: srv, listen: cfg.Listen}
	if h.listen == nil {
		h.listen = func(ctx context.Context) (net.Listener, error) {
			addr := srv.Addr
			if addr == "" {
				addr = ":http"
			}
			var lc net.ListenConfig
			return lc.Listen(ctx, "tcp", addr)
		}
	}
	h.base, h.cancelBase = context.WithCancel(s.WorkContext())
	userBase := srv.BaseContext
	srv.BaseContext = func(l net.Listener) context.Context {
		if userBase == nil {
			return h.base
		}
		ctx, cancel := context.WithCancel(userBase(l))
		context.AfterFunc(h.base, cancel)
		return ctx
	}
	next := srv.Handler
	if next == nil {
		next = http.DefaultServeMux
	}
	srv.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.inflight.add()
		defer func() { h.inflight.done(h.base.Err() != nil) }()
		next.ServeHTTP(w, r)
	})
	s.addEntry(&entry{name: name, start: h.start, quiesce: h.quiesce, drain: h.drain, end: h.stop})
	return h
}

// Addr returns the address the server listens on, or nil before it started.
func (h *HTTPServer) Addr() net.Addr {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.ln == nil {
		return nil
	}
	return h.ln.Addr()
}

func (h *HTTPServer) start(ctx context.Context) error {
	ln, err := h.listen(ctx)
	if err != nil {
		return err
	}
	cl := &closeListener{Listener: ln, closed: make(chan struct{})}
	h.mu.Lock()
	h.ln = cl
	h.mu.Unlock()
	err = h.svc.Go(h.name, func(context.Context) error {
		err := h.srv.Serve(cl)
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return fmt.Errorf("serve: %w", err)
	})
	if err != nil {
		_ = cl.Close()
		return err
	}
	return nil
}

// quiesce starts http.Server.Shutdown in a goroutine owned by h (drain and
// stop end it) and returns once the listener is closed.
func (h *HTTPServer) quiesce(ctx context.Context) error {
	sctx, cancel := context.WithCancel(context.Background())
	exited := make(chan struct{})
	h.mu.Lock()
	ln := h.ln
	h.cancelShutdown, h.shutdownExited = cancel, exited
	h.mu.Unlock()
	go func() {
		defer close(exited)
		_ = h.srv.Shutdown(sctx) // its result is seen through exited and inflight
	}()
	select {
	case <-ln.closed:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (h *HTTPServer) drain(ctx context.Context) error {
	h.mu.Lock()
	cancel, exited := h.cancelShutdown, h.shutdownExited
	h.mu.Unlock()
	if exited == nil {
		return nil
	}
	select {
	case <-exited: // every connection went idle
	case <-ctx.Done():
		h.cancelBase()
		_ = h.srv.Close()
		cancel()
		<-exited
	}
	// WorkContext may have been canceled at the same deadline, so count the
	// handlers that were still running when the base context ended.
	if canceled := h.inflight.wait(); canceled > 0 {
		return fmt.Errorf("%d requests canceled at the drain deadline: %w", canceled, context.DeadlineExceeded)
	}
	return nil
}

func (h *HTTPServer) stop(context.Context) error {
	h.cancelBase()
	_ = h.srv.Close()
	h.mu.Lock()
	cancel, exited := h.cancelShutdown, h.shutdownExited
	h.mu.Unlock()
	if cancel != nil {
		cancel()
		<-exited
	}
	return nil
}

// closeListener tells when the server has closed its listener.
type closeListener struct {
	net.Listener
	once   sync.Once
	closed chan struct{} // closed by the first Close
}

func (l *closeListener) Close() error {
	err := l.Listener.Close()
	l.once.Do(func() { close(l.closed) })
	return err
}

// inflight counts running handlers; wait blocks until there are none.
type inflight struct {
	mu       sync.Mutex
	n        int           // guarded by mu
	canceled int           // guarded by mu; handlers that returned after the base context ended
	zero     chan struct{} // guarded by mu; made by wait, closed by done when n reaches 0
}

func (f *inflight) add() {
	f.mu.Lock()
	f.n++
	f.mu.Unlock()
}

func (f *inflight) done(canceled bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if canceled {
		f.canceled++
	}
	f.n--
	if f.n == 0 && f.zero != nil {
		close(f.zero)
		f.zero = nil
	}
}

// wait blocks until no handler runs and returns how many were canceled.
func (f *inflight) wait() (canceled int) {
	f.mu.Lock()
	if f.n == 0 {
		defer f.mu.Unlock()
		return f.canceled
	}
	if f.zero == nil {
		f.zero = make(chan struct{})
	}
	z := f.zero
	f.mu.Unlock()
	<-z
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.canceled
}

// ReadyzHandler returns a handler for a readiness probe: 200 "ok" while
// [Service.Ready], 503 otherwise (starting, or shutting down from phase 1).
func (s *Service) ReadyzHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		if s.Ready() {
			_, _ = io.WriteString(w, "ok\n")
			return
		}
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = io.WriteString(w, "not ready\n")
	})
}

// HealthzHandler returns a handler for a liveness probe: always 200 "ok",
// also during shutdown, so that an orchestrator does not kill a process
// that is draining.
func (s *Service) HealthzHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		_, _ = io.WriteString(w, "ok\n")
	})
}
