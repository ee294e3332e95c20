package httptarget

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/sluicehq/sluice/jobs"
)

// Limits on a Request. A job's payload is stored with the job, so these
// also bound what one job costs the store.
const (
	MaxURLBytes        = 2048       // the url field
	MaxHeaders         = 32         // entries in the headers field
	MaxHeaderNameBytes = 128        // one header name
	MaxHeaderBytes     = 16 << 10   // all header names and values together
	MaxBodyBytes       = 1 << 20    // the body field, as JSON text (Cloud Tasks also caps a task at 1 MB)
	DefaultMethod      = "POST"     // when the method field is empty
	maxPayloadBytes    = 1100 << 10 // the whole payload: body, headers, url and the JSON around them
)

// Request is the payload of a job of kind Kind: what to send where.
//
//	{"url": "https://example.com/hook", "method": "PUT",
//	 "headers": {"Authorization": "Bearer ..."}, "body": {"order": 42}}
//
// Headers and the body are stored with the job in the clear: a secret put
// there is readable by anyone who can read the job.
type Request struct {
	// URL is the absolute http or https URL to call, without userinfo.
	// Required; at most MaxURLBytes.
	URL string `json:"url"`
	// Method is POST, PUT or PATCH; empty means POST.
	Method string `json:"method,omitempty"`
	// Headers are added to the request. Hop-by-hop headers, headers the
	// handler sets itself (Host, Content-Type, Content-Length,
	// Idempotency-Key, User-Agent, Expect) and every Sluice-* header are
	// refused. At most MaxHeaders entries, names that are HTTP tokens of at
	// most MaxHeaderNameBytes, values without control characters, and
	// MaxHeaderBytes in all.
	Headers map[string]string `json:"headers,omitempty"`
	// Body is any JSON value, sent as the request body exactly as given
	// with Content-Type application/json. Absent means an empty body
	// without Content-Type. At most MaxBodyBytes.
	Body json.RawMessage `json:"body,omitempty"`
}

// deniedHeaders are refused in Request.Headers, in canonical form.
var deniedHeaders = map[string]bool{
	// hop-by-hop (RFC 9110 section 7.6.1) and their relatives
	"Connection": true, "Keep-Alive": true, "Proxy-Authenticate": true, "Proxy-Authorization": true,
	"Proxy-Connection": true, "Te": true, "Trailer": true, "Transfer-Encoding": true, "Upgrade": true,
	// set by the handler or by net/http
	"Host": true, "Content-Length": true, "Content-Type": true, "Idempotency-Key": true,
	"User-Agent": true, "Expect": true,
}

// ParseRequest decodes and validates a job's payload. Unknown fields are
// refused, so that a misspelt field is not silently ignored. Errors are
// *jobs.ValidationError naming the field ("payload.url", ...).
func ParseRequest(payload []byte) (*Request, error) {
	if len(payload) > maxPayloadBytes {
		return nil, &jobs.ValidationError{Field: "payload", Msg: fmt.Sprintf("must be at most %d bytes", maxPayloadBytes)}
	}
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.DisallowUnknownFields()
	var r Request
	if err := dec.Decode(&r); err != nil {
		return nil, &jobs.ValidationError{Field: "payload", Msg: "must be a JSON object with url, method, headers and body: " + strings.TrimPrefix(err.Error(), "json: ")}
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, &jobs.ValidationError{Field: "payload", Msg: "must be one JSON object"}
	}
	if err := r.Validate(); err != nil {
		return nil, err
	}
	return &r, nil
}

// Validate checks the request's fields and returns a *jobs.ValidationError
// naming the first bad one ("payload.url", "payload.method",
// "payload.headers", "payload.body"). It checks the form only: whether the
// URL's address may be called is decided when the handler dials it.
func (r *Request) Validate() error {
	if _, err := r.parseURL(); err != nil {
		return err
	}
	switch r.Method {
	case "", "POST", "PUT", "PATCH":
	default:
		return invalid("method", `must be "POST", "PUT" or "PATCH"`)
	}
	if len(r.Headers) > MaxHeaders {
		return invalid("headers", fmt.Sprintf("must have at most %d entries", MaxHeaders))
	}
	seen := make(map[string]bool, len(r.Headers))
	total := 0
	for name, value := range r.Headers {
		field := "headers." + name
		if len(name) > MaxHeaderNameBytes || !isToken(name) {
			return invalid(field, fmt.Sprintf("name must be an HTTP token of 1..%d bytes", MaxHeaderNameBytes))
		}
		canon := http.CanonicalHeaderKey(name)
		if deniedHeaders[canon] || strings.HasPrefix(canon, "Sluice-") {
			return invalid(field, "is set by the server or is hop-by-hop, and may not be given")
		}
		if seen[canon] {
			return invalid(field, "is given twice (header names are case-insensitive)")
		}
		seen[canon] = true
		if !validHeaderValue(value) {
			return invalid(field, "value must not contain control characters")
		}
		total += len(name) + len(value)
	}
	if total > MaxHeaderBytes {
		return invalid("headers", fmt.Sprintf("must total at most %d bytes", MaxHeaderBytes))
	}
	if len(r.Body) > MaxBodyBytes {
		return invalid("body", fmt.Sprintf("must be at most %d bytes", MaxBodyBytes))
	}
	if len(r.Body) > 0 && !json.Valid(r.Body) {
		return invalid("body", "must be valid JSON")
	}
	return nil
}

// parseURL checks the url field and returns it parsed.
func (r *Request) parseURL() (*url.URL, error) {
	switch {
	case r.URL == "":
		return nil, invalid("url", "is required")
	case len(r.URL) > MaxURLBytes:
		return nil, invalid("url", fmt.Sprintf("must be at most %d bytes", MaxURLBytes))
	}
	u, err := url.Parse(r.URL)
	if err != nil {
		return nil, invalid("url", "must be an absolute http or https URL: "+errors.Unwrap(err).Error())
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, invalid("url", "scheme must be http or https")
	case u.User != nil:
		return nil, invalid("url", "must not contain userinfo (put credentials in a header)")
	case u.Opaque != "" || u.Hostname() == "":
		return nil, invalid("url", "must name a host")
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return nil, invalid("url", "port must be 1..65535")
		}
	}
	return u, nil
}

func invalid(field, msg string) error {
	return &jobs.ValidationError{Field: "payload." + field, Msg: msg}
}

// isToken reports whether s is an HTTP token (RFC 9110 section 5.6.2).
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// validHeaderValue refuses control characters other than horizontal tab.
func validHeaderValue(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < ' ' && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}
