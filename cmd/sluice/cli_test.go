package main

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/httpapi"
	"github.com/sluicehq/sluice/jobs"
	"github.com/sluicehq/sluice/jobs/sqlitestore"
)

// cliServer serves the API over a real SQLite store, behind token, and
// points $SLUICE_SERVER and $SLUICE_TOKEN at it.
func cliServer(t *testing.T, token string) *httptest.Server {
	t.Helper()
	store, err := sqlitestore.Open(context.Background(), filepath.Join(t.TempDir(), "jobs.db"), sqlitestore.Config{})
	if err != nil {
		t.Fatal(err)
	}
	api := httpapi.New(jobs.NewClient(store, jobs.ClientConfig{}), httpapi.Config{Token: token, Logger: slog.New(slog.DiscardHandler)})
	ts := httptest.NewServer(api)
	t.Cleanup(func() {
		ts.Close()
		store.Close()
	})
	t.Setenv(envServer, ts.URL)
	t.Setenv(envToken, token)
	return ts
}

// cli runs one command line and returns its exit status and outputs.
func cli(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	var code int
	switch args[0] {
	case "enqueue":
		code = runEnqueue(args[1:], &out, &errOut)
	case "job":
		code = runJob(args[1:], &out, &errOut)
	case "queue":
		code = runQueue(args[1:], &out, &errOut)
	default:
		t.Fatalf("no command %q", args[0])
	}
	return code, out.String(), errOut.String()
}

// ok runs a command that must succeed and decodes its JSON output.
func ok[T any](t *testing.T, args ...string) T {
	t.Helper()
	code, out, errOut := cli(t, args...)
	if code != 0 {
		t.Fatalf("%v: exit %d: %s", args, code, errOut)
	}
	if !strings.HasPrefix(out, "{\n  \"") {
		t.Fatalf("%v: output not indented JSON: %q", args, out)
	}
	var v T
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("%v: %v: %s", args, err, out)
	}
	return v
}

type cliJob struct {
	ID        int64           `json:"id"`
	Kind      string          `json:"kind"`
	Queue     string          `json:"queue"`
	Payload   json.RawMessage `json:"payload"`
	Priority  int             `json:"priority"`
	State     string          `json:"state"`
	Deadline  *string         `json:"deadline"`
	Duplicate *bool           `json:"duplicate"`
	Group     string          `json:"group"`
}

type cliQueue struct {
	Name        string `json:"name"`
	Concurrency int    `json:"concurrency"`
	Capacity    int    `json:"capacity"`
	Policy      string `json:"policy"`
	MaxWait     string `json:"max_wait"`
	Paused      bool   `json:"paused"`
}

