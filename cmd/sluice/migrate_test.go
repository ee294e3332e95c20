package main

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

// pgURL returns the PostgreSQL test server's URL, skipping the test when it
// is not configured (and failing when SLUICE_TEST_PG_REQUIRED says it must
// be, as in CI).
func pgURL(t *testing.T) string {
	t.Helper()
	u := os.Getenv("SLUICE_TEST_PG")
	if u == "" {
		if os.Getenv("SLUICE_TEST_PG_REQUIRED") != "" {
			t.Fatal("SLUICE_TEST_PG_REQUIRED is set but SLUICE_TEST_PG is empty")
		}
		t.Skip("set SLUICE_TEST_PG=postgres://... to run the PostgreSQL tests")
	}
	return u
}

func TestMigrateCommand(t *testing.T) {
	url := pgURL(t)
	schema := fmt.Sprintf("sluice_migrate_%06x", rand.N(1<<24))
	t.Cleanup(func() {
		conn, err := pgx.Connect(context.Background(), url)
		if err != nil {
			t.Error(err)
			return
		}
		defer conn.Close(context.Background())
		if _, err := conn.Exec(context.Background(), "DROP SCHEMA IF EXISTS "+schema+" CASCADE"); err != nil {
			t.Error(err)
		}
	})
	var out, errOut bytes.Buffer
	if code := run([]string{"migrate", "--db", url, "--schema", schema}, &out, &errOut); code != 0 {
		t.Fatalf("first migrate: exit %d: %s", code, errOut.String())
	}
	if !strings.Contains(out.String(), "applied versions [1 2 3 4]") {
		t.Fatalf("first migrate said %q", out.String())
	}
	out.Reset()
	if code := run([]string{"migrate", "--db", url, "--schema", schema}, &out, &errOut); code != 0 || !strings.Contains(out.String(), "up to date") {
		t.Fatalf("second migrate: exit %d, %q %q", code, out.String(), errOut.String())
	}
	if code := run([]string{"migrate", "--db", "sqlite:x.db"}, &out, &errOut); code != 2 {
		t.Fatalf("sqlite: exit %d, want 2", code)
	}
}
