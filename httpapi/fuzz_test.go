package httpapi

import (
	"bytes"
	"encoding/json"
	"net/url"
	"reflect"
	"testing"
	"time"

	"github.com/sluicehq/sluice/jobs"
)

// fuzzNow is the fixed clock of the fuzz targets.
var fuzzNow = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

// wantBadRequest fails unless err is a refusal the API answers with 400.
func wantBadRequest(t *testing.T, in string, err error) {
	t.Helper()
	e := classify(err, time.Second)
	if e.status != 400 || e.code != CodeInvalidRequest || e.msg == "" {
		t.Fatalf("%q: error %v classified %d %s", in, err, e.status, e.code)
	}
}

// encodeJob renders n as an enqueue request would carry it.
func encodeJob(n jobs.NewJob) map[string]any {
	m := map[string]any{"kind": n.Kind}
	set := func(k string, v any, zero bool) {
		if !zero {
			m[k] = v
		}
	}
	set("queue", n.Queue, n.Queue == "")
	set("payload", n.Payload, n.Payload == nil)
	set("priority", n.Priority, n.Priority == 0)
	set("idempotency_key", n.IdempotencyKey, n.IdempotencyKey == "")
	set("run_at", n.RunAt.Format(time.RFC3339Nano), n.RunAt.IsZero())
	set("deadline", n.Deadline.Format(time.RFC3339Nano), n.Deadline.IsZero())
	set("attempt_timeout", n.AttemptTimeout.String(), n.AttemptTimeout == 0)
	set("max_attempts", n.MaxAttempts, n.MaxAttempts == 0)
	set("backoff_min", n.BackoffMin.String(), n.BackoffMin == 0)
	set("backoff_max", n.BackoffMax.String(), n.BackoffMax == 0)
	set("group", n.Group, n.Group == "")
	set("cancel_group_on_failure", true, !n.CancelGroupOnFailure)
	return m
}

// sameJob compares two decoded jobs: times by instant, payloads compacted.
func sameJob(a, b jobs.NewJob) bool {
	var ca, cb bytes.Buffer
	if (a.Payload == nil) != (b.Payload == nil) {
		return false
	}
	if a.Payload != nil && (json.Compact(&ca, a.Payload) != nil || json.Compact(&cb, b.Payload) != nil || !bytes.Equal(ca.Bytes(), cb.Bytes())) {
		return false
	}
	if !a.RunAt.Equal(b.RunAt) || !a.Deadline.Equal(b.Deadline) {
		return false
	}
	a.Payload, b.Payload = nil, nil
	a.RunAt, b.RunAt, a.Deadline, b.Deadline = time.Time{}, time.Time{}, time.Time{}, time.Time{}
	return reflect.DeepEqual(a, b)
}

