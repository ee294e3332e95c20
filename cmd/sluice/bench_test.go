package main

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sluicehq/sluice/jobs"
	"github.com/sluicehq/sluice/jobs/sqlitestore"
)

// latencyLine is the line "sluice bench latency" ends with.
var latencyLine = regexp.MustCompile(`(?m)^latency: (\d+) jobs at (\d+)/s: p50 (\S+) p90 (\S+) p99 (\S+) max (\S+)$`)

// arrivalsLine is its report of the arrival schedule.
var arrivalsLine = regexp.MustCompile(`(?m)^arrivals: (\d+) due at (\S+)/s over (\S+): (\d+) enqueued \((\d+)/s achieved\), (\d+) late \(>1ms behind\), (\d+) missed \(>1s behind\), (\d+) enqueue errors, max lag \S+$`)

// checkLatencyOutput checks both lines of a latency run of due arrivals,
// and that the percentiles are in order.
func checkLatencyOutput(t *testing.T, out string, due int) {
	t.Helper()
	a := arrivalsLine.FindStringSubmatch(out)
	m := latencyLine.FindStringSubmatch(out)
	if a == nil || m == nil {
		t.Fatalf("output lacks the arrivals or latency line:\n%s", out)
	}
	if a[1] != strconv.Itoa(due) || a[8] != "0" {
		t.Fatalf("arrivals line: want %d due and 0 errors:\n%s", due, out)
	}
	if a[4] != m[1] || m[1] == "0" {
		t.Fatalf("every enqueued job must have a sample, and there must be some:\n%s", out)
	}
	var prev time.Duration
	for _, s := range m[3:] {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 || d < prev {
			t.Fatalf("percentiles not positive and ordered (%q): %v\n%s", s, err, out)
		}
		prev = d
	}
}

func TestBenchLatencySQLite(t *testing.T) {
	path := t.TempDir() + "/latency.db"
	var out, errOut bytes.Buffer
	args := []string{"bench", "latency", "--db", "sqlite:" + path, "--rate", "200", "--duration", "1s", "--concurrency", "10", "--enqueuers", "4"}
	if code := run(args, &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s\n%s", code, errOut.String(), out.String())
	}
	checkLatencyOutput(t, out.String(), 200)
	t.Log(strings.TrimSpace(out.String()))

	// The file now exists: a second run is refused.
	if code := run(args, &out, &errOut); code != 2 {
		t.Fatalf("reused file: exit %d, want 2", code)
	}
}

