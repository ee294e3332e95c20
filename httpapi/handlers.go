package httpapi

import (
	"errors"
	"net/http"
	"strconv"

	"github.com/sluicehq/sluice/jobs"
)

// enqueue serves POST /v1/queues/{queue}/jobs: one job object, or
// {"jobs": [...]} for a batch that is accepted whole or refused whole
// (idempotency conflicts aside: see docs/api.md).
func (s *Server) enqueue(w http.ResponseWriter, r *http.Request) {
	queue, err := parseName("queue", r.PathValue("queue"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	data, err := readBody(w, r, s.cfg.MaxBodyBytes)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	req, err := decodeEnqueue(data, queue, s.cfg.MaxBatch, s.cfg.Now())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	results, err := s.jobs.EnqueueMany(r.Context(), queue, req.Jobs)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	created, dups, conflicts := 0, 0, 0
	ids := make([]int64, 0, len(results))
	for _, res := range results {
		switch {
		case res.Err != nil:
			conflicts++
		case res.Duplicate:
			dups++
			ids = append(ids, res.Job.ID)
		default:
			created++
			ids = append(ids, res.Job.ID)
		}
	}
	s.log.DebugContext(r.Context(), "httpapi: enqueued", "queue", queue, "job_ids", ids, "created", created, "duplicates", dups, "conflicts", conflicts)

	if !req.Batch {
		res := results[0]
		if res.Err != nil {
			s.fail(w, r, withMessage(res.Err, "idempotency key is bound to a job with another kind or payload"))
			return
		}
		status := http.StatusCreated
		if res.Duplicate {
			status = http.StatusOK
		} else {
			w.Header().Set("Location", "/v1/jobs/"+strconv.FormatInt(res.Job.ID, 10))
		}
		writeJSON(w, status, enqueuedJSON{toJobJSON(res.Job), res.Duplicate})
		return
	}

	if conflicts == len(results) {
		s.fail(w, r, withMessage(jobs.ErrIdempotencyConflict, "every job's idempotency key is bound to a job with another kind or payload"))
		return
	}
	out := batchJSON{Jobs: make([]batchEntryJSON, len(results))}
	for i, res := range results {
		if res.Err != nil {
			e := classify(res.Err, 0)
			out.Jobs[i].Error = &errorJSON{Code: e.code, Message: e.msg, Field: "jobs[" + strconv.Itoa(i) + "].idempotency_key"}
			continue
		}
		out.Jobs[i].enqueuedJSON = &enqueuedJSON{toJobJSON(res.Job), res.Duplicate}
	}
	status := http.StatusOK
	if created > 0 {
		status = http.StatusCreated
	}
	writeJSON(w, status, out)
}

// getJob serves GET /v1/jobs/{id}.
func (s *Server) getJob(w http.ResponseWriter, r *http.Request) {
	id, err := parseID(r.PathValue("id"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	j, err := s.jobs.Get(r.Context(), id)
	if err != nil {
		s.fail(w, r, notFound(err, "job %d not found", id))
		return
	}
	writeJSON(w, http.StatusOK, toJobJSON(j))
}

// listJobs serves GET /v1/jobs?queue=&state=&group=&after=&limit=.
// next_after is the last job's id when the page is full (the next page
// may be empty), null otherwise.
func (s *Server) listJobs(w http.ResponseWriter, r *http.Request) {
	f, err := decodeListParams(r.URL.RawQuery)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	list, err := s.jobs.List(r.Context(), f)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	out := listJSON{Jobs: make([]jobJSON, len(list))}
	for i, j := range list {
		out.Jobs[i] = toJobJSON(j)
	}
	if len(list) == f.Limit && len(list) > 0 {
		next := list[len(list)-1].ID
		out.NextAfter = &next
	}
	writeJSON(w, http.StatusOK, out)
}

// cancelJob serves POST /v1/jobs/{id}/cancel.
func (s *Server) cancelJob(w http.ResponseWriter, r *http.Request) {
	id, err := parseID(r.PathValue("id"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if err := s.emptyBody(w, r); err != nil {
		s.fail(w, r, err)
		return
	}
	j, err := s.jobs.Cancel(r.Context(), id)
	if err != nil {
		s.fail(w, r, notFound(err, "job %d not found", id))
		return
	}
	s.log.InfoContext(r.Context(), "httpapi: cancel", "job_id", id, "state", j.State, "cancel_requested", j.CancelRequested)
	writeJSON(w, http.StatusOK, toJobJSON(j))
}

// getGroup serves GET /v1/groups/{name}.
func (s *Server) getGroup(w http.ResponseWriter, r *http.Request) {
	name, err := parseName("name", r.PathValue("name"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	g, err := s.jobs.Group(r.Context(), name)
	if err != nil {
		s.fail(w, r, notFound(err, "group %q has no jobs", name))
		return
	}
	writeJSON(w, http.StatusOK, groupJSON{Name: g.Name, Counts: g.Counts, Total: g.Total, Done: g.Done, Succeeded: g.Succeeded})
}

// listQueues serves GET /v1/queues.
func (s *Server) listQueues(w http.ResponseWriter, r *http.Request) {
	qs, err := s.jobs.Queues(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	out := queuesJSON{Queues: make([]queueJSON, len(qs))}
	for i, q := range qs {
		out.Queues[i] = toQueueJSON(q)
	}
	writeJSON(w, http.StatusOK, out)
}

// getQueue serves GET /v1/queues/{name}.
func (s *Server) getQueue(w http.ResponseWriter, r *http.Request) {
	name, err := parseName("name", r.PathValue("name"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	q, err := s.jobs.Queue(r.Context(), name)
	if err != nil {
		s.fail(w, r, notFound(err, "queue %q not found", name))
		return
	}
	writeJSON(w, http.StatusOK, toQueueJSON(q))
}

// putQueue serves PUT /v1/queues/{name}: it creates or replaces the whole
// configuration (omitted fields take their defaults).
func (s *Server) putQueue(w http.ResponseWriter, r *http.Request) {
	name, err := parseName("name", r.PathValue("name"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	data, err := readBody(w, r, s.cfg.MaxBodyBytes)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	q, err := decodeQueue(data, name)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	q, err = s.jobs.PutQueue(r.Context(), q)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.log.InfoContext(r.Context(), "httpapi: queue set", "queue", q.Name, "capacity", q.Capacity, "concurrency", q.Concurrency, "policy", q.Policy, "paused", q.Paused)
	writeJSON(w, http.StatusOK, toQueueJSON(q))
}

// pauseQueue serves POST /v1/queues/{name}/pause.
func (s *Server) pauseQueue(w http.ResponseWriter, r *http.Request) { s.setPaused(w, r, true) }

// resumeQueue serves POST /v1/queues/{name}/resume.
func (s *Server) resumeQueue(w http.ResponseWriter, r *http.Request) { s.setPaused(w, r, false) }

func (s *Server) setPaused(w http.ResponseWriter, r *http.Request, paused bool) {
	name, err := parseName("name", r.PathValue("name"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if err := s.emptyBody(w, r); err != nil {
		s.fail(w, r, err)
		return
	}
	q, err := s.jobs.SetPaused(r.Context(), name, paused)
	if err != nil {
		s.fail(w, r, notFound(err, "queue %q not found", name))
		return
	}
	s.log.InfoContext(r.Context(), "httpapi: queue paused", "queue", q.Name, "paused", q.Paused)
	writeJSON(w, http.StatusOK, toQueueJSON(q))
}

// healthz serves GET /healthz: 200 while the process serves requests.
func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, statusJSON{"ok"})
}

// readyz serves GET /readyz: 200 when Config.Ready says so, else 503.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Ready != nil && !s.cfg.Ready() {
		s.fail(w, r, errNotReady)
		return
	}
	writeJSON(w, http.StatusOK, statusJSON{"ready"})
}

// metrics serves GET /metrics with Config.Metrics.
func (s *Server) metrics(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	s.cfg.Metrics.ServeHTTP(w, r)
}

// emptyBody reads the body of an action, which must be empty or {}.
func (s *Server) emptyBody(w http.ResponseWriter, r *http.Request) error {
	data, err := readBody(w, r, s.cfg.MaxBodyBytes)
	if err != nil {
		return err
	}
	return decodeEmpty(data)
}

// notFound gives a not-found error a message naming what was missing;
// other errors pass unchanged.
func notFound(err error, format string, args ...any) error {
	if errors.Is(err, jobs.ErrNotFound) {
		return withMessage(err, format, args...)
	}
	return err
}
