// Package client is a Go client for the HTTP API of a Sluice job server
// (docs/api.md): enqueue jobs one at a time or in atomic batches, read,
// list and cancel them, read group outcomes, and configure queues.
//
// Every method takes a ctx that bounds the whole call. Errors of the
// server are *APIError values that match the package's sentinel errors
// with errors.Is (ErrQueueFull, ErrNotFound, ...); a full queue or an
// unavailable server carries the server's Retry-After. The client never
// retries by itself: whether a retry is safe is the caller's call (an
// enqueue with an IdempotencyKey always is).
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Config holds a Client's optional settings. The zero value works: no
// token, http.DefaultClient, the default User-Agent.
type Config struct {
	// Token is the server's bearer token; "" sends none.
	Token string
	// HTTPClient sends the requests. Nil means http.DefaultClient. Its
	// Timeout, if any, applies on top of each call's ctx.
	HTTPClient *http.Client
	// UserAgent names the caller. "" means DefaultUserAgent.
	UserAgent string
}

// DefaultUserAgent is Config.UserAgent's default.
const DefaultUserAgent = "sluice-client/0.1"

// maxErrorBody bounds how much of an error response is read.
const maxErrorBody = 64 << 10

// Client calls one Sluice server. It is safe for concurrent use and holds
// no goroutines of its own (the HTTPClient's connections aside).
type Client struct {
	base *url.URL
	cfg  Config
}