func TestCLIJobs(t *testing.T) {
	cliServer(t, "cli-token")
	j := ok[cliJob](t, "enqueue", "--queue", "mail", "--priority", "4", "--deadline", "1h", "--key", "k", "email", `{"to":"ada@example.com"}`)
	if j.ID <= 0 || j.Kind != "email" || j.Queue != "mail" || j.Priority != 4 || j.Deadline == nil || compact(j.Payload) != `{"to":"ada@example.com"}` ||
		j.Duplicate == nil || *j.Duplicate {
		t.Fatalf("enqueued %+v", j)
	}
	// Flags after the positional arguments work too.
	d := ok[cliJob](t, "enqueue", "email", `{"to":"ada@example.com"}`, "--queue", "mail", "--key", "k")
	if d.ID != j.ID || !*d.Duplicate {
		t.Fatalf("repeat %+v", d)
	}
	payload := filepath.Join(t.TempDir(), "p.json")
	os.WriteFile(payload, []byte(`[1, 2]`), 0o600)
	p := ok[cliJob](t, "enqueue", "--group", "g", "sum", "@"+payload)
	if p.Queue != "default" || compact(p.Payload) != "[1,2]" || p.Group != "g" {
		t.Fatalf("payload from file: %+v", p)
	}
	batch := filepath.Join(t.TempDir(), "b.json")
	os.WriteFile(batch, []byte(`{"jobs":[{"kind":"a"},{"kind":"b","priority":9,"attempt_timeout":"2s"}]}`), 0o600)
	b := ok[struct{ Jobs []cliJob }](t, "enqueue", "--batch", batch, "--queue", "bulk")
	if len(b.Jobs) != 2 || b.Jobs[1].Priority != 9 || b.Jobs[1].Queue != "bulk" {
		t.Fatalf("batch %+v", b)
	}

	if g := ok[cliJob](t, "job", "get", "1"); g.ID != 1 || g.Kind != "email" {
		t.Fatalf("get %+v", g)
	}
	l := ok[struct {
		Jobs      []cliJob
		NextAfter *int64 `json:"next_after"`
	}](t, "job", "ls", "--limit", "2")
	if len(l.Jobs) != 2 || l.NextAfter == nil || *l.NextAfter != l.Jobs[1].ID {
		t.Fatalf("ls %+v", l)
	}
	all := ok[struct {
		Jobs      []cliJob
		NextAfter *int64 `json:"next_after"`
	}](t, "job", "ls", "--limit", "1", "--all")
	if len(all.Jobs) != 4 || all.NextAfter != nil {
		t.Fatalf("ls --all %+v", all)
	}
	if f := ok[struct{ Jobs []cliJob }](t, "job", "ls", "--queue", "bulk", "--state", "waiting"); len(f.Jobs) != 2 {
		t.Fatalf("ls filtered %+v", f)
	}
	if c := ok[cliJob](t, "job", "cancel", "1"); c.State != "canceled" {
		t.Fatalf("cancel %+v", c)
	}
	if g := ok[struct{ Total int }](t, "job", "group", "g"); g.Total != 1 {
		t.Fatalf("group %+v", g)
	}
}

func TestCLIQueues(t *testing.T) {
	cliServer(t, "")
	q := ok[cliQueue](t, "queue", "set", "mail", "--capacity", "10", "--policy", "shed")
	if q.Name != "mail" || q.Capacity != 10 || q.Policy != "shed" || q.Concurrency != jobs.DefaultConcurrency {
		t.Fatalf("set %+v", q)
	}
	// Only the flags given change.
	q = ok[cliQueue](t, "queue", "set", "--max-wait", "3s", "mail")
	if q.Capacity != 10 || q.Policy != "shed" || q.MaxWait != "3s" {
		t.Fatalf("set again %+v", q)
	}
	q = ok[cliQueue](t, "queue", "set", "mail", "--replace", "--concurrency", "2")
	if q.Capacity != jobs.DefaultCapacity || q.Policy != "reject" || q.Concurrency != 2 {
		t.Fatalf("replace %+v", q)
	}
	if q := ok[cliQueue](t, "queue", "pause", "mail"); !q.Paused {
		t.Fatalf("pause %+v", q)
	}
	if q := ok[cliQueue](t, "queue", "get", "mail"); !q.Paused {
		t.Fatalf("get %+v", q)
	}
	if q := ok[cliQueue](t, "queue", "resume", "mail"); q.Paused {
		t.Fatalf("resume %+v", q)
	}
	if qs := ok[struct{ Queues []cliQueue }](t, "queue", "ls"); len(qs.Queues) != 1 || qs.Queues[0].Name != "mail" {
		t.Fatalf("ls %+v", qs)
	}
}

