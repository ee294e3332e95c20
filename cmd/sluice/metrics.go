package main

import (
	"context"
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/admit"
	"github.com/sluicehq/sluice/httptarget"
	"github.com/sluicehq/sluice/jobs"
)

// metrics exports the server's state to Prometheus. Gauges and counters are
// read at scrape time from the store, the worker, the admission limiter and
// the HTTP-target guards; the latency histograms are fed by the worker's
// OnAttempt hook and the store wrapper's enqueue counts.
type metrics struct {
	store   jobs.Store
	queues  []string
	worker  *jobs.Worker
	lim     *admit.Limiter
	targets *httptarget.Handler

	attempt  *prometheus.HistogramVec
	endToEnd *prometheus.HistogramVec
	enqueued *prometheus.CounterVec
	refused  *prometheus.CounterVec
	shed     *prometheus.CounterVec

	depth, running, recorded, stale, lostBeforeStart, storeErrs *prometheus.Desc
	expiredWaiting, recovered                                   *prometheus.Desc
	apiInFlight, apiAdmitted, apiRefused                        *prometheus.Desc
	targetLimit, targetInflight, targetBreaker                  *prometheus.Desc
	targetCounts                                                *prometheus.Desc
}

func newMetrics() *metrics {
	buckets := prometheus.ExponentialBuckets(0.001, 4, 10) // 1ms .. 4.4m
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("sluice_"+name, help, labels, nil)
	}
	return &metrics{
		attempt: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "sluice_job_attempt_seconds", Help: "Run time of each attempt, by queue, kind and outcome.", Buckets: buckets,
		}, []string{"queue", "kind", "outcome"}),
		endToEnd: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "sluice_job_end_to_end_seconds", Help: "From enqueue to the end of the successful attempt, by queue and kind.", Buckets: buckets,
		}, []string{"queue", "kind"}),
		enqueued: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_jobs_enqueued_total", Help: "Jobs accepted by Enqueue (duplicates of an idempotency key excluded), by queue.",
		}, []string{"queue"}),
		shed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_jobs_shed_total", Help: "Waiting jobs evicted from a full queue by higher-priority jobs (FullShed), by queue.",
		}, []string{"queue"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_jobs_rejected_total", Help: "Jobs refused at enqueue, by queue and reason (queue_full, unavailable).",
		}, []string{"queue", "reason"}),
		depth:           d("queue_waiting", "Waiting jobs per queue this node works (--queues): the queue depth.", "queue"),
		running:         d("queue_running", "Running jobs per queue this node works (--queues), on every node.", "queue"),
		recorded:        d("jobs_recorded_total", "Attempt outcomes this node recorded, by kind (succeeded, retry, failed, canceled, released, expired).", "outcome"),
		stale:           d("jobs_stale_outcomes_total", "Outcomes refused by fencing (the lease had been lost)."),
		lostBeforeStart: d("jobs_lost_before_start_total", "Fetched jobs not run because their lease was lost before they started (a fetch slow enough that lease recovery took them back, or a lease lost while the job waited to start)."),
		storeErrs:       d("store_errors_total", "Store calls of the worker that failed."),
		expiredWaiting:  d("jobs_expired_waiting_total", "Waiting jobs this node's maintenance ended expired (deadline passed before they could run)."),
		recovered:       d("jobs_recovered_total", "Running jobs whose lease expired, recovered by this node's maintenance."),
		apiInFlight:     d("api_in_flight", "API requests being served, by priority class.", "class"),
		apiAdmitted:     d("api_admitted_total", "API requests admitted, by priority class.", "class"),
		apiRefused:      d("api_refused_total", "API requests refused by admission control, by class and reason.", "class", "reason"),
		targetLimit:     d("target_concurrency_limit", "Adaptive concurrency limit per HTTP target host.", "host"),
		targetInflight:  d("target_in_flight", "Requests in flight per HTTP target host.", "host"),
		targetBreaker:   d("target_breaker_open", "1 when the host's circuit breaker is open, 0.5 half-open, 0 closed.", "host"),
		targetCounts:    d("target_requests_total", "HTTP-target attempts by result: succeeded, retried (a retryable answer or error, whether or not the job has attempts left), failed (a permanent one), limited, short_circuited, paused, canceled.", "result"),
	}
}

