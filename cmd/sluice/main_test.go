package main

import (
	"bytes"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestRun(t *testing.T) {
	for _, tc := range []struct {
		args        []string
		code        int
		out, errOut string
	}{
		{nil, 2, "", "Usage:"},
		{[]string{"help"}, 0, "Usage:", ""},
		{[]string{"version"}, 0, "sluice " + version, ""},
		{[]string{"serve", "--addr", "0.0.0.0:0"}, 2, "", "without --token"},
		{[]string{"frobnicate"}, 2, "", `unknown command "frobnicate"`},
	} {
		var out, errOut bytes.Buffer
		if code := run(tc.args, &out, &errOut); code != tc.code {
			t.Errorf("%v: exit %d, want %d", tc.args, code, tc.code)
		}
		if !strings.Contains(out.String(), tc.out) || !strings.Contains(errOut.String(), tc.errOut) {
			t.Errorf("%v: stdout %q stderr %q", tc.args, out.String(), errOut.String())
		}
	}
}

func TestBenchBurnSmall(t *testing.T) {
	path := t.TempDir() + "/burn.db"
	var out, errOut bytes.Buffer
	if code := run([]string{"bench", "burn", "--db", "sqlite:" + path, "--jobs", "500"}, &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	if !strings.Contains(out.String(), "insert: 500 jobs in ") || !strings.Contains(out.String(), "burn: 500 jobs in ") {
		t.Fatalf("output %q", out.String())
	}
	// A second burn on the same file is refused: the figures need a fresh file.
	if code := run([]string{"bench", "burn", "--db", "sqlite:" + path}, &out, &errOut); code != 2 {
		t.Fatalf("reused file: exit %d", code)
	}
	for _, bad := range [][]string{{"bench"}, {"bench", "burn"}, {"bench", "burn", "--db", "postgres://x"}, {"bench", "burn", "--db", "sqlite:" + t.TempDir() + "/x", "--jobs", "0"}} {
		if code := run(bad, &out, &errOut); code != 2 {
			t.Errorf("%v: exit %d, want 2", bad, code)
		}
	}
}
