package sqlitestore

import (
	"context"
	"sync"

	"github.com/sluicehq/sluice/jobs"
)

// listenBuffer is each listener's channel buffer. Notifications are hints
// (see jobs.Notifier): when a listener falls this far behind, newer ones
// are dropped for it, and its worker finds the work at its next poll.
const listenBuffer = 256

// hub delivers the Store's in-process notifications.
type hub struct {
	mu   sync.Mutex
	subs map[chan jobs.Notification]struct{} // made by Open; nil once the Store closed
}

// Listen implements jobs.Notifier for the calls made through this Store,
// in this process: an Enqueue that inserted jobs into a queue (with At set
// to the earliest RunAt when none is due now, so that a worker waits until
// then rather than fetching), a PutQueue (a queue may have been resumed),
// and every cancellation requested of a running job: by Cancel, or by a
// group's failure in Complete or RecoverLeases (CancelGroupOnFailure).
// Retries and leases recovered are not notified: the worker that records
// a retry looks again itself, and recovered jobs are found by polling.
// Another process writing the same file
// notifies nobody here; LocalOnly says so, and a worker then keeps finding
// such changes by polling and heartbeats. The channel closes when ctx ends
// or the Store closes.
func (s *Store) Listen(ctx context.Context) (<-chan jobs.Notification, error) {
	ch := make(chan jobs.Notification, listenBuffer)
	s.hub.mu.Lock()
	if s.hub.subs == nil {
		s.hub.mu.Unlock()
		return nil, jobs.ErrClosed
	}
	s.hub.subs[ch] = struct{}{}
	s.hub.mu.Unlock()
	context.AfterFunc(ctx, func() {
		s.hub.mu.Lock()
		defer s.hub.mu.Unlock()
		if _, ok := s.hub.subs[ch]; ok {
			delete(s.hub.subs, ch)
			close(ch)
		}
	})
	return ch, nil
}

// LocalOnly implements jobs.LocalNotifier: notifications come only from
// this process.
func (s *Store) LocalOnly() bool { return true }

// notify sends n to every listener that has room for it.
func (s *Store) notify(n jobs.Notification) {
	s.hub.mu.Lock()
	defer s.hub.mu.Unlock()
	for ch := range s.hub.subs {
		select {
		case ch <- n:
		default:
		}
	}
}

// closeListeners closes every listener's channel (Close).
func (s *Store) closeListeners() {
	s.hub.mu.Lock()
	defer s.hub.mu.Unlock()
	for ch := range s.hub.subs {
		close(ch)
	}
	s.hub.subs = nil
}

var _ jobs.LocalNotifier = (*Store)(nil)
var _ jobs.Lookahead = (*Store)(nil)
