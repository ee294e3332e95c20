package workpool

import "context"

// list is an intrusive FIFO of Wait submitters: O(1) push, pop and removal
// from the middle (a Wait submitter whose context or MaxWait ends leaves at
// once). All methods need the pool's mu.
type list struct {
	head, tail *waiter
	n          int
}

func (l *list) pushBack(w *waiter) {
	w.next, w.prev = nil, l.tail
	if l.tail != nil {
		l.tail.next = w
	} else {
		l.head = w
	}
	l.tail = w
	l.n++
}

func (l *list) remove(w *waiter) {
	if w.prev != nil {
		w.prev.next = w.next
	} else {
		l.head = w.next
	}
	if w.next != nil {
		w.next.prev = w.prev
	} else {
		l.tail = w.prev
	}
	w.next, w.prev = nil, nil
	l.n--
}

func (l *list) popFront() *waiter {
	w := l.head
	if w != nil {
		l.remove(w)
	}
	return w
}

// entry is one task on its way to a worker: in a queue, in a parked
// worker's mailbox, or the first task of a new worker. A heavy entry points
// to its Task. A light entry (t == nil) is a task of Go or GoOpts with a
// background context, no Tag and no MaxQueueWait, in a pool without
// OnStart, OnFinish or OnReject hooks and without CoDel: nothing needs to
// find or expire it, so it has no Task record, only its func and class
// (Close makes a Task for it if it never started). The zero entry means
// "none" (or, in a mailbox, "exit").
type entry struct {
	fn   func(context.Context) error // set for light entries only
	t    *Task
	prio Priority
}

func (e entry) none() bool { return e.fn == nil && e.t == nil }

// ring is one class's FIFO of queued entries: a circular buffer indexed by
// sequence number (slot = seq & mask), so that a heavy task, which records
// its sequence number, can leave from the middle in O(1): its slot becomes
// a hole that pops skip. All methods need the pool's mu.
//
// The buffer grows by doubling when full. Holes count against its length:
// so that a stalled queue whose tasks keep being canceled cannot grow it
// without bound, a full buffer with at least as many holes as entries is
// compacted instead of grown. A large buffer is released when its ring
// drains, so that a burst does not pin its peak size.
type ring struct {
	buf        []entry
	head, tail uint64 // sequence numbers: first slot in use, one past the last
	holes      int    // removed entries in [head, tail)
}

// len returns the number of entries (holes excluded).
func (r *ring) len() int { return int(r.tail-r.head) - r.holes }

// push appends e and returns its sequence number.
func (r *ring) push(e entry) uint64 {
	if int(r.tail-r.head) == len(r.buf) {
		r.makeRoom()
	}
	seq := r.tail
	r.buf[seq&uint64(len(r.buf)-1)] = e
	r.tail++
	if e.t != nil {
		e.t.seq = seq
	}
	return seq
}

// makeRoom compacts a buffer that is at least half holes, or doubles it.
func (r *ring) makeRoom() {
	n := len(r.buf)
	size := max(2*n, 16)
	if n > 0 && r.holes*2 >= n {
		size = n
	}
	buf := make([]entry, size)
	mask, newMask := uint64(n-1), uint64(size-1)
	seq := r.head
	if r.holes == 0 { // sequence numbers stay: slots move, nothing else changes
		for s := r.head; s != r.tail; s++ {
			buf[s&newMask] = r.buf[s&mask]
		}
	} else { // renumber the entries from head, dropping the holes
		for s := r.head; s != r.tail; s++ {
			e := r.buf[s&mask]
			if e.none() {
				continue
			}
			if e.t != nil {
				e.t.seq = seq
			}
			buf[seq&newMask] = e
			seq++
		}
		r.tail, r.holes = seq, 0
	}
	r.buf = buf
}

// keepBuf is the largest buffer (in entries) a drained ring keeps.
const keepBuf = 1024

// popFront removes and returns the oldest entry, or the zero entry.
func (r *ring) popFront() entry {
	mask := uint64(len(r.buf) - 1)
	for r.head != r.tail {
		i := r.head & mask
		e := r.buf[i]
		r.buf[i] = entry{}
		r.head++
		if e.none() {
			r.holes--
			continue
		}
		r.settle()
		return e
	}
	return entry{}
}

// settle resets a ring that holds only holes, and releases its buffer if
// it is large.
func (r *ring) settle() {
	if r.len() > 0 {
		return
	}
	r.head, r.holes = r.tail, 0 // hole slots are already zero
	if len(r.buf) > keepBuf {
		r.buf = nil
	}
}

// popBack removes and returns the newest entry, or the zero entry.
func (r *ring) popBack() entry {
	mask := uint64(len(r.buf) - 1)
	for r.tail != r.head {
		r.tail--
		i := r.tail & mask
		e := r.buf[i]
		r.buf[i] = entry{}
		if !e.none() {
			r.settle()
			return e
		}
		r.holes--
	}
	return entry{}
}

// remove takes out the entry with sequence number seq, which must be in
// the ring.
func (r *ring) remove(seq uint64) {
	r.buf[seq&uint64(len(r.buf)-1)] = entry{}
	r.holes++
	r.settle()
}
