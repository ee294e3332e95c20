package admit

// Waiter states; a waiter leaves stateWaiting exactly once, under the
// Limiter's mu, and whoever moves it sends once on ready.
const (
	stateWaiting uint8 = iota
	stateGranted       // admitted by dispatchLocked; the slot is counted
	stateShed          // evicted by a more important request
	stateDrained       // refused by Close
)

// waiter is a request waiting in the queue.
type waiter struct {
	class      Class
	state      uint8         // guarded by the Limiter's mu
	prev, next *waiter       // guarded by the Limiter's mu
	ready      chan struct{} // buffer 1, one send (see the states); nobody closes it
}

// waitList is an intrusive FIFO of waiters: O(1) push, pop and removal
// from the middle, so a waiter whose context ends leaves at once. All
// methods need the Limiter's mu.
type waitList struct {
	head, tail *waiter
	n          int
}

func (q *waitList) pushBack(w *waiter) {
	w.next, w.prev = nil, q.tail
	if q.tail != nil {
		q.tail.next = w
	} else {
		q.head = w
	}
	q.tail = w
	q.n++
}

func (q *waitList) remove(w *waiter) {
	if w.prev != nil {
		w.prev.next = w.next
	} else {
		q.head = w.next
	}
	if w.next != nil {
		w.next.prev = w.prev
	} else {
		q.tail = w.prev
	}
	w.next, w.prev = nil, nil
	q.n--
}

func (q *waitList) popFront() *waiter {
	w := q.head
	if w != nil {
		q.remove(w)
	}
	return w
}
