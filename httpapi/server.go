package httpapi

import (
	"crypto/sha256"
	"crypto/subtle"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/sluicehq/sluice/jobs"
)

// Config holds a Server's optional settings. The zero value works: no
// authentication, 1 MiB bodies, logs to slog.Default(), always ready, no
// /metrics.
type Config struct {
	// MaxBodyBytes bounds a request body; a larger one is refused with 413
	// payload_too_large. Zero or negative means DefaultMaxBodyBytes.
	MaxBodyBytes int64
	// MaxBatch bounds the jobs of one batch enqueue. Zero or negative
	// means DefaultMaxBatch.
	MaxBatch int
	// Token, when not empty, is the bearer token every /v1/ request and
	// /metrics must carry (Authorization: Bearer <token>); a request
	// without it, or with another, gets 401. /healthz and /readyz never
	// need it. The comparison takes constant time; the token is never
	// logged.
	Token string
	// Logger receives the server's logs: job ids and queue names at Debug
	// (enqueue) or Info (cancel, queue changes), the details of 500s at
	// Error. Never tokens, payloads or idempotency keys. Nil means
	// slog.Default().
	Logger *slog.Logger
	// Ready reports readiness for GET /readyz (200 when true, 503 when
	// false). Nil means always ready.
	Ready func() bool
	// Metrics, when not nil, is served at GET /metrics (behind Token).
	Metrics http.Handler
	// RetryAfter is the Retry-After sent with a 503 (store unavailable,
	// shutting down, not ready). Zero or negative means 1s. A 429 for a
	// full queue sends the queue's own estimate instead.
	RetryAfter time.Duration
	// Now is the clock of request checks (a deadline must be in the
	// future); give it the jobs.Client's clock. Nil means time.Now.
	Now func() time.Time
}

// Defaults of Config.
const (
	DefaultMaxBodyBytes = 1 << 20
	DefaultMaxBatch     = 1000
)

// Server is the JSON API of a Sluice job server over a *jobs.Client. It
// is an http.Handler, safe for concurrent use, and holds no goroutines:
// nothing to stop. The endpoints, the error table and the wire
// conventions are in docs/api.md.
type Server struct {
	jobs      *jobs.Client
	cfg       Config
	log       *slog.Logger
	tokenHash [sha256.Size]byte // of cfg.Token, when set
	mux       *http.ServeMux
}

// route is one endpoint.
type route struct {
	pattern string // Go 1.22 ServeMux pattern, with its method
	handler func(s *Server, w http.ResponseWriter, r *http.Request)
	public  bool // served without the token
}

// routes lists every endpoint; docs/openapi.yaml must describe each (a
// test checks).
var routes = []route{
	{"POST /v1/queues/{queue}/jobs", (*Server).enqueue, false},
	{"GET /v1/jobs", (*Server).listJobs, false},
	{"GET /v1/jobs/{id}", (*Server).getJob, false},
	{"POST /v1/jobs/{id}/cancel", (*Server).cancelJob, false},
	{"GET /v1/groups/{name}", (*Server).getGroup, false},
	{"GET /v1/queues", (*Server).listQueues, false},
	{"GET /v1/queues/{name}", (*Server).getQueue, false},
	{"PUT /v1/queues/{name}", (*Server).putQueue, false},
	{"POST /v1/queues/{name}/pause", (*Server).pauseQueue, false},
	{"POST /v1/queues/{name}/resume", (*Server).resumeQueue, false},
	{"GET /healthz", (*Server).healthz, true},
	{"GET /readyz", (*Server).readyz, true},
	{"GET /metrics", (*Server).metrics, false},
}

// New returns the API over c, which it does not own (closing the store is
// the caller's business). It panics if c is nil.
func New(c *jobs.Client, cfg Config) *Server {
	if c == nil {
		panic("httpapi: New with a nil *jobs.Client")
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if cfg.MaxBatch <= 0 {
		cfg.MaxBatch = DefaultMaxBatch
	}
	if cfg.RetryAfter <= 0 {
		cfg.RetryAfter = time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	s := &Server{jobs: c, cfg: cfg, log: cfg.Logger, mux: http.NewServeMux()}
	if s.log == nil {
		s.log = slog.Default()
	}
	if cfg.Token != "" {
		s.tokenHash = sha256.Sum256([]byte(cfg.Token))
	}
	for _, rt := range routes {
		if rt.pattern == "GET /metrics" && cfg.Metrics == nil {
			continue
		}
		s.mux.HandleFunc(rt.pattern, s.wrap(rt))
	}
	return s
}

// wrap adds authentication to a route's handler.
func (s *Server) wrap(rt route) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !rt.public && s.cfg.Token != "" && !s.authorized(r) {
			s.fail(w, r, errUnauthorized)
			return
		}
		rt.handler(s, w, r)
	}
}

// Authenticate returns next behind the API's authentication: when the
// server has a Token, a request for a path the token protects (under /v1/,
// and /metrics) that does not carry it is answered 401 here, before next
// sees it. Put it outside other middleware (admission control, say), so
// that an unauthenticated client learns nothing from it. The API's own
// routes check the token too, so the API is safe without it.
func (s *Server) Authenticate(next http.Handler) http.Handler {
	if s.cfg.Token == "" {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if (strings.HasPrefix(r.URL.Path, "/v1/") || r.URL.Path == "/metrics") && !s.authorized(r) {
			s.fail(w, r, errUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// authorized reports whether r carries the bearer token. Both sides are
// hashed first so that the comparison takes the same time whatever the
// lengths.
func (s *Server) authorized(r *http.Request) bool {
	scheme, cred, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return false
	}
	got := sha256.Sum256([]byte(strings.TrimSpace(cred)))
	return subtle.ConstantTimeCompare(got[:], s.tokenHash[:]) == 1
}

// ServeHTTP serves the API. Requests that match no endpoint get a JSON
// 404 not_found, or a JSON 405 method_not_allowed with Allow when the
// path exists with other methods.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if h, pattern := s.mux.Handler(r); pattern == "" {
		// ServeMux's own 404 or 405 answer, in plain text: record its
		// status and Allow header, and answer in JSON instead.
		rec := &headerRecorder{header: http.Header{}}
		h.ServeHTTP(rec, r)
		if rec.status == http.StatusMethodNotAllowed {
			w.Header().Set("Allow", rec.header.Get("Allow"))
			s.fail(w, r, errMethodNotAllowed)
			return
		}
		s.fail(w, r, errRouteNotFound)
		return
	}
	s.mux.ServeHTTP(w, r)
}

// headerRecorder records a status and headers and drops the body.
type headerRecorder struct {
	header http.Header
	status int
}

func (h *headerRecorder) Header() http.Header { return h.header }
func (h *headerRecorder) Write(b []byte) (int, error) {
	if h.status == 0 {
		h.status = http.StatusOK
	}
	return len(b), nil
}
func (h *headerRecorder) WriteHeader(status int) {
	if h.status == 0 {
		h.status = status
	}
}
