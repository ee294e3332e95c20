package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/sluicehq/sluice/admit"
	"github.com/sluicehq/sluice/httpapi"
	"github.com/sluicehq/sluice/httptarget"
	"github.com/sluicehq/sluice/jobs"
	"github.com/sluicehq/sluice/jobs/pgstore"
	"github.com/sluicehq/sluice/jobs/sqlitestore"
	"github.com/sluicehq/sluice/lifecycle"
)

// serveConfig is everything "sluice serve" can be told, by flag or by its
// SLUICE_* environment variable (the flag wins).
type serveConfig struct {
	Addr            string
	DB              string
	Token           string
	Queues          []string
	ShutdownTimeout time.Duration
	DrainDelay      time.Duration
	MaxBody         int64
	MaxInFlight     int
	Retention       time.Duration // 0: keep finished jobs forever
	AllowPrivate    bool
	LogLevel        slog.Level
}

const serveUsage = `Usage: sluice serve [flags]

Runs the durable job server: the HTTP API, workers for the configured
queues, and the built-in "http" job kind. Every flag can also be set with
the environment variable shown.
`

// parseServe reads flags, falling back to SLUICE_* variables.
func parseServe(args []string, env func(string) string, stderr io.Writer) (serveConfig, error) {
	var c serveConfig
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, serveUsage)
		fs.PrintDefaults()
	}
	def := func(name, fallback string) string {
		if v := env(name); v != "" {
			return v
		}
		return fallback
	}
	var queues, shutdown, drain, maxBody, inflight, level, retention string
	allowDefault := false
	var err error
	if v := env("SLUICE_ALLOW_PRIVATE_TARGETS"); v != "" {
		b, e := strconv.ParseBool(v)
		if e != nil {
			err = fmt.Errorf("SLUICE_ALLOW_PRIVATE_TARGETS: %q is not a boolean", v)
		}
		allowDefault = b
	}
	fs.StringVar(&c.Addr, "addr", def("SLUICE_ADDR", "127.0.0.1:8080"), "listen address (SLUICE_ADDR)")
	fs.StringVar(&c.DB, "db", def("SLUICE_DB", "sqlite:sluice.db"), "database: sqlite:<file> or postgres://... (SLUICE_DB)")
	fs.StringVar(&c.Token, "token", def("SLUICE_TOKEN", ""), "bearer token required by the API; needed to listen beyond loopback (SLUICE_TOKEN)")
	fs.StringVar(&queues, "queues", def("SLUICE_QUEUES", jobs.DefaultQueue), "comma-separated queues this node works (SLUICE_QUEUES)")
	fs.StringVar(&shutdown, "shutdown-timeout", def("SLUICE_SHUTDOWN_TIMEOUT", "25s"), "bound on the whole graceful shutdown (SLUICE_SHUTDOWN_TIMEOUT)")
	fs.StringVar(&drain, "drain-delay", def("SLUICE_DRAIN_DELAY", "0s"), "time to keep serving after readiness goes false, at most 3/5 of --shutdown-timeout (SLUICE_DRAIN_DELAY)")
	fs.StringVar(&maxBody, "max-body", def("SLUICE_MAX_BODY", "1048576"), "largest request body in bytes (SLUICE_MAX_BODY)")
	fs.StringVar(&inflight, "max-in-flight", def("SLUICE_MAX_IN_FLIGHT", "256"), "bound on API requests served at once (SLUICE_MAX_IN_FLIGHT)")
	fs.BoolVar(&c.AllowPrivate, "allow-private-targets", allowDefault, "let http jobs reach loopback, private and link-local addresses (SLUICE_ALLOW_PRIVATE_TARGETS)")
	fs.StringVar(&retention, "retention", def("SLUICE_RETENTION", jobs.DefaultRetention.String()), "how long finished jobs stay readable before they are deleted; 0 keeps them forever (SLUICE_RETENTION)")
	fs.StringVar(&level, "log-level", def("SLUICE_LOG_LEVEL", "info"), "debug, info, warn or error (SLUICE_LOG_LEVEL)")
	if perr := fs.Parse(args); perr != nil {
		return c, perr
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	parseDur := func(name, v string) time.Duration {
		d, e := time.ParseDuration(v)
		if e != nil || d < 0 {
			err = errors.Join(err, fmt.Errorf("--%s: %q is not a non-negative duration", name, v))
		}
		return d
	}
	c.ShutdownTimeout = parseDur("shutdown-timeout", shutdown)
	c.DrainDelay = parseDur("drain-delay", drain)
	switch {
	case c.ShutdownTimeout == 0:
		err = errors.Join(err, errors.New("--shutdown-timeout: must be positive"))
	case c.DrainDelay > c.ShutdownTimeout*3/5:
		err = errors.Join(err, fmt.Errorf("--drain-delay (%v) may take at most 3/5 of --shutdown-timeout (%v): the drain delay is part of the shutdown, whose last fifth is for stopping components, and in-flight work needs at least a fifth to finish", c.DrainDelay, c.ShutdownTimeout))
	}
	c.Retention = parseDur("retention", retention)
	if n, e := strconv.ParseInt(maxBody, 10, 64); e != nil || n <= 0 {
		err = errors.Join(err, fmt.Errorf("--max-body: %q is not a positive number of bytes", maxBody))
	} else {
		c.MaxBody = n
	}
	if n, e := strconv.Atoi(inflight); e != nil || n <= 0 {
		err = errors.Join(err, fmt.Errorf("--max-in-flight: %q is not a positive number", inflight))
	} else {
		c.MaxInFlight = n
	}
	if e := c.LogLevel.UnmarshalText([]byte(level)); e != nil {
		err = errors.Join(err, fmt.Errorf("--log-level: %q is not a level", level))
	}
	for _, q := range strings.Split(queues, ",") {
		if q = strings.TrimSpace(q); q != "" {
			c.Queues = append(c.Queues, q)
		}
	}
	if len(c.Queues) == 0 {
		err = errors.Join(err, errors.New("--queues: at least one queue"))
	}
	if err == nil && c.Token == "" && !loopbackAddr(c.Addr) {
		err = fmt.Errorf("refusing to listen on %s without --token (SLUICE_TOKEN): the API would be open to the network", c.Addr)
	}
	return c, err
}

