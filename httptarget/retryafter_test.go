package httptarget

import (
	"testing"
	"time"
)

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, c := range []struct {
		in   string
		want time.Duration
	}{
		{"0", 0}, {" 12 ", 12 * time.Second}, {"3600", time.Hour}, {"3601", time.Hour},
		{"99999999999999999999999", time.Hour}, {"-5", 0}, {"1.5", 0}, {"12abc", 0},
		{"Fri, 02 Jan 2026 03:05:05 GMT", time.Minute},
		{"Friday, 02-Jan-26 03:05:05 GMT", time.Minute}, // RFC 850, still accepted
		{"Fri, 02 Jan 2026 03:00:00 GMT", 0},            // past
		{"Sat, 03 Jan 2027 00:00:00 GMT", time.Hour},    // bounded
		{"tomorrow", 0},
	} {
		if got := parseRetryAfter(c.in, now, time.Hour); got != c.want {
			t.Errorf("parseRetryAfter(%q) = %v, want %v", c.in, got, c.want)
		}
	}
}
