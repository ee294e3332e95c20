package chaos

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sluicehq/sluice/jobs"
)

// Op is the kind of an effect log line.
type Op string

// The kinds of line; see the package documentation.
const (
	OpAccept Op = "accept" // accept <job>
	OpStart  Op = "start"  // start <job> <attempt> <incarnation>
	OpDone   Op = "done"   // done <job> <attempt> <incarnation>
	OpEnd    Op = "end"    // end <incarnation> kill|term
)

// Ending is how an engine incarnation ended.
type Ending string

// The endings.
const (
	// Killed: an abrupt end (SIGKILL, a crash): work in flight is lost and
	// its leases are recovered later.
	Killed Ending = "kill"
	// Stopped: a graceful stop (SIGTERM): quiesce, drain, stop.
	Stopped Ending = "term"
)

// Event is one line of the effect log. Fields that the line's Op does not
// carry are zero.
type Event struct {
	Op          Op
	Job         int64
	Attempt     int
	Incarnation int
	Ending      Ending // OpEnd only
}

// String returns the event as its log line, without the newline.
func (e Event) String() string { return string(e.appendTo(nil)) }

func (e Event) appendTo(b []byte) []byte {
	b = append(b, e.Op...)
	switch e.Op {
	case OpAccept:
		b = append(b, ' ')
		b = strconv.AppendInt(b, e.Job, 10)
	case OpStart, OpDone:
		b = append(b, ' ')
		b = strconv.AppendInt(b, e.Job, 10)
		b = append(b, ' ')
		b = strconv.AppendInt(b, int64(e.Attempt), 10)
		b = append(b, ' ')
		b = strconv.AppendInt(b, int64(e.Incarnation), 10)
	case OpEnd:
		b = append(b, ' ')
		b = strconv.AppendInt(b, int64(e.Incarnation), 10)
		b = append(b, ' ')
		b = append(b, e.Ending...)
	}
	return b
}

// parseEvent parses one line (without its newline).
func parseEvent(line string) (Event, bool) {
	f := strings.Fields(line)
	if len(f) == 0 {
		return Event{}, false
	}
	num := func(s string) (int64, bool) {
		n, err := strconv.ParseInt(s, 10, 64)
		return n, err == nil && n >= 0
	}
	e := Event{Op: Op(f[0])}
	switch e.Op {
	case OpAccept:
		if len(f) != 2 {
			return e, false
		}
		id, ok := num(f[1])
		e.Job = id
		return e, ok
	case OpStart, OpDone:
		if len(f) != 4 {
			return e, false
		}
		id, ok1 := num(f[1])
		att, ok2 := num(f[2])
		inc, ok3 := num(f[3])
		e.Job, e.Attempt, e.Incarnation = id, int(att), int(inc)
		return e, ok1 && ok2 && ok3 && att > 0
	case OpEnd:
		if len(f) != 3 {
			return e, false
		}
		inc, ok := num(f[1])
		e.Incarnation, e.Ending = int(inc), Ending(f[2])
		return e, ok && (e.Ending == Killed || e.Ending == Stopped)
	}
	return e, false
}

// EffectLog appends events to an effect log file. It is safe for
// concurrent use, and several processes may append to the same file. Each
// event costs one write(2) of a line of at most 60 bytes, with no fsync: a
// killed process loses nothing it wrote (the page cache survives it), an
// operating-system crash may.
type EffectLog struct {
	f *os.File
}

// OpenEffectLog opens the effect log at path for appending, creating it if
// needed.
func OpenEffectLog(path string) (*EffectLog, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("chaos: open effect log: %w", err)
	}
	return &EffectLog{f: f}, nil
}

// Append writes e as one line with a single write: with O_APPEND, a write
// to a regular file lands whole at the end of the file, so concurrent
// writers never interleave within a line.
func (l *EffectLog) Append(e Event) error {
	var buf [80]byte
	b := append(e.appendTo(buf[:0]), '\n')
	if _, err := l.f.Write(b); err != nil {
		return fmt.Errorf("chaos: effect log: %w", err)
	}
	return nil
}

// Close closes the file. Later appends fail.
func (l *EffectLog) Close() error { return l.f.Close() }

// Log is a parsed effect log.
type Log struct {
	Events []Event // in file order
	// Torn holds the lines that did not parse: a line cut short by a kill
	// (the last one written by the killed process). The Checker allows one
	// per kill.
	Torn []string
}

// ReadLog parses an effect log. Blank lines are skipped; lines that do not
// parse, and a last line with no newline, are kept in Torn; only a read
// error fails.
func ReadLog(r io.Reader) (*Log, error) {
	lg := &Log{}
	br := bufio.NewReader(r)
	for {
		line, err := br.ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("chaos: read effect log: %w", err)
		}
		if complete := strings.HasSuffix(line, "\n"); complete {
			lg.addLine(strings.TrimSuffix(line, "\n"))
		} else if line != "" {
			lg.Torn = append(lg.Torn, line)
		}
		if err != nil {
			return lg, nil
		}
	}
}

// addLine parses one complete line. A line that does not parse may be a
// torn line (with no newline) followed by another writer's whole line: the
// longest suffix that parses is kept as an event and the rest is torn.
func (lg *Log) addLine(line string) {
	if strings.TrimSpace(line) == "" {
		return
	}
	if e, ok := parseEvent(line); ok {
		lg.Events = append(lg.Events, e)
		return
	}
	for i := 1; i < len(line); i++ {
		for _, op := range []Op{OpAccept, OpStart, OpDone, OpEnd} {
			if !strings.HasPrefix(line[i:], string(op)+" ") {
				continue
			}
			if e, ok := parseEvent(line[i:]); ok {
				lg.Torn = append(lg.Torn, line[:i])
				lg.Events = append(lg.Events, e)
				return
			}
		}
	}
	lg.Torn = append(lg.Torn, line)
}

// ReadLogFile parses the effect log at path.
func ReadLogFile(path string) (*Log, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("chaos: read effect log: %w", err)
	}
	defer f.Close()
	return ReadLog(f)
}

// EffectHandler is a jobs.Handler that records its work in an effect log:
// a start line, then Do, then, if Do returned nil, a done line, then nil.
// An error from Do (or from the log) is returned as is, so the job is
// retried, and no done line is written.
type EffectHandler struct {
	Log         *EffectLog
	Incarnation int
	// Do is the job's work; nil means none. It should return soon after
	// ctx ends, with an error.
	Do func(ctx context.Context, job *jobs.Job) error
}

// Work implements jobs.Handler.
func (h *EffectHandler) Work(ctx context.Context, job *jobs.Job) error {
	ev := Event{Op: OpStart, Job: job.ID, Attempt: job.Attempt, Incarnation: h.Incarnation}
	if err := h.Log.Append(ev); err != nil {
		return err
	}
	if h.Do != nil {
		if err := h.Do(ctx, job); err != nil {
			return err
		}
	}
	ev.Op = OpDone
	return h.Log.Append(ev)
}

// RandomSleep returns a Do function for EffectHandler that sleeps a random
// time in [minD, maxD], drawn from a generator seeded with seed (safe for
// concurrent use), and returns the context's cause if ctx ends first.
func RandomSleep(minD, maxD time.Duration, seed uint64) func(ctx context.Context, job *jobs.Job) error {
	var mu sync.Mutex
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	return func(ctx context.Context, _ *jobs.Job) error {
		mu.Lock()
		d := minD
		if maxD > minD {
			d += time.Duration(rng.Int64N(int64(maxD-minD) + 1))
		}
		mu.Unlock()
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
			return nil
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}
}
