package lifecycle

// Subprocess tests: the test binary re-executes itself with testServiceEnv
// set (TestMain then runs testServiceMain instead of the tests), and the test
// drives it with real signals and real HTTP on 127.0.0.1.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const testServiceEnv = "LIFECYCLE_TEST_SERVICE"

// testServiceMain is a small service: a fake database, an HTTP server with a
// slow endpoint and probes, a background worker. It prints "addr ADDR",
// "inflight" per slow request, "phase P" per phase, and component events on
// stdout, logs on stderr, and exits through Main.
func testServiceMain(mode string) {
	var mu sync.Mutex
	say := func(format string, a ...any) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintf(os.Stdout, format+"\n", a...)
	}
	cfg := Config{
		Logger:          slog.New(slog.NewTextHandler(os.Stderr, nil)),
		DrainDelay:      1500 * time.Millisecond,
		ShutdownTimeout: 10 * time.Second,
		OnPhase:         func(p Phase, _ time.Time) { say("phase %s", p) },
	}
	switch mode {
	case "stuck":
		cfg.DrainDelay, cfg.ShutdownTimeout, cfg.Margin = 0, time.Second, 200*time.Millisecond
	case "stuck-long":
		cfg.DrainDelay, cfg.ShutdownTimeout = 0, 30*time.Second
	}
	svc := New(cfg)
	svc.Add("db", Hook{
		OnStart: func(context.Context) error { say("db open"); return nil },
		OnStop:  func(context.Context) error { say("db closed"); return nil },
	})
	if strings.HasPrefix(mode, "stuck") {
		svc.Add("stuckcache", Hook{OnStop: func(context.Context) error {
			say("stuckcache stopping")
			<-make(chan struct{}) // ignores its context
			return nil
		}})
	}
	mux := http.NewServeMux()
	mux.Handle("GET /readyz", svc.ReadyzHandler())
	mux.Handle("GET /healthz", svc.HealthzHandler())
	mux.HandleFunc("GET /slow", func(w http.ResponseWriter, r *http.Request) {
		say("inflight")
		select {
		case <-time.After(2 * time.Second):
			_, _ = io.WriteString(w, "done")
		case <-r.Context().Done():
			http.Error(w, "canceled", http.StatusServiceUnavailable)
		}
	})
	h := svc.AddHTTPServer("http", &http.Server{Addr: "127.0.0.1:0", Handler: mux, ReadHeaderTimeout: 5 * time.Second}, HTTPServerConfig{})
	svc.Add("announce", Hook{OnStart: func(context.Context) error { say("addr %s", h.Addr()); return nil }})
	_ = svc.Go("worker", func(ctx context.Context) error {
		t := time.NewTicker(10 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				say("worker stopped")
				return nil
			case <-t.C:
			}
		}
	})
	if mode == "panic" {
		_ = svc.Go("boom", func(context.Context) error { panic("boom in task") })
	}
	Main(svc)
}

// child is a running test service.
type child struct {
	t      *testing.T
	cmd    *exec.Cmd
	lines  chan string // stdout lines; closed at EOF
	stderr *syncBuffer
	seen   []string
	exited chan struct{} // closed when cmd.Wait returned
	err    error         // cmd.Wait's result, valid after exited
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// startChildReading starts the test service in mode. One goroutine reads
// its stdout into c.lines, then reaps it; the cleanup kills it if a test
// failed early, so nothing outlives the test.
func startChildReading(t *testing.T, mode string) *child {
	t.Helper()
	if testing.Short() {
		t.Skip("subprocess test")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), testServiceEnv+"="+mode)
	cmd.WaitDelay = 5 * time.Second
	c := &child{t: t, cmd: cmd, lines: make(chan string, 1000), stderr: &syncBuffer{}, exited: make(chan struct{})}
	cmd.Stderr = c.stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	go func() {
		defer close(c.exited)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			c.lines <- sc.Text() // the child prints far fewer lines than the buffer holds
		}
		close(c.lines)
		c.err = cmd.Wait()
	}()
	t.Cleanup(func() {
		cancel()
		<-c.exited
		if t.Failed() {
			t.Logf("child stdout: %q\nchild stderr:\n%s", c.seen, c.stderr.String())
		}
	})
	return c
}

// expect reads stdout lines until one starts with prefix and returns it.
func (c *child) expect(prefix string) string {
	c.t.Helper()
	timeout := time.After(20 * time.Second)
	for {
		select {
		case line, ok := <-c.lines:
			if !ok {
				c.t.Fatalf("child stdout ended before %q", prefix)
			}
			c.seen = append(c.seen, line)
			if strings.HasPrefix(line, prefix) {
				return line
			}
		case <-timeout:
			c.t.Fatalf("no line %q from the child within 20s", prefix)
		}
	}
}