func TestCLIErrors(t *testing.T) {
	ts := cliServer(t, "right")
	for _, tc := range []struct {
		args   []string
		code   int
		stderr string
	}{
		// Usage errors: 2, nothing sent.
		{[]string{"enqueue"}, 2, "Usage:"},
		{[]string{"enqueue", "a", "{", "x"}, 2, "Usage:"},
		{[]string{"enqueue", "a", "{bad json"}, 2, "PAYLOAD: not valid JSON"},
		{[]string{"enqueue", "a", "@/nonexistent/file"}, 2, "PAYLOAD"},
		{[]string{"enqueue", "--run-at", "someday", "a"}, 2, "--run-at"},
		{[]string{"enqueue", "--nope", "a"}, 2, "flag provided but not defined"},
		{[]string{"enqueue", "--batch", "/nonexistent"}, 2, "--batch"},
		{[]string{"enqueue", "--batch", "x.json", "--priority", "3"}, 2, "--priority"},
		{[]string{"enqueue", "--server", "ftp://x", "a"}, 2, "base URL"},
		{[]string{"job"}, 2, "Usage:"},
		{[]string{"job", "frob"}, 2, `unknown subcommand "frob"`},
		{[]string{"job", "get"}, 2, "want one job ID"},
		{[]string{"job", "get", "x"}, 2, "positive integer"},
		{[]string{"job", "cancel", "0"}, 2, "positive integer"},
		{[]string{"job", "ls", "extra"}, 2, "unexpected argument"},
		{[]string{"job", "ls", "--limit", "-1"}, 2, "must not be negative"},
		{[]string{"queue"}, 2, "Usage:"},
		{[]string{"queue", "set"}, 2, "want one queue NAME"},
		{[]string{"queue", "set", "q", "--capacity", "many"}, 2, "invalid value"},
		{[]string{"queue", "pause", "a", "b"}, 2, "want one queue NAME"},
		{[]string{"queue", "frob"}, 2, `unknown subcommand "frob"`},
		// API errors: 1, the server's code and message.
		{[]string{"job", "get", "999"}, 1, "404 not_found: job 999 not found"},
		{[]string{"queue", "pause", "none"}, 1, "404 not_found"},
		{[]string{"enqueue", "--priority", "12", "a"}, 1, "400 invalid_request: priority"},
		{[]string{"job", "ls", "--state", "done"}, 1, "400 invalid_request: state"},
		{[]string{"queue", "set", "q", "--policy", "drop"}, 1, "400 invalid_request: policy"},
		{[]string{"job", "get", "1", "--token", "wrong"}, 1, "401 unauthorized"},
		{[]string{"job", "get", "1", "--server", "http://127.0.0.1:1"}, 1, "connect"},
	} {
		code, out, errOut := cli(t, tc.args...)
		if code != tc.code || !strings.Contains(errOut, tc.stderr) || (code != 0 && out != "") {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want exit %d, stderr with %q", tc.args, code, out, errOut, tc.code, tc.stderr)
		}
		if strings.Contains(errOut, "right") {
			t.Errorf("%v: the token leaked: %s", tc.args, errOut)
		}
	}
	// A full queue: 1, with the Retry-After.
	ok[cliQueue](t, "queue", "set", "one", "--capacity", "1")
	ok[cliJob](t, "enqueue", "--queue", "one", "a")
	if code, _, errOut := cli(t, "enqueue", "--queue", "one", "a"); code != 1 || !strings.Contains(errOut, "429 queue_full") || !strings.Contains(errOut, "retry after") {
		t.Errorf("full queue: exit %d: %s", code, errOut)
	}
	// Help: exit 0.
	for _, args := range [][]string{{"enqueue", "-h"}, {"job", "help"}, {"queue", "--help"}, {"job", "ls", "-h"}} {
		if code, _, errOut := cli(t, args...); code != 0 || !strings.Contains(errOut, "Usage:") {
			t.Errorf("%v: exit %d: %s", args, code, errOut)
		}
	}
	// The usage never shows the token, even from the environment.
	_, _, errOut := cli(t, "enqueue", "-h")
	if strings.Contains(errOut, "right") || !strings.Contains(errOut, ts.URL) {
		t.Errorf("usage: %s", errOut)
	}
}

func compact(raw json.RawMessage) string {
	var b bytes.Buffer
	json.Compact(&b, raw)
	return b.String()
}
