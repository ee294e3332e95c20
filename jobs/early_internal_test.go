package jobs

import (
	"testing"
	"time"
)

// TestNoteEarlyCancelDropsOldNotes: notes older than a lease are dropped
// as new ones arrive, oldest first, and a note taken again keeps its
// newer time.
func TestNoteEarlyCancelDropsOldNotes(t *testing.T) {
	w := &Worker{cfg: WorkerConfig{Lease: 10 * time.Second}, early: map[int64]time.Time{}}
	t0 := time.Unix(1_000_000, 0)
	w.noteEarlyCancel(1, t0)
	w.noteEarlyCancel(2, t0.Add(time.Second))
	w.noteEarlyCancel(1, t0.Add(5*time.Second)) // 1 again, later
	w.noteEarlyCancel(3, t0.Add(11*time.Second))
	if _, ok := w.early[1]; !ok {
		t.Fatal("note 1, taken again at 5s, was dropped at 11s")
	}
	if _, ok := w.early[2]; !ok {
		t.Fatal("note 2 (1s) dropped at 11s, within a lease")
	}
	w.noteEarlyCancel(4, t0.Add(12*time.Second))
	if _, ok := w.early[2]; ok {
		t.Fatal("note 2 (1s) kept at 12s, over a lease old")
	}
	w.noteEarlyCancel(5, t0.Add(16*time.Second))
	if _, ok := w.early[1]; ok {
		t.Fatal("note 1 (5s) kept at 16s")
	}
	if len(w.early) != 3 || len(w.earlyOrder) != 3 {
		t.Fatalf("early %v, order %v: want notes 3, 4 and 5 only", w.early, w.earlyOrder)
	}
}

// TestHeldJobStopAndRenewal: a lost lease outranks a requested
// cancellation until a heartbeat renews the lease of a job that has not
// started; then the lost lease is withdrawn and the request stays.
func TestHeldJobStopAndRenewal(t *testing.T) {
	for _, tc := range []struct {
		name  string
		steps []error // stop causes; nil means a renewal
		want  error
	}{
		{"lost, renewed", []error{errLeaseLost, nil}, nil},
		{"canceled, lost, renewed", []error{errCancelRequested, errLeaseLost, nil}, errCancelRequested},
		{"lost, canceled, renewed", []error{errLeaseLost, errCancelRequested, nil}, errCancelRequested},
		{"canceled, renewed", []error{errCancelRequested, nil}, errCancelRequested},
		{"lost, renewed, lost", []error{errLeaseLost, nil, errLeaseLost}, errLeaseLost},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := &heldJob{}
			for _, cause := range tc.steps {
				if cause == nil {
					h.renewed()
				} else {
					h.stop(cause)
				}
			}
			if h.pending != tc.want {
				t.Fatalf("pending %v, want %v", h.pending, tc.want)
			}
		})
	}
}
