package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/sluicehq/sluice/jobs"
	"github.com/sluicehq/sluice/jobs/sqlitestore"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// env is a Server over a real SQLite store in a temporary directory.
type env struct {
	t     *testing.T
	store *sqlitestore.Store
	jc    *jobs.Client
	srv   *Server
	logs  *syncBuffer
}

// syncBuffer is a bytes.Buffer safe for concurrent use, for logs.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func openStore(t testing.TB) *sqlitestore.Store {
	t.Helper()
	store, err := sqlitestore.Open(context.Background(), filepath.Join(t.TempDir(), "jobs.db"), sqlitestore.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	return store
}

func newEnv(t *testing.T, cfg Config) *env {
	t.Helper()
	return newEnvClient(t, cfg, jobs.ClientConfig{})
}

func newEnvClient(t *testing.T, cfg Config, ccfg jobs.ClientConfig) *env {
	t.Helper()
	e := &env{t: t, store: openStore(t), logs: &syncBuffer{}}
	e.jc = jobs.NewClient(e.store, ccfg)
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	e.srv = New(e.jc, cfg)
	return e
}

// do sends a request straight to the handler. hdr holds header name,
// value pairs; a body gets Content-Type: application/json unless hdr sets
// one.
func (e *env) do(method, path, body string, hdr ...string) *httptest.ResponseRecorder {
	e.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req := httptest.NewRequest(method, path, rd)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	rec := httptest.NewRecorder()
	e.srv.ServeHTTP(rec, req)
	return rec
}

// decodeAs decodes a response body as T.
func decodeAs[T any](t *testing.T, rec *httptest.ResponseRecorder) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(rec.Body.Bytes(), &v); err != nil {
		t.Fatalf("decode %q: %v", rec.Body.String(), err)
	}
	return v
}

// wantStatus fails the test unless rec has status.
func wantStatus(t *testing.T, rec *httptest.ResponseRecorder, status int) {
	t.Helper()
	if rec.Code != status {
		t.Fatalf("status %d, want %d: %s", rec.Code, status, rec.Body.String())
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" && !(status == http.StatusOK && ct != "") {
		t.Fatalf("Content-Type %q", ct)
	}
}

// wantError fails the test unless rec is an error response with status,
// code and (when not "-") field.
func wantError(t *testing.T, rec *httptest.ResponseRecorder, status int, code, field string) errorJSON {
	t.Helper()
	if rec.Code != status {
		t.Fatalf("status %d, want %d: %s", rec.Code, status, rec.Body.String())
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type %q, want application/json", ct)
	}
	body := decodeAs[errorBody](t, rec)
	if body.Error.Code != code {
		t.Fatalf("code %q, want %q: %s", body.Error.Code, code, rec.Body.String())
	}
	if field != "-" && body.Error.Field != field {
		t.Fatalf("field %q, want %q: %s", body.Error.Field, field, rec.Body.String())
	}
	if body.Error.Message == "" {
		t.Fatalf("empty message: %s", rec.Body.String())
	}
	return body.Error
}

// jobOut is a job response as a test reads it.
type jobOut struct {
	ID                   int64           `json:"id"`
	Kind                 string          `json:"kind"`
	Queue                string          `json:"queue"`
	Payload              json.RawMessage `json:"payload"`
	Priority             int             `json:"priority"`
	IdempotencyKey       string          `json:"idempotency_key"`
	RunAt                *string         `json:"run_at"`
	Deadline             *string         `json:"deadline"`
	AttemptTimeout       string          `json:"attempt_timeout"`
	MaxAttempts          int             `json:"max_attempts"`
	BackoffMin           string          `json:"backoff_min"`
	BackoffMax           string          `json:"backoff_max"`
	Group                string          `json:"group"`
	CancelGroupOnFailure bool            `json:"cancel_group_on_failure"`
	State                string          `json:"state"`
	Attempt              int             `json:"attempt"`
	LastError            string          `json:"last_error"`
	Reason               string          `json:"reason"`
	CreatedAt            *string         `json:"created_at"`
	UpdatedAt            *string         `json:"updated_at"`
	FinishedAt           *string         `json:"finished_at"`
	CancelRequested      bool            `json:"cancel_requested"`
	Duplicate            *bool           `json:"duplicate"`
	Error                *errorJSON      `json:"error"`
}

type queueOut struct {
	Name              string  `json:"name"`
	Concurrency       int     `json:"concurrency"`
	Capacity          int     `json:"capacity"`
	Policy            string  `json:"policy"`
	MaxWait           string  `json:"max_wait"`
	RateLimit         float64 `json:"rate_limit"`
	RateBurst         int     `json:"rate_burst"`
	Paused            bool    `json:"paused"`
	IdempotencyWindow string  `json:"idempotency_window"`
}