// wait waits for the child to exit and returns cmd.Wait's error.
func (c *child) wait(timeout time.Duration) error {
	c.t.Helper()
	select {
	case <-c.exited:
		return c.err
	case <-time.After(timeout):
		c.t.Fatalf("child still running after %v", timeout)
		return nil
	}
}

func TestProcessGracefulShutdown(t *testing.T) {
	c := startChildReading(t, "graceful")
	addr := strings.TrimPrefix(c.expect("addr "), "addr ")
	base := "http://" + addr
	client := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

	type result struct {
		code int
		body string
		err  error
	}
	const n = 3
	results := make(chan result, n)
	for range n {
		go func() {
			resp, err := client.Get(base + "/slow")
			if err != nil {
				results <- result{err: err}
				return
			}
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			results <- result{resp.StatusCode, string(b), err}
		}()
	}
	for range n {
		c.expect("inflight")
	}
	if code := get(t, client, base+"/readyz"); code != http.StatusOK {
		t.Fatalf("readyz before SIGTERM = %d", code)
	}
	sigAt := time.Now()
	if err := c.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// Readiness fails first, while the server still answers (drain delay).
	deadline := time.Now().Add(5 * time.Second)
	for get(t, client, base+"/readyz") != http.StatusServiceUnavailable {
		if time.Now().After(deadline) {
			t.Fatal("readyz never answered 503")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if code := get(t, client, base+"/healthz"); code != http.StatusOK {
		t.Fatalf("healthz during drain delay = %d, want 200", code)
	}
	for range n {
		r := <-results
		if r.err != nil || r.code != http.StatusOK || r.body != "done" {
			t.Fatalf("in-flight request: code %d body %q err %v, want 200 done", r.code, r.body, r.err)
		}
	}
	c.expect("worker stopped")
	c.expect("db closed")
	if err := c.wait(15 * time.Second); err != nil {
		t.Fatalf("exit: %v, want 0", err)
	}
	if d := time.Since(sigAt); d > 10*time.Second {
		t.Fatalf("exited %v after SIGTERM, want within ShutdownTimeout (10s)", d)
	}
	c.rest()
	// Phases in order; the worker stops after quiesce; the database closes
	// in phase 5, after everything that uses it.
	want := []string{"phase not-ready", "phase drain-delay", "phase quiesce", "worker stopped", "phase stop", "db closed", "phase stopped"}
	last := -1
	for _, w := range want {
		i := slices.Index(c.seen, w)
		if i <= last {
			t.Fatalf("stdout %q: %q missing or out of order, want order %q", c.seen, w, want)
		}
		last = i
	}
}

// rest reads the remaining stdout lines after the child exited.
func (c *child) rest() {
	for line := range c.lines {
		c.seen = append(c.seen, line)
	}
}

func TestProcessStuckComponentIsNamed(t *testing.T) {
	c := startChildReading(t, "stuck")
	c.expect("addr ")
	sigAt := time.Now()
	if err := c.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	err := c.wait(15 * time.Second)
	if code := exitCode(err); code != ExitError {
		t.Fatalf("exit: %v, want status 1", err)
	}
	if d := time.Since(sigAt); d > 8*time.Second {
		t.Fatalf("exited %v after SIGTERM; ShutdownTimeout is 1s", d)
	}
	stderr := c.stderr.String()
	if !strings.Contains(stderr, `stuckcache`) || !strings.Contains(stderr, "goroutine ") {
		t.Fatalf("stderr does not name the stuck component with its stack:\n%s", stderr)
	}
}

func TestProcessSecondSignalForcesExit(t *testing.T) {
	c := startChildReading(t, "stuck-long")
	c.expect("addr ")
	if err := c.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	c.expect("stuckcache stopping") // stuck for up to 30s now
	sigAt := time.Now()
	if err := c.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	err := c.wait(15 * time.Second)
	if code := exitCode(err); code != ExitForced {
		t.Fatalf("exit: %v, want status %d", err, ExitForced)
	}
	if d := time.Since(sigAt); d > 8*time.Second {
		t.Fatalf("exited %v after the second signal, want at once", d)
	}
	if stderr := c.stderr.String(); !strings.Contains(stderr, "stuckcache") {
		t.Fatalf("stderr does not name what was running:\n%s", stderr)
	}
}

func TestProcessTaskPanicCrashes(t *testing.T) {
	c := startChildReading(t, "panic")
	err := c.wait(15 * time.Second)
	if code := exitCode(err); code != 2 {
		t.Fatalf("exit: %v, want status 2 (unrecovered panic)", err)
	}
	if stderr := c.stderr.String(); !strings.Contains(stderr, "panic: boom in task") {
		t.Fatalf("stderr lacks the panic:\n%s", stderr)
	}
}

func get(t *testing.T, client *http.Client, url string) int {
	t.Helper()
	resp, err := client.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	return resp.StatusCode
}

func exitCode(err error) int {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	if err == nil {
		return 0
	}
	return -1
}
