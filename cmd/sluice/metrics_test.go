package main

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/sluicehq/sluice/jobs"
	"github.com/sluicehq/sluice/jobs/sqlitestore"
)

func TestCountingStoreCountsEnqueuedShedAndRefused(t *testing.T) {
	ctx := context.Background()
	st, err := sqlitestore.Open(ctx, filepath.Join(t.TempDir(), "m.db"), sqlitestore.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	m := newMetrics()
	c := jobs.NewClient(countingStore{Store: st, m: m}, jobs.ClientConfig{})
	if _, err := c.PutQueue(ctx, jobs.QueueConfig{Name: "q", Capacity: 1, Policy: jobs.FullShed}); err != nil {
		t.Fatal(err)
	}
	mustEnqueue := func(p int) {
		t.Helper()
		if _, err := c.Enqueue(ctx, jobs.NewJob{Kind: "k", Queue: "q", Priority: p}); err != nil {
			t.Fatal(err)
		}
	}
	mustEnqueue(1)
	mustEnqueue(5) // sheds the first
	if _, err := c.Enqueue(ctx, jobs.NewJob{Kind: "k", Queue: "q", Priority: 0}); err == nil {
		t.Fatal("a job that outranks nothing was accepted into a full queue")
	}
	if got := testutil.ToFloat64(m.enqueued.WithLabelValues("q")); got != 2 {
		t.Errorf("enqueued = %v, want 2", got)
	}
	if got := testutil.ToFloat64(m.shed.WithLabelValues("q")); got != 1 {
		t.Errorf("shed = %v, want 1", got)
	}
	if got := testutil.ToFloat64(m.refused.WithLabelValues("q", "queue_full")); got != 1 {
		t.Errorf("refused queue_full = %v, want 1", got)
	}
}