// loopbackAddr reports whether addr listens only on a loopback interface.
func loopbackAddr(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// openStore opens the database named by --db.
func openStore(ctx context.Context, db string, log *slog.Logger) (jobs.Store, error) {
	switch {
	case strings.HasPrefix(db, "sqlite:"):
		return sqlitestore.Open(ctx, strings.TrimPrefix(db, "sqlite:"), sqlitestore.Config{})
	case strings.HasPrefix(db, "postgres://"), strings.HasPrefix(db, "postgresql://"):
		return pgstore.Open(ctx, db, pgstore.Config{Logger: log})
	}
	return nil, fmt.Errorf("--db %q: want sqlite:<file> or a postgres:// URL", db)
}

// runServe is "sluice serve": it returns the process exit status.
func runServe(args []string, stdout, stderr io.Writer) int {
	cfg, err := parseServe(args, os.Getenv, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "sluice serve:", err)
		return 2
	}
	log := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: cfg.LogLevel}))
	svc, _, err := buildServer(context.Background(), cfg, log)
	if err != nil {
		log.Error("sluice serve: start failed", "err", err)
		return 1
	}
	return lifecycle.ExitCode(svc.Run(context.Background()))
}

// server is what buildServer assembled, for tests.
type server struct {
	store  jobs.Store
	worker *jobs.Worker
	http   *lifecycle.HTTPServer
}

