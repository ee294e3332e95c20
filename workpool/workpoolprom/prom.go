// Package workpoolprom exports a workpool.Pool's stats and hooks as
// Prometheus metrics. It keeps the Prometheus dependency out of workpool.
//
// Use it in three steps: make the Metrics, put its hooks in the pool's
// Config, then Watch the pool and register the Metrics:
//
//	m := workpoolprom.New("sluice", "outbound")
//	pool := workpool.New(workpool.Config{Workers: 8, QueueSize: 64, Hooks: m.Hooks(workpool.Hooks{})})
//	m.Watch(pool)
//	prometheus.MustRegister(m)
//
// Gauges and counters are read from Pool.Stats at scrape time (one lock
// acquisition per scrape); the queue-wait and run-time histograms are fed
// by the hooks (one histogram observation per task start and finish).
package workpoolprom

import (
	"errors"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sluicehq/sluice/workpool"
)

// Metrics is a prometheus.Collector for one pool. Safe for concurrent use.
type Metrics struct {
	pool atomic.Pointer[workpool.Pool]

	queueWait *prometheus.HistogramVec
	run       *prometheus.HistogramVec

	workers, live, idle, running, queueSize, queued, waiting *prometheus.Desc
	submitted, completed, failed, panicked, shed, expired    *prometheus.Desc
	returned, rejected, waited                               *prometheus.Desc
}

// New returns metrics named <namespace>_workpool_* with a constant label
// pool=<pool>. An empty namespace gives workpool_*.
func New(namespace, pool string) *Metrics {
	labels := prometheus.Labels{"pool": pool}
	name := func(n string) string { return prometheus.BuildFQName(namespace, "workpool", n) }
	desc := func(n, help string, vars ...string) *prometheus.Desc {
		return prometheus.NewDesc(name(n), help, vars, labels)
	}
	buckets := prometheus.ExponentialBuckets(0.0001, 4, 10) // 100µs .. 26s
	return &Metrics{
		queueWait: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: name("queue_wait_seconds"), Help: "Time from acceptance to start, by priority.",
			ConstLabels: labels, Buckets: buckets,
		}, []string{"priority"}),
		run: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: name("run_seconds"), Help: "Task run time, by priority and outcome (ok, error, panic).",
			ConstLabels: labels, Buckets: buckets,
		}, []string{"priority", "outcome"}),

		workers:   desc("workers", "Bound on running tasks."),
		live:      desc("live_workers", "Worker goroutines alive."),
		idle:      desc("idle_workers", "Parked worker goroutines."),
		running:   desc("running", "Tasks taken by workers."),
		queueSize: desc("queue_size", "Bound on queued tasks."),
		queued:    desc("queued", "Queued tasks, by priority.", "priority"),
		waiting:   desc("waiting_submitters", "Submitters blocked by the Wait policy."),
		submitted: desc("submitted_total", "Tasks accepted."),
		completed: desc("completed_total", "Tasks that returned nil."),
		failed:    desc("failed_total", "Tasks that returned an error."),
		panicked:  desc("panicked_total", "Tasks that panicked."),
		shed:      desc("shed_total", "Accepted tasks evicted by higher-priority work."),
		expired:   desc("expired_total", "Accepted tasks dropped before starting (deadline, queue-wait bound, CoDel)."),
		returned:  desc("returned_total", "Accepted tasks handed back by Close without starting."),
		rejected:  desc("rejected_total", "Tasks refused at submission, by reason.", "reason"),
		waited:    desc("waited_total", "Submissions that blocked on a full queue under the Wait policy."),
	}
}

// Watch sets the pool whose Stats are collected. Until it is called, only
// the histograms are collected.
func (m *Metrics) Watch(p *workpool.Pool) { m.pool.Store(p) }

// Hooks returns next with the metrics' observations added in front of its
// OnStart and OnFinish (next's hooks still run, after).
func (m *Metrics) Hooks(next workpool.Hooks) workpool.Hooks {
	h := next
	h.OnStart = func(e workpool.Event) {
		m.queueWait.WithLabelValues(e.Priority.String()).Observe(e.QueueWait.Seconds())
		if next.OnStart != nil {
			next.OnStart(e)
		}
	}
	h.OnFinish = func(e workpool.Event) {
		outcome := "ok"
		var pe *workpool.PanicError
		switch {
		case errors.As(e.Err, &pe):
			outcome = "panic"
		case e.Err != nil:
			outcome = "error"
		}
		m.run.WithLabelValues(e.Priority.String(), outcome).Observe(e.Run.Seconds())
		if next.OnFinish != nil {
			next.OnFinish(e)
		}
	}
	return h
}

// Describe implements prometheus.Collector.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	m.queueWait.Describe(ch)
	m.run.Describe(ch)
	for _, d := range []*prometheus.Desc{m.workers, m.live, m.idle, m.running, m.queueSize, m.queued, m.waiting,
		m.submitted, m.completed, m.failed, m.panicked, m.shed, m.expired, m.returned, m.rejected, m.waited} {
		ch <- d
	}
}

var priorities = []workpool.Priority{workpool.PriorityLow, workpool.PriorityNormal, workpool.PriorityHigh, workpool.PriorityCritical}

var reasons = []workpool.Reason{workpool.ReasonQueueFull, workpool.ReasonShed, workpool.ReasonClosed, workpool.ReasonExpired}

// Collect implements prometheus.Collector.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	m.queueWait.Collect(ch)
	m.run.Collect(ch)
	p := m.pool.Load()
	if p == nil {
		return
	}
	s := p.Stats()
	gauge := func(d *prometheus.Desc, v int, lv ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(v), lv...)
	}
	counter := func(d *prometheus.Desc, v uint64, lv ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), lv...)
	}
	gauge(m.workers, s.Workers)
	gauge(m.live, s.Live)
	gauge(m.idle, s.Idle)
	gauge(m.running, s.Running)
	gauge(m.queueSize, s.QueueSize)
	for _, pr := range priorities {
		gauge(m.queued, s.Queued[pr.Class()], pr.String())
	}
	gauge(m.waiting, s.Waiting)
	counter(m.submitted, s.Submitted)
	counter(m.completed, s.Completed)
	counter(m.failed, s.Failed)
	counter(m.panicked, s.Panicked)
	counter(m.shed, s.Shed)
	counter(m.expired, s.Expired)
	counter(m.returned, s.Returned)
	counter(m.waited, s.Waited)
	for _, r := range reasons {
		counter(m.rejected, s.Rejected[r], r.String())
	}
}
