package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"strings"
)

var (
	// ErrShuttingDown is returned by [Service.Go] once the service stops
	// accepting work (phase 3, or a Stop before Start), and by Start and Run
	// when the service was stopped before or while it started. Components may
	// return it from their own submission paths after Quiesce.
	ErrShuttingDown = errors.New("lifecycle: shutting down")

	// ErrAlreadyStarted is returned by a second call to Start or Run.
	ErrAlreadyStarted = errors.New("lifecycle: already started")

	// ErrForced matches (with errors.Is) the error Run returns when a second
	// signal cut the graceful shutdown short. [ExitCode] maps it to 2.
	ErrForced = errors.New("lifecycle: forced exit by second signal")
)

// Operation names used in [ComponentError] and [Stuck].
const (
	OpStart   = "start"   // Component.Start
	OpQuiesce = "quiesce" // Quiescer.Quiesce (phase 3)
	OpDrain   = "drain"   // Drainer.Drain (phase 4)
	OpStop    = "stop"    // Component.Stop (phase 5)
	OpTask    = "task"    // a goroutine started with Service.Go
)

// ComponentError is an error returned by a component's operation or by a
// task started with [Service.Go]. It unwraps to the original error.
type ComponentError struct {
	Name string // the name given to Add, AddHTTPServer or Go
	Op   string // OpStart, OpQuiesce, OpDrain, OpStop or OpTask
	Err  error
}

func (e *ComponentError) Error() string {
	return fmt.Sprintf("lifecycle: %s %q: %v", e.Op, e.Name, e.Err)
}

func (e *ComponentError) Unwrap() error { return e.Err }

// Stuck is a component operation or task that had not returned when the
// service gave up waiting for it.
type Stuck struct {
	Name string // the name given to Add, AddHTTPServer or Go
	Op   string // OpStart, OpQuiesce, OpDrain, OpStop or OpTask

	// Stack is the goroutine's stack, in runtime.Stack's format, taken when
	// the service gave up on it. It is empty for a Stop that was never called
	// because the shutdown budget was already spent.
	Stack string
}

func (s Stuck) String() string { return fmt.Sprintf("%s %q", s.Op, s.Name) }

// StopTimeoutError lists what did not return in time: operations that ran
// past their deadline plus Config.Margin, which the service abandoned (their
// goroutines may still be running), and Stops never called because the
// budget was spent. With Forced set it lists what was still running when a
// second signal ended the shutdown.
//
// errors.Is(err, context.DeadlineExceeded) is true for a timeout and
// errors.Is(err, ErrForced) for a forced exit.
type StopTimeoutError struct {
	Forced bool
	Stuck  []Stuck
}

func (e *StopTimeoutError) Error() string {
	var b strings.Builder
	b.WriteString(e.header())
	for _, s := range e.Stuck {
		b.WriteString("\n\n")
		b.WriteString(s.String())
		b.WriteString(":\n")
		if s.Stack == "" {
			b.WriteString("(not called: shutdown budget spent)")
		} else {
			b.WriteString(strings.TrimRight(s.Stack, "\n"))
		}
	}
	return b.String()
}

// header is the first line of Error: what happened and who, without stacks.
func (e *StopTimeoutError) header() string {
	var b strings.Builder
	if e.Forced {
		b.WriteString(ErrForced.Error())
	} else {
		b.WriteString("lifecycle: shutdown timed out")
	}
	if len(e.Stuck) == 0 {
		return b.String()
	}
	if e.Forced {
		b.WriteString("; still running: ")
	} else {
		b.WriteString("; did not return: ")
	}
	for i, s := range e.Stuck {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(s.String())
	}
	return b.String()
}

// Is reports whether target is context.DeadlineExceeded (for a timeout) or
// ErrForced (for a forced exit).
func (e *StopTimeoutError) Is(target error) bool {
	if e.Forced {
		return target == ErrForced
	}
	return target == context.DeadlineExceeded
}