// buildServer assembles the service: database (closed last), worker,
// HTTP API (stopped first).
func buildServer(ctx context.Context, cfg serveConfig, log *slog.Logger) (*lifecycle.Service, *server, error) {
	store, err := openStore(ctx, cfg.DB, log)
	if err != nil {
		return nil, nil, err
	}
	s := &server{store: store}
	svc := lifecycle.New(lifecycle.Config{ShutdownTimeout: cfg.ShutdownTimeout, DrainDelay: cfg.DrainDelay, Logger: log})
	svc.Add("database", lifecycle.Hook{OnStop: func(context.Context) error { return store.Close() }})

	m := newMetrics()
	reg := jobs.NewRegistry()
	targets := httptarget.New(httptarget.Config{AllowPrivate: cfg.AllowPrivate, Logger: log})
	targets.Register(reg)
	svc.Add("http-targets", lifecycle.Hook{OnStop: func(context.Context) error { targets.Close(); return nil }})
	retention := cfg.Retention
	if retention == 0 {
		retention = -1 // keep forever
	}
	s.worker = jobs.NewWorker(store, reg, jobs.WorkerConfig{Queues: cfg.Queues, Retention: retention, Logger: log, OnAttempt: m.onAttempt})
	svc.Add("worker", s.worker)

	lim := admit.New(admit.Config{MaxInFlight: cfg.MaxInFlight})
	svc.Add("admission", lifecycle.Hook{OnQuiesce: lim.Quiesce})
	m.store, m.queues, m.worker, m.lim, m.targets = store, cfg.Queues, s.worker, lim, targets
	promReg := prometheus.NewRegistry()
	promReg.MustRegister(m, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	// Enqueues waiting on a full queue (policy wait) give up when shutdown
	// begins, with 503 shutting_down, rather than hold the drain.
	stopping := make(chan struct{})
	stop := sync.OnceFunc(func() { close(stopping) })
	svc.Add("enqueue-waits", lifecycle.Hook{OnQuiesce: func(context.Context) error { stop(); return nil }})
	client := jobs.NewClient(countingStore{Store: store, m: m}, jobs.ClientConfig{Validate: validateJob, Stopping: stopping})
	api := httpapi.New(client, httpapi.Config{
		MaxBodyBytes: cfg.MaxBody,
		Token:        cfg.Token,
		Logger:       log,
		Ready:        svc.Ready,
		// /metrics bypasses admission control (below), so it has a bound
		// of its own: each scrape queries the database once per queue.
		Metrics: promhttp.HandlerFor(promReg, promhttp.HandlerOpts{MaxRequestsInFlight: 4, Timeout: 10 * time.Second}),
	})
	mux := http.NewServeMux()
	// Liveness, readiness and metrics bypass admission control: an
	// overloaded server is alive, its readiness must stay observable, and
	// its metrics are what shows the overload. Authentication comes first,
	// so that an unauthenticated request learns nothing from admission.
	mux.Handle("GET /healthz", api)
	mux.Handle("GET /readyz", api)
	mux.Handle("GET /metrics", api.Authenticate(api))
	mux.Handle("/", api.Authenticate(lim.Middleware(api)))
	hs := &http.Server{Addr: cfg.Addr, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	s.http = svc.AddHTTPServer("http", hs, lifecycle.HTTPServerConfig{})
	log.Info("sluice serve: configured", "addr", cfg.Addr, "db", redactDB(cfg.DB), "queues", cfg.Queues, "auth", cfg.Token != "")
	return svc, s, nil
}

// validateJob refuses at enqueue a job of a built-in kind whose payload
// its handler could never run, naming the field (400 from the API).
func validateJob(j *jobs.NewJob) error {
	if j.Kind == httptarget.Kind {
		_, err := httptarget.ParseRequest(j.Payload)
		return err
	}
	return nil
}

// redactDB hides a password in a database URL for logs.
func redactDB(db string) string {
	if i := strings.Index(db, "://"); i >= 0 {
		if at := strings.LastIndex(db, "@"); at > i {
			if colon := strings.Index(db[i+3:at], ":"); colon >= 0 {
				return db[:i+3+colon] + ":xxxxx" + db[at:]
			}
		}
	}
	return db
}
