package jobs_test

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/sluicehq/sluice/jobs"
)

// Text a store cannot keep (NUL bytes, invalid UTF-8) is refused before it
// reaches one, naming the field.
func TestNormalizeRefusesBadText(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		field string
		job   jobs.NewJob
	}{
		{"kind", jobs.NewJob{Kind: "a\x00b"}},
		{"kind", jobs.NewJob{Kind: "a\xffb"}},
		{"queue", jobs.NewJob{Kind: "k", Queue: "q\x00"}},
		{"idempotency_key", jobs.NewJob{Kind: "k", IdempotencyKey: "\x00"}},
		{"group", jobs.NewJob{Kind: "k", Group: "g\xc3"}},
		{"payload", jobs.NewJob{Kind: "k", Payload: json.RawMessage("\"\xff\"")}},
	} {
		err := tc.job.Normalize(now)
		var ve *jobs.ValidationError
		if !errors.As(err, &ve) || ve.Field != tc.field {
			t.Errorf("Normalize(%+v) = %v, want a ValidationError for %s", tc.job, err, tc.field)
		}
	}
	ok := jobs.NewJob{Kind: "ключ", Group: "grüppe", Payload: json.RawMessage(`{"s":"\u0000 ✓"}`)}
	if err := ok.Normalize(now); err != nil {
		t.Errorf("Normalize of valid UTF-8 (and an escaped NUL in JSON): %v", err)
	}
	q := jobs.QueueConfig{Name: "q\x00"}
	var ve *jobs.ValidationError
	if err := q.Normalize(); !errors.As(err, &ve) || ve.Field != "name" {
		t.Errorf("QueueConfig{Name with NUL}.Normalize() = %v", err)
	}
}
