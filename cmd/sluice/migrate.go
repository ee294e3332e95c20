package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/sluicehq/sluice/jobs/pgstore"
)

// runMigrate is "sluice migrate": it creates or upgrades the PostgreSQL
// schema. sluice serve does the same at start; this command lets a deploy
// run it once, before the nodes start. SQLite files migrate when opened.
func runMigrate(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("migrate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	db := fs.String("db", os.Getenv("SLUICE_DB"), "postgres:// URL (SLUICE_DB)")
	schema := fs.String("schema", "sluice", "schema holding Sluice's tables")
	timeout := fs.Duration("timeout", time.Minute, "give up after this long")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if !strings.HasPrefix(*db, "postgres://") && !strings.HasPrefix(*db, "postgresql://") {
		fmt.Fprintln(stderr, "sluice migrate: --db must be a postgres:// URL (SQLite files migrate when sluice serve opens them)")
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	applied, err := pgstore.Migrate(ctx, *db, *schema)
	if err != nil {
		fmt.Fprintln(stderr, "sluice migrate:", err)
		return 1
	}
	if len(applied) == 0 {
		fmt.Fprintf(stdout, "schema %q is up to date\n", *schema)
	} else {
		fmt.Fprintf(stdout, "schema %q: applied versions %v\n", *schema, applied)
	}
	return 0
}