// TestBenchBurnRetryStorm checks that --fail makes every job fail its
// first attempts and succeed on the last, and that the report counts the
// attempts.
func TestBenchBurnRetryStorm(t *testing.T) {
	path := t.TempDir() + "/burn.db"
	var out, errOut bytes.Buffer
	const n, fail = 300, 2
	args := []string{"bench", "burn", "--db", "sqlite:" + path, "--jobs", strconv.Itoa(n), "--concurrency", "50",
		"--fail", strconv.Itoa(fail), "--backoff", "1ms"}
	if code := run(args, &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s\n%s", code, errOut.String(), out.String())
	}
	if !regexp.MustCompile(`(?m)^burn: 300 jobs in \S+s: \d+ jobs/s, 900 attempts: \d+ attempts/s$`).MatchString(out.String()) {
		t.Fatalf("unexpected output:\n%s", out.String())
	}
	ctx := context.Background()
	s, err := sqlitestore.Open(ctx, path, sqlitestore.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for id := int64(1); id <= n; id++ {
		j, err := s.Get(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if j.State != jobs.StateSucceeded || j.Attempt != fail+1 {
			t.Fatalf("job %d: %s after %d attempts, want succeeded after %d", id, j.State, j.Attempt, fail+1)
		}
	}
}

func TestBenchUsage(t *testing.T) {
	fresh := "sqlite:" + t.TempDir() + "/x.db"
	for _, bad := range [][]string{
		{"bench", "latency"},
		{"bench", "frobnicate"},
		{"bench", "latency", "--db", fresh, "--rate", "0"},
		{"bench", "latency", "--db", fresh, "--duration", "-1s"},
		{"bench", "latency", "--db", fresh, "--enqueuers", "0"},
		{"bench", "latency", "--db", fresh, "--queues", "0"},
		{"bench", "latency", "--db", fresh, "extra"},
		{"bench", "burn", "--db", fresh, "--schema", "s"},
		{"bench", "burn", "--db", fresh, "--keep"},
		{"bench", "burn", "--db", "postgres://127.0.0.1/"}, // no database named
		{"bench", "burn", "--db", "postgres://127.0.0.1/test", "--schema", "Bad-Name"},
		{"bench", "burn", "--db", "postgres://127.0.0.1/test", "--schema", "pg_x"},
		{"bench", "burn", "--db", "mysql://127.0.0.1/test"},
		{"bench", "burn", "--db", fresh, "--fail", "-1"},
		{"bench", "burn", "--db", fresh, "--fail", "101"},
		{"bench", "burn", "--db", fresh, "--fail", "1", "--backoff", "0s"},
	} {
		var out, errOut bytes.Buffer
		if code := run(bad, &out, &errOut); code != 2 {
			t.Errorf("%v: exit %d, want 2 (%s)", bad, code, errOut.String())
		}
	}
}

// benchPG returns $SLUICE_TEST_PG, skipping the test without it (failing
// when $SLUICE_TEST_PG_REQUIRED is set, as in CI).
func benchPG(t *testing.T) string {
	t.Helper()
	u := os.Getenv("SLUICE_TEST_PG")
	if u == "" {
		if os.Getenv("SLUICE_TEST_PG_REQUIRED") != "" {
			t.Fatal("SLUICE_TEST_PG_REQUIRED is set but SLUICE_TEST_PG is not: set SLUICE_TEST_PG=postgres://postgres@127.0.0.1:5432/test?sslmode=disable")
		}
		t.Skip("skipping the PostgreSQL bench test: set SLUICE_TEST_PG=postgres://postgres@127.0.0.1:5432/test?sslmode=disable to run it")
	}
	return u
}

// pgExec runs statements on url, failing the test on error.
func pgExec(t *testing.T, url string, stmts ...string) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	for _, s := range stmts {
		if _, err := conn.Exec(ctx, s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
}

// schemaExists reports whether schema exists on url.
func schemaExists(t *testing.T, url, schema string) bool {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var ok bool
	if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)`, schema).Scan(&ok); err != nil {
		t.Fatal(err)
	}
	return ok
}

func TestBenchBurnPostgres(t *testing.T) {
	url := benchPG(t)
	schema := fmt.Sprintf("sluice_burntest_%06x", rand.N(1<<24))
	t.Cleanup(func() { pgExec(t, url, "DROP SCHEMA IF EXISTS "+schema+" CASCADE") })

	var out, errOut bytes.Buffer
	if code := run([]string{"bench", "burn", "--db", url, "--schema", schema, "--jobs", "2000"}, &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	if !regexp.MustCompile(`(?m)^insert: 2000 jobs in \S+s: \d+ jobs/s\nburn: 2000 jobs in \S+s: \d+ jobs/s$`).MatchString(out.String()) {
		t.Fatalf("output %q", out.String())
	}
	if schemaExists(t, url, schema) {
		t.Fatalf("schema %s left behind without --keep", schema)
	}

	// --keep leaves the schema, and a second run into it is refused.
	out.Reset()
	if code := run([]string{"bench", "burn", "--db", url, "--schema", schema, "--jobs", "100", "--keep"}, &out, &errOut); code != 0 {
		t.Fatalf("--keep: exit %d: %s", code, errOut.String())
	}
	if !schemaExists(t, url, schema) {
		t.Fatalf("--keep: schema %s dropped", schema)
	}
	errOut.Reset()
	if code := run([]string{"bench", "burn", "--db", url, "--schema", schema, "--jobs", "100"}, &out, &errOut); code != 2 || !strings.Contains(errOut.String(), "fresh or empty schema") {
		t.Fatalf("non-empty schema: exit %d, want 2: %s", code, errOut.String())
	}
	if !schemaExists(t, url, schema) {
		t.Fatal("a refused run dropped the schema it refused")
	}

	// An existing empty schema is accepted (and dropped at the end).
	pgExec(t, url, "DROP SCHEMA "+schema+" CASCADE", "CREATE SCHEMA "+schema)
	if code := run([]string{"bench", "burn", "--db", url, "--schema", schema, "--jobs", "100"}, &out, &errOut); code != 0 {
		t.Fatalf("empty schema: exit %d: %s", code, errOut.String())
	}
	if schemaExists(t, url, schema) {
		t.Fatalf("schema %s left behind", schema)
	}
}

func TestBenchLatencyPostgres(t *testing.T) {
	url := benchPG(t)
	schema := fmt.Sprintf("sluice_latencytest_%06x", rand.N(1<<24))
	t.Cleanup(func() { pgExec(t, url, "DROP SCHEMA IF EXISTS "+schema+" CASCADE") })
	var out, errOut bytes.Buffer
	if code := run([]string{"bench", "latency", "--db", url, "--schema", schema, "--rate", "100", "--duration", "1s", "--concurrency", "10", "--enqueuers", "4"}, &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s\n%s", code, errOut.String(), out.String())
	}
	checkLatencyOutput(t, out.String(), 100)
	t.Log(strings.TrimSpace(out.String()))
	if schemaExists(t, url, schema) {
		t.Fatalf("schema %s left behind", schema)
	}
}
