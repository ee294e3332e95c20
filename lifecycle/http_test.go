package lifecycle

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// pipeListener is an in-memory net.Listener: each dial makes a net.Pipe, so
// connections block durably inside a synctest bubble.
type pipeListener struct {
	conns  chan net.Conn
	closed chan struct{} // closed by Close
	once   sync.Once
}

func newPipeListener() *pipeListener {
	return &pipeListener{conns: make(chan net.Conn), closed: make(chan struct{})}
}

func (l *pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *pipeListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

func (l *pipeListener) Addr() net.Addr { return pipeAddr{} }

func (l *pipeListener) dial(ctx context.Context, _, _ string) (net.Conn, error) {
	client, server := net.Pipe()
	select {
	case l.conns <- server:
		return client, nil
	case <-l.closed:
		return nil, errors.New("connection refused")
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

type pipeAddr struct{}

func (pipeAddr) Network() string { return "pipe" }
func (pipeAddr) String() string  { return "pipe" }

// httpService is a service with one HTTP server on a pipe listener and a
// client for it.
func httpService(t *testing.T, cfg Config, h http.Handler) (*Service, *HTTPServer, *http.Client) {
	t.Helper()
	ln := newPipeListener()
	cfg.Logger = quiet()
	cfg.Signals = []os.Signal{}
	svc := New(cfg)
	hs := svc.AddHTTPServer("http", &http.Server{Handler: h}, HTTPServerConfig{
		Listen: func(context.Context) (net.Listener, error) { return ln, nil },
	})
	tr := &http.Transport{DialContext: ln.dial}
	t.Cleanup(tr.CloseIdleConnections)
	return svc, hs, &http.Client{Transport: tr}
}

type response struct {
	code int
	body string
	err  error
}

func fetch(client *http.Client, url string) <-chan response {
	c := make(chan response, 1)
	go func() {
		resp, err := client.Get(url)
		if err != nil {
			c <- response{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		c <- response{resp.StatusCode, string(b), err}
	}()
	return c
}

func TestHTTPInFlightRequestFinishesDuringDrain(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		svc, hs, client := httpService(t, Config{}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-time.After(2 * time.Second):
				_, _ = io.WriteString(w, "done")
			case <-r.Context().Done():
				http.Error(w, "canceled", http.StatusServiceUnavailable)
			}
		}))
		if err := svc.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		if hs.Addr() == nil {
			t.Fatal("Addr is nil after Start")
		}
		resc := fetch(client, "http://pipe/")
		synctest.Wait() // the handler is in flight
		t0 := time.Now()
		if err := svc.Stop(); err != nil {
			t.Fatalf("Stop = %v", err)
		}
		// Shutdown polls with jittered backoff (at most 500ms + 10%).
		if d := time.Since(t0); d < 2*time.Second || d > 3*time.Second {
			t.Fatalf("Stop took %v, want the handler's 2s plus a poll interval", d)
		}
		if r := <-resc; r.err != nil || r.code != http.StatusOK || r.body != "done" {
			t.Fatalf("response = %+v, want 200 done", r)
		}
	})
}

func TestHTTPHandlerCanceledAtDrainDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var t0 time.Time
		var canceledAt time.Duration
		returned := make(chan struct{})
		svc, _, client := httpService(t, Config{DrainTimeout: 5 * time.Second}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			defer close(returned)
			<-r.Context().Done()
			canceledAt = time.Since(t0)
			http.Error(w, "canceled", http.StatusServiceUnavailable)
		}))
		if err := svc.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		resc := fetch(client, "http://pipe/")
		synctest.Wait()
		t0 = time.Now()
		err := svc.Stop()
		if d := time.Since(t0); d != 5*time.Second {
			t.Fatalf("Stop took %v, want the 5s drain deadline", d)
		}
		select {
		case <-returned:
		default:
			t.Fatal("Stop returned before the handler did")
		}
		if canceledAt != 5*time.Second {
			t.Fatalf("r.Context() done after %v, want 5s", canceledAt)
		}
		var ce *ComponentError
		if !errors.As(err, &ce) || ce.Name != "http" || ce.Op != OpDrain || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Stop = %v, want the http drain error", err)
		}
		if !strings.Contains(err.Error(), "1 requests canceled") {
			t.Fatalf("error %q does not count the canceled request", err)
		}
		// The handler's 503 reaches the client unless Close dropped the
		// connection first.
		if r := <-resc; r.err == nil && r.code != http.StatusServiceUnavailable {
			t.Fatalf("client got %+v, want 503 or a dropped connection", r)
		}
	})
}

func TestHTTPStopsAcceptingAtQuiesce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var client *http.Client
		var during response
		cfg := Config{OnPhase: func(p Phase, _ time.Time) {
			if p == PhaseDrain {
				during = <-fetch(client, "http://pipe/")
			}
		}}
		var svc *Service
		svc, _, client = httpService(t, cfg, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.WriteString(w, "ok")
		}))
		if err := svc.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		if r := <-fetch(client, "http://pipe/"); r.err != nil || r.code != http.StatusOK {
			t.Fatalf("before shutdown: %+v", r)
		}
		client.Transport.(*http.Transport).CloseIdleConnections()
		if err := svc.Stop(); err != nil {
			t.Fatal(err)
		}
		if during.err == nil {
			t.Fatalf("request after quiesce got %+v, want refused", during)
		}
	})
}

func TestHTTPBindFailureFailsStart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := &recorder{}
		bindErr := errors.New("address already in use")
		svc := New(Config{Logger: quiet()})
		svc.Add("db", startStop(r, "db"))
		svc.AddHTTPServer("http", &http.Server{}, HTTPServerConfig{
			Listen: func(context.Context) (net.Listener, error) { return nil, bindErr },
		})
		err := svc.Start(context.Background())
		var ce *ComponentError
		if !errors.Is(err, bindErr) || !errors.As(err, &ce) || ce.Name != "http" || ce.Op != OpStart {
			t.Fatalf("Start = %v, want the bind error", err)
		}
		if got := r.events(); len(got) != 2 || got[1] != "stop db" {
			t.Fatalf("events = %q, want db rolled back", got)
		}
	})
}

// failingListener's Accept fails with a permanent error.
type failingListener struct{ pipeListener }

var errAccept = errors.New("accept: too many open files")

func (*failingListener) Accept() (net.Conn, error) { return nil, errAccept }

func TestHTTPServeErrorIsFatal(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		svc := New(Config{Logger: quiet(), Signals: []os.Signal{}})
		svc.AddHTTPServer("http", &http.Server{}, HTTPServerConfig{
			Listen: func(context.Context) (net.Listener, error) {
				return &failingListener{*newPipeListener()}, nil
			},
		})
		err := svc.Run(context.Background())
		var ce *ComponentError
		if !errors.Is(err, errAccept) || !errors.As(err, &ce) || ce.Name != "http" || ce.Op != OpTask {
			t.Fatalf("Run = %v, want the Serve error as fatal", err)
		}
	})
}

func TestHTTPDefaultListenOnLoopback(t *testing.T) {
	svc := New(Config{Logger: quiet(), Signals: []os.Signal{}})
	hs := svc.AddHTTPServer("http", &http.Server{Addr: "127.0.0.1:0"}, HTTPServerConfig{})
	if hs.Addr() != nil {
		t.Fatal("Addr before Start")
	}
	if err := svc.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if a, ok := hs.Addr().(*net.TCPAddr); !ok || a.Port == 0 {
		t.Fatalf("Addr = %v", hs.Addr())
	}
	if err := svc.Stop(); err != nil {
		t.Fatal(err)
	}
}