// onAttempt is the worker's OnAttempt hook.
func (m *metrics) onAttempt(j *jobs.Job, o jobs.Outcome, run time.Duration) {
	m.attempt.WithLabelValues(j.Queue, j.Kind, outcomeName(o.Kind)).Observe(run.Seconds())
	if o.Kind == jobs.Succeeded {
		m.endToEnd.WithLabelValues(j.Queue, j.Kind).Observe(time.Since(j.CreatedAt).Seconds())
	}
}

func outcomeName(k jobs.OutcomeKind) string { return k.String() }

func (m *metrics) Describe(ch chan<- *prometheus.Desc) { prometheus.DescribeByCollect(m, ch) }

func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	m.attempt.Collect(ch)
	m.endToEnd.Collect(ch)
	m.enqueued.Collect(ch)
	m.refused.Collect(ch)
	m.shed.Collect(ch)
	gauge := func(d *prometheus.Desc, v float64, lv ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, lv...)
	}
	counter := func(d *prometheus.Desc, v float64, lv ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, lv...)
	}
	if m.store != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		for _, q := range m.queues {
			if st, err := m.store.QueueStats(ctx, q, time.Now()); err == nil {
				gauge(m.depth, float64(st.Waiting), q)
				gauge(m.running, float64(st.Running), q)
			}
		}
		cancel()
	}
	if m.worker != nil {
		ws := m.worker.Stats()
		for _, k := range []jobs.OutcomeKind{jobs.Succeeded, jobs.Retry, jobs.Failed, jobs.Canceled, jobs.Released, jobs.Expired} {
			counter(m.recorded, float64(ws.Recorded[k]), outcomeName(k))
		}
		counter(m.stale, float64(ws.Stale))
		counter(m.lostBeforeStart, float64(ws.LostBeforeStart))
		counter(m.expiredWaiting, float64(ws.ExpiredWaiting))
		counter(m.recovered, float64(ws.Recovered))
		counter(m.storeErrs, float64(ws.StoreErrs))
	}
	if m.lim != nil {
		as := m.lim.Stats()
		for _, c := range []admit.Class{admit.ClassSheddable, admit.ClassDefault, admit.ClassCritical} {
			gauge(m.apiInFlight, float64(as.InFlight[c]), c.String())
			counter(m.apiAdmitted, float64(as.Admitted[c]), c.String())
			for r := range as.Refused[c] {
				counter(m.apiRefused, float64(as.Refused[c][r]), c.String(), admit.Reason(r).String())
			}
		}
	}
	if m.targets != nil {
		ts := m.targets.Stats()
		for _, h := range ts.Hosts {
			gauge(m.targetLimit, float64(h.Limit), h.Host)
			gauge(m.targetInflight, float64(h.Inflight), h.Host)
			open := 0.0
			switch h.Breaker {
			case "open":
				open = 1
			case "half-open":
				open = 0.5
			}
			gauge(m.targetBreaker, open, h.Host)
		}
		c := ts.Total
		for name, v := range map[string]uint64{
			"succeeded": c.Succeeded, "retried": c.Retried, "failed": c.Failed, "limited": c.Limited,
			"short_circuited": c.ShortCircuited, "paused": c.Paused, "canceled": c.Canceled,
		} {
			counter(m.targetCounts, float64(v), name)
		}
	}
}

// countingStore counts enqueues for the metrics. The API's client uses it;
// the worker gets the store itself, so that optional interfaces (Notifier,
// Elector) stay visible to it.
type countingStore struct {
	jobs.Store
	m *metrics
}

func (s countingStore) Enqueue(ctx context.Context, now time.Time, queue string, batch []jobs.NewJob) ([]jobs.EnqueueResult, error) {
	res, err := s.Store.Enqueue(ctx, now, queue, batch)
	switch {
	case err == nil:
		n, shed := 0, 0
		for _, r := range res {
			if r.Err == nil && !r.Duplicate {
				n++
			}
			if r.Shed != 0 {
				shed++
			}
		}
		s.m.enqueued.WithLabelValues(queue).Add(float64(n))
		s.m.shed.WithLabelValues(queue).Add(float64(shed))
	case errors.Is(err, jobs.ErrQueueFull):
		s.m.refused.WithLabelValues(queue, "queue_full").Add(float64(len(batch)))
	case errors.Is(err, jobs.ErrUnavailable):
		s.m.refused.WithLabelValues(queue, "unavailable").Add(float64(len(batch)))
	}
	return res, err
}
