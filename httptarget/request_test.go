package httptarget_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/httptarget"
	"github.com/sluicehq/sluice/jobs"
)

func TestParseRequestNamesTheBadField(t *testing.T) {
	manyHeaders := make([]string, 0, httptarget.MaxHeaders+1)
	for i := range httptarget.MaxHeaders + 1 {
		manyHeaders = append(manyHeaders, `"X-H`+strings.Repeat("a", i)+`": "v"`)
	}
	for _, c := range []struct{ payload, field string }{
		{`{}`, "payload.url"},
		{`{"url": ""}`, "payload.url"},
		{`{"url": "/relative"}`, "payload.url"},
		{`{"url": "ftp://example.com/"}`, "payload.url"},
		{`{"url": "file:///etc/passwd"}`, "payload.url"},
		{`{"url": "http://user:pw@example.com/"}`, "payload.url"},
		{`{"url": "http:example.com"}`, "payload.url"},
		{`{"url": "http://example.com:0/"}`, "payload.url"},
		{`{"url": "http://example.com:99999/"}`, "payload.url"},
		{`{"url": "http://exa mple.com/"}`, "payload.url"},
		{`{"url": "https://example.com/` + strings.Repeat("a", httptarget.MaxURLBytes) + `"}`, "payload.url"},
		{`{"url": "https://example.com/", "method": "GET"}`, "payload.method"},
		{`{"url": "https://example.com/", "method": "post"}`, "payload.method"},
		{`{"url": "https://example.com/", "headers": {"Connection": "close"}}`, "payload.headers.Connection"},
		{`{"url": "https://example.com/", "headers": {"transfer-encoding": "chunked"}}`, "payload.headers.transfer-encoding"},
		{`{"url": "https://example.com/", "headers": {"Host": "internal"}}`, "payload.headers.Host"},
		{`{"url": "https://example.com/", "headers": {"Idempotency-Key": "k"}}`, "payload.headers.Idempotency-Key"},
		{`{"url": "https://example.com/", "headers": {"sluice-job-id": "1"}}`, "payload.headers.sluice-job-id"},
		{`{"url": "https://example.com/", "headers": {"Bad Name": "v"}}`, "payload.headers.Bad Name"},
		{`{"url": "https://example.com/", "headers": {"X-A": "line\nInjected: 1"}}`, "payload.headers.X-A"},
		{`{"url": "https://example.com/", "headers": {` + strings.Join(manyHeaders, ",") + `}}`, "payload.headers"},
		{`{"url": "https://example.com/", "headers": {"X-A": "` + strings.Repeat("v", httptarget.MaxHeaderBytes) + `"}}`, "payload.headers"},
		{`{"url": "https://example.com/", "body": "` + strings.Repeat("b", httptarget.MaxBodyBytes) + `"}`, "payload.body"},
		{`{"url": "https://example.com/", "header": {}}`, "payload"}, // misspelt field
		{`{"url": "https://example.com/"} {}`, "payload"},
		{`[1]`, "payload"},
		{`null`, "payload.url"},
	} {
		_, err := httptarget.ParseRequest([]byte(c.payload))
		var ve *jobs.ValidationError
		if !errors.As(err, &ve) || ve.Field != c.field {
			t.Errorf("%.80s: err = %v, want a *jobs.ValidationError on %s", c.payload, err, c.field)
		}
	}
}

func TestValidateDuplicateAndBody(t *testing.T) {
	r := httptarget.Request{URL: "https://example.com/", Headers: map[string]string{"x-a": "1", "X-A": "2"}}
	var ve *jobs.ValidationError
	if err := r.Validate(); !errors.As(err, &ve) || !strings.HasPrefix(ve.Field, "payload.headers.") {
		t.Errorf("duplicate header: %v", err)
	}
	r = httptarget.Request{URL: "https://example.com/", Body: []byte(`{"a":`)}
	if err := r.Validate(); !errors.As(err, &ve) || ve.Field != "payload.body" {
		t.Errorf("bad body: %v", err)
	}
}

func TestParseRequestAcceptsGoodPayloads(t *testing.T) {
	for _, p := range []string{
		`{"url": "https://example.com/hook"}`,
		`{"url": "http://example.com:8080/a?b=c", "method": "PATCH", "headers": {"Authorization": "Bearer x", "X-Tab": "a\tb"}, "body": [1, "two", null]}`,
		`{"url": "https://[2001:db8::1]/", "method": "PUT", "body": null}`,
	} {
		if _, err := httptarget.ParseRequest([]byte(p)); err != nil {
			t.Errorf("%s: %v", p, err)
		}
	}
}