// FuzzDecodeEnqueue: any body either decodes into jobs that package jobs
// accepts, and that decode the same after encoding again, or is refused
// with 400 invalid_request.
func FuzzDecodeEnqueue(f *testing.F) {
	for _, s := range []string{
		`{"kind":"email","payload":{"to":"a@b.c"},"priority":3,"idempotency_key":"k","run_at":"2030-01-02T03:04:05.5+01:00",` +
			`"deadline":"2031-01-01T00:00:00Z","attempt_timeout":"1.5s","max_attempts":3,"backoff_min":"10ms","backoff_max":"1m",` +
			`"group":"g","cancel_group_on_failure":true}`,
		`{"kind":"a"}`,
		`{"kind":"a","queue":"q","payload":null}`,
		`{"jobs":[{"kind":"a"},{"kind":"b","priority":9}]}`,
		`{"jobs":[]}`,
		`{"jobs":[1]}`,
		`{"jobs":[{"kind":"a"}],"kind":"b"}`,
		`{"kind":"a","priority":-1}`,
		`{"kind":"a","priority":1e99}`,
		`{"kind":"a","attempt_timeout":"-1s"}`,
		`{"kind":"a","run_at":"2030-13-01T00:00:00Z"}`,
		`{"kind":"a","kind":"a"}`,
		`{"KIND":"a"}`,
		`{"kind":"a"} []`,
		`[]`, `null`, ``, `{`, `"x"`, `{"payload":{"a":[1,{"b":null}]},"kind":"\u00e9"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		req, err := decodeEnqueue(data, "q", 5, fuzzNow)
		if err != nil {
			wantBadRequest(t, string(data), err)
			return
		}
		if len(req.Jobs) < 1 || len(req.Jobs) > 5 || (!req.Batch && len(req.Jobs) != 1) {
			t.Fatalf("%q: %d jobs, batch %v", data, len(req.Jobs), req.Batch)
		}
		entries := make([]map[string]any, len(req.Jobs))
		for i, n := range req.Jobs {
			if n.Queue != "" && n.Queue != "q" {
				t.Fatalf("%q: job for queue %q", data, n.Queue)
			}
			if err := n.Normalize(fuzzNow); err != nil {
				t.Fatalf("%q: accepted job refused by jobs: %v", data, err)
			}
			entries[i] = encodeJob(req.Jobs[i])
		}
		var again []byte
		if req.Batch {
			again, err = json.Marshal(map[string]any{"jobs": entries})
		} else {
			again, err = json.Marshal(entries[0])
		}
		if err != nil {
			t.Fatal(err)
		}
		req2, err := decodeEnqueue(again, "q", 5, fuzzNow)
		if err != nil {
			t.Fatalf("%q re-encoded as %s: %v", data, again, err)
		}
		if len(req2.Jobs) != len(req.Jobs) || req2.Batch != req.Batch {
			t.Fatalf("%q: round trip changed the shape", data)
		}
		for i := range req.Jobs {
			if !sameJob(req.Jobs[i], req2.Jobs[i]) {
				t.Fatalf("%q: job %d round trip\n%+v\n%+v", data, i, req.Jobs[i], req2.Jobs[i])
			}
		}
	})
}

// FuzzDecodeQueue: any body either decodes into a configuration package
// jobs accepts, or is refused with 400 invalid_request.
func FuzzDecodeQueue(f *testing.F) {
	for _, s := range []string{
		`{"name":"q","concurrency":4,"capacity":10,"policy":"shed","max_wait":"2s","rate_limit":1.5,"rate_burst":2,"paused":true,"idempotency_window":"1h"}`,
		`{}`, `{"name":"r"}`, `{"policy":"drop"}`, `{"capacity":-1}`, `{"max_wait":5}`, `{"rate_limit":1e400}`,
		`{"paused":null}`, `{} {}`, `[]`, ``, `{"capacity":9223372036854775808}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		q, err := decodeQueue(data, "q")
		if err != nil {
			wantBadRequest(t, string(data), err)
			return
		}
		if q.Name != "q" {
			t.Fatalf("%q: name %q", data, q.Name)
		}
		if err := q.Normalize(); err != nil {
			t.Fatalf("%q: accepted configuration refused by jobs: %v", data, err)
		}
	})
}

// FuzzDecodeListParams: any query either decodes into a filter within the
// documented bounds, or is refused with 400 invalid_request.
func FuzzDecodeListParams(f *testing.F) {
	for _, s := range []string{
		"", "queue=a&state=waiting&group=g&after=10&limit=50", "limit=0", "limit=1001", "after=-1",
		"state=nope", "x=1", "queue=a&queue=b", "limit=+5", "after=%2B1", "limit", "state=", "limit=5;after=1", "queue=%zz",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, query string) {
		flt, err := decodeListParams(query)
		if err != nil {
			wantBadRequest(t, query, err)
			return
		}
		if flt.Limit < 1 || flt.Limit > MaxListLimit || flt.AfterID < 0 ||
			(flt.State != "" && !flt.State.Valid()) || len(flt.Queue) > maxNameLen || len(flt.Group) > maxNameLen {
			t.Fatalf("%q: filter %+v", query, flt)
		}
		vals, err := url.ParseQuery(query)
		if err != nil {
			t.Fatalf("%q: accepted a query that does not parse: %v", query, err)
		}
		for k := range vals {
			switch k {
			case "queue", "state", "group", "after", "limit":
			default:
				t.Fatalf("%q: parameter %q accepted", query, k)
			}
		}
	})
}
