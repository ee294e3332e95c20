package main

// Helpers of the end-to-end tests (e2e_test.go): they build the real
// binary, run "sluice serve" as a child process on a loopback port with
// its own SQLite file, talk to it over plain HTTP, and stand up test HTTP
// targets that record every delivery.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// e2eBin is the binary built for this test run. It is built by the first
// test that needs it and removed when the last test using it ends (a later
// test builds it again, from the build cache).
var e2eBin struct {
	mu    sync.Mutex
	users int    // guarded by mu: tests holding path
	dir   string // guarded by mu
	path  string // guarded by mu; "" until built
	err   error  // guarded by mu; a failed build is not retried
}

// sluiceBinary returns the path of the sluice binary built from this
// package, building it on first use.
func sluiceBinary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end test: builds and runs the binary")
	}
	e2eBin.mu.Lock()
	defer e2eBin.mu.Unlock()
	if e2eBin.err != nil {
		t.Fatalf("building sluice: %v", e2eBin.err)
	}
	if e2eBin.path == "" {
		e2eBin.err = buildSluice()
		if e2eBin.err != nil {
			t.Fatalf("building sluice: %v", e2eBin.err)
		}
	}
	e2eBin.users++
	t.Cleanup(func() {
		e2eBin.mu.Lock()
		defer e2eBin.mu.Unlock()
		if e2eBin.users--; e2eBin.users == 0 {
			_ = os.RemoveAll(e2eBin.dir)
			e2eBin.dir, e2eBin.path = "", ""
		}
	})
	return e2eBin.path
}

// buildSluice runs "go build" on this package; e2eBin.mu is held.
func buildSluice() error {
	gotool, err := exec.LookPath("go")
	if err != nil {
		//lint:ignore SA1019 only a fallback for when go is not on PATH
		gotool = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	dir, err := os.MkdirTemp("", "sluice-e2e-")
	if err != nil {
		return err
	}
	bin := filepath.Join(dir, "sluice")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, gotool, "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		_ = os.RemoveAll(dir)
		return fmt.Errorf("%s build: %v\n%s", gotool, err, out)
	}
	e2eBin.dir, e2eBin.path = dir, bin
	return nil
}

// syncBuffer is a bytes.Buffer safe for concurrent use: the child's
// stderr is written by exec's copying goroutine and read by the test.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer // guarded by mu
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// serverOpts configures a "sluice serve" child process.
type serverOpts struct {
	db           string   // SQLite file; "" means a new file in t.TempDir()
	token        string   // --token
	allowPrivate bool     // --allow-private-targets
	queues       string   // --queues; "" means the default queue
	extra        []string // more flags
}

// e2eServer is a running "sluice serve" child process.
type e2eServer struct {
	url    string // http://127.0.0.1:<port>
	db     string
	token  string
	cmd    *exec.Cmd
	stderr *syncBuffer
	done   chan struct{} // closed by the waiting goroutine when the process exited
	err    error         // cmd.Wait's result; read after done is closed
	http   *http.Client
}

// startServer starts "sluice serve" on a free loopback port and waits
// until /readyz answers 200. The process is killed (if still running) and
// its stderr logged on failure when the test ends.
func startServer(t *testing.T, o serverOpts) *e2eServer {
	t.Helper()
	bin := sluiceBinary(t)
	if o.db == "" {
		o.db = filepath.Join(t.TempDir(), "sluice.db")
	}
	for try := 1; ; try++ {
		s, retry := tryStartServer(t, bin, o)
		if s != nil {
			return s
		}
		if !retry || try == 5 {
			t.Fatalf("sluice serve did not start (try %d)", try)
		}
	}
}

// freePort returns a loopback port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return port
}

// serverEnv is the environment of a child: ours without SLUICE_*, so
// that only the flags given configure it.
func serverEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "SLUICE_") {
			env = append(env, kv)
		}
	}
	return env
}

