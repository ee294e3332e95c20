package workpoolprom_test

import (
	"context"
	"errors"
	"runtime"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"

	"github.com/sluicehq/sluice/workpool"
	"github.com/sluicehq/sluice/workpool/workpoolprom"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestMetricsFollowThePool(t *testing.T) {
	m := workpoolprom.New("sluice", "test")
	var userHookCalls int
	pool := workpool.New(workpool.Config{Workers: 1, QueueSize: 1, Hooks: m.Hooks(workpool.Hooks{
		OnFinish: func(workpool.Event) { userHookCalls++ }, // one worker: no race
	})})
	m.Watch(pool)
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(m)

	ctx := context.Background()
	ok, _ := pool.Submit(ctx, func(context.Context) error { return nil })
	_ = ok.Wait(ctx)
	bad, _ := pool.Submit(ctx, func(context.Context) error { return errors.New("no") })
	_ = bad.Wait(ctx)
	release, started := make(chan struct{}), make(chan struct{})
	pool.Submit(ctx, func(context.Context) error { close(started); <-release; return nil })
	<-started
	pool.SubmitOpts(ctx, workpool.Options{Priority: workpool.PriorityHigh}, func(context.Context) error { return nil })
	if _, err := pool.Submit(ctx, func(context.Context) error { return nil }); !errors.Is(err, workpool.ErrQueueFull) {
		t.Fatalf("want a queue_full refusal, got %v", err)
	}

	want := `
# HELP sluice_workpool_queued Queued tasks, by priority.
# TYPE sluice_workpool_queued gauge
sluice_workpool_queued{pool="test",priority="critical"} 0
sluice_workpool_queued{pool="test",priority="high"} 1
sluice_workpool_queued{pool="test",priority="low"} 0
sluice_workpool_queued{pool="test",priority="normal"} 0
# HELP sluice_workpool_rejected_total Tasks refused at submission, by reason.
# TYPE sluice_workpool_rejected_total counter
sluice_workpool_rejected_total{pool="test",reason="closed"} 0
sluice_workpool_rejected_total{pool="test",reason="expired"} 0
sluice_workpool_rejected_total{pool="test",reason="queue_full"} 1
sluice_workpool_rejected_total{pool="test",reason="shed"} 0
# HELP sluice_workpool_running Tasks taken by workers.
# TYPE sluice_workpool_running gauge
sluice_workpool_running{pool="test"} 1
# HELP sluice_workpool_submitted_total Tasks accepted.
# TYPE sluice_workpool_submitted_total counter
sluice_workpool_submitted_total{pool="test"} 4
# HELP sluice_workpool_failed_total Tasks that returned an error.
# TYPE sluice_workpool_failed_total counter
sluice_workpool_failed_total{pool="test"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want),
		"sluice_workpool_queued", "sluice_workpool_rejected_total", "sluice_workpool_running",
		"sluice_workpool_submitted_total", "sluice_workpool_failed_total"); err != nil {
		t.Fatal(err)
	}
	close(release)
	if _, err := pool.Close(ctx); err != nil {
		t.Fatal(err)
	}
	// Histograms: 4 tasks started and finished; one failed.
	if n := testutil.CollectAndCount(m, "sluice_workpool_run_seconds"); n != 3 { // normal/ok, normal/error, high/ok
		t.Fatalf("run_seconds series = %d, want 3", n)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var started4 uint64
	for _, mf := range mfs {
		if mf.GetName() == "sluice_workpool_queue_wait_seconds" {
			for _, metric := range mf.GetMetric() {
				started4 += metric.GetHistogram().GetSampleCount()
			}
		}
	}
	if started4 != 4 || userHookCalls != 4 {
		t.Fatalf("queue-wait observations %d, user hook calls %d; want 4, 4", started4, userHookCalls)
	}
}

// TestWaitedCounter: a submitter blocked by the Wait policy shows as
// waiting_submitters while it waits and counts once in waited_total.
func TestWaitedCounter(t *testing.T) {
	m := workpoolprom.New("sluice", "wait")
	pool := workpool.New(workpool.Config{Workers: 1, QueueSize: 0, Policy: workpool.Wait})
	m.Watch(pool)
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(m)
	ctx := context.Background()
	release, started := make(chan struct{}), make(chan struct{})
	if err := pool.Go(ctx, func(context.Context) error { close(started); <-release; return nil }); err != nil {
		t.Fatal(err)
	}
	<-started
	done := make(chan error, 1)
	go func() { done <- pool.Go(ctx, func(context.Context) error { return nil }) }()
	for pool.Stats().Waiting != 1 {
		runtime.Gosched()
	}
	want := `
# HELP sluice_workpool_waited_total Submissions that blocked on a full queue under the Wait policy.
# TYPE sluice_workpool_waited_total counter
sluice_workpool_waited_total{pool="wait"} 1
# HELP sluice_workpool_waiting_submitters Submitters blocked by the Wait policy.
# TYPE sluice_workpool_waiting_submitters gauge
sluice_workpool_waiting_submitters{pool="wait"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "sluice_workpool_waited_total", "sluice_workpool_waiting_submitters"); err != nil {
		t.Fatal(err)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Close(ctx); err != nil {
		t.Fatal(err)
	}
}
