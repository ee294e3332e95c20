package workpool

// list is an intrusive FIFO of tasks: O(1) push, pop and removal from the
// middle (a queued task whose context ends leaves at once). All methods need
// the pool's mu.
type list struct {
	head, tail *Task
	n          int
}

func (l *list) pushBack(t *Task) {
	t.next, t.prev = nil, l.tail
	if l.tail != nil {
		l.tail.next = t
	} else {
		l.head = t
	}
	l.tail = t
	l.n++
}

func (l *list) remove(t *Task) {
	if t.prev != nil {
		t.prev.next = t.next
	} else {
		l.head = t.next
	}
	if t.next != nil {
		t.next.prev = t.prev
	} else {
		l.tail = t.prev
	}
	t.next, t.prev = nil, nil
	l.n--
}

func (l *list) popFront() *Task {
	t := l.head
	if t != nil {
		l.remove(t)
	}
	return t
}