// New returns a client of the server at baseURL, an http or https URL,
// optionally with a path prefix (e.g. "https://jobs.example.com/sluice").
func New(baseURL string, cfg Config) (*Client, error) {
	u, err := url.Parse(baseURL)
	if err != nil {
		return nil, fmt.Errorf("client: base URL: %w", err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("client: base URL %q: want http(s)://host[:port][/prefix]", baseURL)
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	u.RawPath = ""
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = http.DefaultClient
	}
	if cfg.UserAgent == "" {
		cfg.UserAgent = DefaultUserAgent
	}
	return &Client{base: u, cfg: cfg}, nil
}

// Enqueue adds one job to job.Queue ("" means "default"). A repeat of an
// idempotency key returns the existing job with Duplicate set; a key
// bound to another kind or payload fails with ErrConflict. A full queue
// fails with ErrQueueFull and a RetryAfter.
func (c *Client) Enqueue(ctx context.Context, job NewJob) (EnqueueResult, error) {
	queue := job.Queue
	if queue == "" {
		queue = "default"
	}
	var out enqueueWire
	if err := c.do(ctx, http.MethodPost, "/v1/queues/"+url.PathEscape(queue)+"/jobs", nil, job, &out); err != nil {
		return EnqueueResult{}, err
	}
	return EnqueueResult{Job: &out.Job, Duplicate: out.Duplicate}, nil
}

// EnqueueMany adds jobs to queue in one request: all are accepted or
// none (a full queue refuses the whole batch). Each job's Queue must be
// "" or queue. One exception to all-or-none, from the store: a job whose
// idempotency key is bound to another kind or payload gets an Err
// (matching ErrConflict) in its result while the others are enqueued;
// if every job conflicts, the call fails with ErrConflict.
func (c *Client) EnqueueMany(ctx context.Context, queue string, jobs []NewJob) ([]EnqueueResult, error) {
	if queue == "" {
		queue = "default"
	}
	body := struct {
		Jobs []NewJob `json:"jobs"`
	}{jobs}
	var out struct {
		Jobs []enqueueWire `json:"jobs"`
	}
	if err := c.do(ctx, http.MethodPost, "/v1/queues/"+url.PathEscape(queue)+"/jobs", nil, body, &out); err != nil {
		return nil, err
	}
	if len(out.Jobs) != len(jobs) {
		return nil, fmt.Errorf("client: enqueue: %d results for %d jobs", len(out.Jobs), len(jobs))
	}
	res := make([]EnqueueResult, len(out.Jobs))
	for i, e := range out.Jobs {
		if e.Error != nil {
			res[i].Err = &APIError{Status: http.StatusConflict, Code: e.Error.Code, Message: e.Error.Message, Field: e.Error.Field}
			continue
		}
		j := e.Job
		res[i] = EnqueueResult{Job: &j, Duplicate: e.Duplicate}
	}
	return res, nil
}

// enqueueWire is a job in an enqueue response: the job with "duplicate",
// or, in a batch, an error alone.
type enqueueWire struct {
	Job       Job
	Duplicate bool
	Error     *errorWire
}

func (e *enqueueWire) UnmarshalJSON(b []byte) error {
	var extra struct {
		Duplicate bool       `json:"duplicate"`
		Error     *errorWire `json:"error"`
	}
	if err := json.Unmarshal(b, &extra); err != nil {
		return err
	}
	e.Duplicate, e.Error = extra.Duplicate, extra.Error
	if e.Error != nil {
		return nil
	}
	return json.Unmarshal(b, &e.Job)
}

// Get returns a job; ErrNotFound if there is none with id.
func (c *Client) Get(ctx context.Context, id int64) (*Job, error) {
	var j Job
	if err := c.do(ctx, http.MethodGet, "/v1/jobs/"+strconv.FormatInt(id, 10), nil, nil, &j); err != nil {
		return nil, err
	}
	return &j, nil
}

// List returns one page of the jobs matching f, by ascending id. Pass the
// page's NextAfter as f.After for the next page.
func (c *Client) List(ctx context.Context, f ListFilter) (JobPage, error) {
	q := url.Values{}
	if f.Queue != "" {
		q.Set("queue", f.Queue)
	}
	if f.State != "" {
		q.Set("state", string(f.State))
	}
	if f.Group != "" {
		q.Set("group", f.Group)
	}
	if f.After != 0 {
		q.Set("after", strconv.FormatInt(f.After, 10))
	}
	if f.Limit != 0 {
		q.Set("limit", strconv.Itoa(f.Limit))
	}
	var out struct {
		Jobs      []*Job `json:"jobs"`
		NextAfter *int64 `json:"next_after"`
	}
	if err := c.do(ctx, http.MethodGet, "/v1/jobs", q, nil, &out); err != nil {
		return JobPage{}, err
	}
	p := JobPage{Jobs: out.Jobs}
	if out.NextAfter != nil {
		p.NextAfter = *out.NextAfter
	}
	return p, nil
}

// Cancel cancels a job: a waiting one at once, a running one through its
// worker (CancelRequested is set until the worker sees it). Cancelling a
// finished job changes nothing. It returns the job after the change.
func (c *Client) Cancel(ctx context.Context, id int64) (*Job, error) {
	var j Job
	if err := c.do(ctx, http.MethodPost, "/v1/jobs/"+strconv.FormatInt(id, 10)+"/cancel", nil, nil, &j); err != nil {
		return nil, err
	}
	return &j, nil
}

// Group returns a group's outcome; ErrNotFound for a group with no jobs.
func (c *Client) Group(ctx context.Context, name string) (GroupStatus, error) {
	var g GroupStatus
	err := c.do(ctx, http.MethodGet, "/v1/groups/"+url.PathEscape(name), nil, nil, &g)
	return g, err
}

// PutQueue creates or replaces q.Name's configuration (zero fields take
// the defaults, Paused included) and returns it as stored.
func (c *Client) PutQueue(ctx context.Context, q Queue) (Queue, error) {
	body := queuePutWire{
		Name: q.Name, Concurrency: q.Concurrency, Capacity: q.Capacity, Policy: q.Policy,
		MaxWait: durString(q.MaxWait), RateLimit: q.RateLimit, RateBurst: q.RateBurst,
		Paused: q.Paused, IdempotencyWindow: durString(q.IdempotencyWindow),
	}
	var out Queue
	err := c.do(ctx, http.MethodPut, "/v1/queues/"+url.PathEscape(q.Name), nil, body, &out)
	return out, err
}

// Queue returns a queue's configuration; ErrNotFound if it does not exist.
func (c *Client) Queue(ctx context.Context, name string) (Queue, error) {
	var out Queue
	err := c.do(ctx, http.MethodGet, "/v1/queues/"+url.PathEscape(name), nil, nil, &out)
	return out, err
}

// Queues returns every queue's configuration, by name.
func (c *Client) Queues(ctx context.Context) ([]Queue, error) {
	var out struct {
		Queues []Queue `json:"queues"`
	}
	err := c.do(ctx, http.MethodGet, "/v1/queues", nil, nil, &out)
	return out.Queues, err
}

// Pause pauses a queue: it accepts jobs and starts none.
func (c *Client) Pause(ctx context.Context, name string) (Queue, error) {
	var out Queue
	err := c.do(ctx, http.MethodPost, "/v1/queues/"+url.PathEscape(name)+"/pause", nil, nil, &out)
	return out, err
}

// Resume resumes a paused queue.
func (c *Client) Resume(ctx context.Context, name string) (Queue, error) {
	var out Queue
	err := c.do(ctx, http.MethodPost, "/v1/queues/"+url.PathEscape(name)+"/resume", nil, nil, &out)
	return out, err
}

// do sends one request: body (if not nil) as JSON, and decodes a 2xx
// response into out, or returns the *APIError of another.
func (c *Client) do(ctx context.Context, method, path string, query url.Values, body, out any) error {
	target := c.base.String() + path // path's segments are escaped
	if q := query.Encode(); q != "" {
		target += "?" + q
	}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return fmt.Errorf("client: %s %s: encode: %w", method, path, err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, target, rd)
	if err != nil {
		return fmt.Errorf("client: %s %s: %w", method, path, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", c.cfg.UserAgent)
	if c.cfg.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.cfg.Token)
	}
	resp, err := c.cfg.HTTPClient.Do(req)
	if err != nil {
		return fmt.Errorf("client: %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return readAPIError(resp)
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("client: %s %s: decode response: %w", method, path, err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxErrorBody)) // let the connection be reused
	return nil
}

// readAPIError builds the *APIError of a non-2xx response.
func readAPIError(resp *http.Response) error {
	data, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	e := &APIError{Status: resp.StatusCode, RetryAfter: parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())}
	var body struct {
		Error *errorWire `json:"error"`
	}
	if json.Unmarshal(data, &body) == nil && body.Error != nil {
		e.Code, e.Message, e.Field = body.Error.Code, body.Error.Message, body.Error.Field
		return e
	}
	e.Message = strings.TrimSpace(string(data))
	if len(e.Message) > 200 {
		e.Message = e.Message[:200] + "..."
	}
	if e.Message == "" {
		e.Message = http.StatusText(resp.StatusCode)
	}
	return e
}

// parseRetryAfter reads a Retry-After header: delay seconds or an HTTP
// date. Zero when absent or unreadable.
func parseRetryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if s, err := strconv.ParseInt(v, 10, 64); err == nil {
		if s < 0 || s > 1<<31 {
			return 0
		}
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// IsTemporary reports whether err is an *APIError worth retrying later
// (429 or 503).
func IsTemporary(err error) bool {
	var ae *APIError
	return errors.As(err, &ae) && ae.Temporary()
}