// tryStartServer makes one attempt; retry reports a lost race for the port.
func tryStartServer(t *testing.T, bin string, o serverOpts) (s *e2eServer, retry bool) {
	t.Helper()
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t)))
	args := []string{"serve", "--addr", addr, "--db", "sqlite:" + o.db}
	if o.token != "" {
		args = append(args, "--token", o.token)
	}
	if o.allowPrivate {
		args = append(args, "--allow-private-targets")
	}
	if o.queues != "" {
		args = append(args, "--queues", o.queues)
	}
	args = append(args, o.extra...)
	s = &e2eServer{
		url:    "http://" + addr,
		db:     o.db,
		token:  o.token,
		stderr: &syncBuffer{},
		done:   make(chan struct{}),
		http:   &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{}},
	}
	s.cmd = exec.Command(bin, args...)
	s.cmd.Env = serverEnv()
	s.cmd.Stdout = s.stderr
	s.cmd.Stderr = s.stderr
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	go func() {
		s.err = s.cmd.Wait()
		close(s.done)
	}()
	t.Cleanup(func() {
		select {
		case <-s.done:
		default:
			_ = s.cmd.Process.Kill()
		}
		select {
		case <-s.done:
		case <-time.After(10 * time.Second):
			t.Errorf("%s: pid %d did not exit after SIGKILL", s.url, s.cmd.Process.Pid)
		}
		s.http.CloseIdleConnections()
		if t.Failed() {
			t.Logf("sluice serve %s (pid %d) output:\n%s", strings.Join(args, " "), s.cmd.Process.Pid, s.stderr.String())
		}
	})

	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-s.done:
			out := s.stderr.String()
			if strings.Contains(out, "address already in use") {
				t.Logf("port of %s was taken; trying another", addr)
				return nil, true
			}
			t.Fatalf("sluice serve exited before ready (%v):\n%s", s.err, out)
		case <-time.After(20 * time.Millisecond):
		}
		resp, err := s.http.Get(s.url + "/readyz")
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return s, false
			}
		}
	}
	t.Fatalf("sluice serve on %s not ready within 20s:\n%s", addr, s.stderr.String())
	return nil, false
}

// signal sends sig to the server process.
func (s *e2eServer) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if err := s.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signal %v: %v", sig, err)
	}
}

// wait waits at most d for the process to exit and returns its exit code.
func (s *e2eServer) wait(d time.Duration) (code int, ok bool) {
	select {
	case <-s.done:
		return s.cmd.ProcessState.ExitCode(), true
	case <-time.After(d):
		return -1, false
	}
}

// apiResponse is one answer of the server.
type apiResponse struct {
	Status int
	Header http.Header
	Body   []byte
}

// apiError is the API's error body.
type apiError struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
		Field   string `json:"field"`
	} `json:"error"`
}

// errorBody decodes r's body as an API error ("" fields if it is not one).
func (r apiResponse) errorBody() apiError {
	var e apiError
	_ = json.Unmarshal(r.Body, &e)
	return e
}

func (r apiResponse) String() string {
	return fmt.Sprintf("%d %s", r.Status, bytes.TrimSpace(r.Body))
}

// request sends one request. body is sent as it is: a string or []byte,
// or anything else encoded as JSON. Headers without a value are removed
// (so {"Authorization": ""} sends no token); otherwise the server's token
// is sent, and Content-Type: application/json with a body.
func (s *e2eServer) request(t *testing.T, method, path string, body any, headers map[string]string) apiResponse {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		data, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, s.url+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if s.token != "" {
		req.Header.Set("Authorization", "Bearer "+s.token)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range headers {
		if v == "" {
			req.Header.Del(k)
		} else {
			req.Header.Set(k, v)
		}
	}
	resp, err := s.http.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading the answer: %v", method, path, err)
	}
	return apiResponse{Status: resp.StatusCode, Header: resp.Header, Body: data}
}

// e2eJob is a job as the API answers it (the fields the tests look at).
type e2eJob struct {
	ID             int64           `json:"id"`
	Kind           string          `json:"kind"`
	Queue          string          `json:"queue"`
	Payload        json.RawMessage `json:"payload"`
	IdempotencyKey string          `json:"idempotency_key"`
	RunAt          time.Time       `json:"run_at"`
	Deadline       *time.Time      `json:"deadline"`
	MaxAttempts    int             `json:"max_attempts"`
	State          string          `json:"state"`
	Attempt        int             `json:"attempt"`
	LastError      string          `json:"last_error"`
	Reason         string          `json:"reason"`
	UpdatedAt      time.Time       `json:"updated_at"`
	FinishedAt     *time.Time      `json:"finished_at"`
	Duplicate      bool            `json:"duplicate"`
}

func (j e2eJob) terminal() bool {
	switch j.State {
	case "succeeded", "failed", "canceled", "expired", "shed":
		return true
	}
	return false
}

func (j e2eJob) String() string {
	return fmt.Sprintf("job %d: %s attempt %d/%d last_error=%q reason=%q", j.ID, j.State, j.Attempt, j.MaxAttempts, j.LastError, j.Reason)
}

// enqueue enqueues one job into queue and fails the test unless the
// answer is 201 Created.
func (s *e2eServer) enqueue(t *testing.T, queue string, job any) e2eJob {
	t.Helper()
	r := s.request(t, "POST", "/v1/queues/"+queue+"/jobs", job, nil)
	if r.Status != http.StatusCreated {
		t.Fatalf("enqueue into %s: %s", queue, r)
	}
	var j e2eJob
	if err := json.Unmarshal(r.Body, &j); err != nil {
		t.Fatalf("enqueue answer %s: %v", r, err)
	}
	return j
}

