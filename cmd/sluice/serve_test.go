package main

import (
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestParseServe(t *testing.T) {
	env := map[string]string{}
	get := func(k string) string { return env[k] }

	c, err := parseServe(nil, get, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.Addr != "127.0.0.1:8080" || c.DB != "sqlite:sluice.db" || c.ShutdownTimeout != 25*time.Second || len(c.Queues) != 1 || c.Queues[0] != "default" || c.LogLevel != slog.LevelInfo || c.Retention != 7*24*time.Hour {
		t.Fatalf("defaults: %+v", c)
	}

	env["SLUICE_QUEUES"] = "a, b"
	env["SLUICE_DRAIN_DELAY"] = "2s"
	env["SLUICE_ADDR"] = "127.0.0.1:9000"
	env["SLUICE_RETENTION"] = "0"
	c, err = parseServe([]string{"--addr", "localhost:9001"}, get, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.Addr != "localhost:9001" || c.DrainDelay != 2*time.Second || strings.Join(c.Queues, "|") != "a|b" || c.Retention != 0 {
		t.Fatalf("env and flags: %+v", c)
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--addr", "0.0.0.0:8080"}, "without --token"},
		{[]string{"--addr", ":8080"}, "without --token"},
		{[]string{"--shutdown-timeout", "soon"}, "--shutdown-timeout"},
		{[]string{"--drain-delay", "-1s"}, "--drain-delay"},
		{[]string{"--shutdown-timeout", "0s"}, "--shutdown-timeout"},
		{[]string{"--drain-delay", "30s", "--shutdown-timeout", "3s"}, "--drain-delay"},
		{[]string{"--drain-delay", "25s"}, "--drain-delay"}, // the default timeout is 25s
		{[]string{"--drain-delay", "16s"}, "--drain-delay"}, // over 3/5 of it
		{[]string{"--retention", "a week"}, "--retention"},
		{[]string{"--max-body", "0"}, "--max-body"},
		{[]string{"--max-in-flight", "x"}, "--max-in-flight"},
		{[]string{"--allow-private-targets=maybe"}, "allow-private-targets"},
		{[]string{"--log-level", "loud"}, "--log-level"},
		{[]string{"--queues", " , "}, "--queues"},
		{[]string{"extra"}, "unexpected argument"},
	} {
		if _, err := parseServe(tc.args, get, io.Discard); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: err = %v, want it to mention %q", tc.args, err, tc.want)
		}
	}
	if c, err := parseServe([]string{"--allow-private-targets"}, get, io.Discard); err != nil || !c.AllowPrivate {
		t.Fatalf("--allow-private-targets: %+v, %v", c, err)
	}
	env["SLUICE_ALLOW_PRIVATE_TARGETS"] = "yes"
	if _, err := parseServe(nil, get, io.Discard); err == nil || !strings.Contains(err.Error(), "SLUICE_ALLOW_PRIVATE_TARGETS") {
		t.Fatalf("bad env boolean: %v", err)
	}
	env["SLUICE_ALLOW_PRIVATE_TARGETS"] = "true"
	if c, err := parseServe(nil, get, io.Discard); err != nil || !c.AllowPrivate {
		t.Fatalf("env boolean: %+v, %v", c, err)
	}
	if _, err := parseServe([]string{"--addr", "0.0.0.0:8080", "--token", "s3cret"}, get, io.Discard); err != nil {
		t.Fatalf("non-loopback with a token: %v", err)
	}
}

func TestRedactDB(t *testing.T) {
	for in, want := range map[string]string{
		"postgres://u:secret@h:5432/db": "postgres://u:xxxxx@h:5432/db",
		"postgres://u@h/db":             "postgres://u@h/db",
		"sqlite:x.db":                   "sqlite:x.db",
	} {
		if got := redactDB(in); got != want {
			t.Errorf("redactDB(%q) = %q, want %q", in, got, want)
		}
	}
}