// job reads one job.
func (s *e2eServer) job(t *testing.T, id int64) e2eJob {
	t.Helper()
	r := s.request(t, "GET", "/v1/jobs/"+strconv.FormatInt(id, 10), nil, nil)
	if r.Status != http.StatusOK {
		t.Fatalf("get job %d: %s", id, r)
	}
	var j e2eJob
	if err := json.Unmarshal(r.Body, &j); err != nil {
		t.Fatalf("job answer %s: %v", r, err)
	}
	return j
}

// waitJob polls job id until it is terminal, for at most d.
func (s *e2eServer) waitJob(t *testing.T, id int64, d time.Duration) e2eJob {
	t.Helper()
	var j e2eJob
	waitFor(t, d, func() (bool, string) {
		j = s.job(t, id)
		return j.terminal(), j.String()
	})
	return j
}

// waitFor polls cond every 25ms for at most d and fails the test with
// cond's last description if it never holds.
func waitFor(t *testing.T, d time.Duration, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		ok, what := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("still not done after %v: %s", d, what)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// delivery is one request a target received.
type delivery struct {
	JobID    int64
	Attempt  int
	Key      string // Idempotency-Key
	Queue    string // Sluice-Queue
	Deadline string // Sluice-Deadline
	Method   string
	Path     string
	Header   http.Header
	Body     []byte
	N        int       // deliveries of this job so far, this one included
	At       time.Time // when it arrived
	Ended    time.Time // when the handler returned
	Aborted  bool      // the client hung up (or the test ended) before the handler answered
}

// target is a test HTTP endpoint that records deliveries; respond
// answers them. It is closed when the test ends.
type target struct {
	*httptest.Server
	stop chan struct{} // closed at the end of the test: ends waits in handlers

	mu         sync.Mutex
	deliveries []*delivery // guarded by mu
	perJob     map[int64]int
}

// respondFunc answers a delivery. It may block with t.sleep.
type respondFunc func(tg *target, w http.ResponseWriter, r *http.Request, d *delivery)

// newTarget starts a target on 127.0.0.1.
func newTarget(t *testing.T, respond respondFunc) *target {
	t.Helper()
	tg := &target{stop: make(chan struct{}), perJob: map[int64]int{}}
	tg.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		id, _ := strconv.ParseInt(r.Header.Get("Sluice-Job-Id"), 10, 64)
		attempt, _ := strconv.Atoi(r.Header.Get("Sluice-Attempt"))
		d := &delivery{
			JobID: id, Attempt: attempt, Key: r.Header.Get("Idempotency-Key"), Queue: r.Header.Get("Sluice-Queue"),
			Deadline: r.Header.Get("Sluice-Deadline"), Method: r.Method, Path: r.URL.Path, Header: r.Header.Clone(), Body: body, At: time.Now(),
		}
		tg.mu.Lock()
		tg.perJob[id]++
		d.N = tg.perJob[id]
		tg.deliveries = append(tg.deliveries, d)
		tg.mu.Unlock()
		respond(tg, w, r, d)
		tg.mu.Lock()
		d.Ended = time.Now()
		if r.Context().Err() != nil {
			d.Aborted = true
		}
		tg.mu.Unlock()
	}))
	t.Cleanup(func() {
		close(tg.stop)
		tg.CloseClientConnections()
		tg.Close()
	})
	return tg
}

// sleep waits d, or until the client hangs up or the test ends; it
// reports whether the whole d passed.
func (tg *target) sleep(r *http.Request, d time.Duration) bool {
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
		return true
	case <-r.Context().Done():
	case <-tg.stop:
	}
	return false
}

// all returns a copy of the deliveries so far.
func (tg *target) all() []delivery {
	tg.mu.Lock()
	defer tg.mu.Unlock()
	out := make([]delivery, len(tg.deliveries))
	for i, d := range tg.deliveries {
		out[i] = *d
	}
	return out
}

// count returns how many deliveries arrived.
func (tg *target) count() int {
	tg.mu.Lock()
	defer tg.mu.Unlock()
	return len(tg.deliveries)
}

// of returns the deliveries of one job.
func (tg *target) of(id int64) []delivery {
	var out []delivery
	for _, d := range tg.all() {
		if d.JobID == id {
			out = append(out, d)
		}
	}
	return out
}

// httpJob is the body of an enqueue of an "http" job to url, with more
// fields merged in.
func httpJob(url string, more map[string]any) map[string]any {
	j := map[string]any{"kind": "http", "payload": map[string]any{"url": url}}
	for k, v := range more {
		j[k] = v
	}
	return j
}

// exitError describes a process exit for messages.
func exitError(err error) string {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.String()
	}
	return fmt.Sprint(err)
}
