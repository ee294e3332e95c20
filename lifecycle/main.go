package lifecycle

import (
	"context"
	"errors"
	"os"
)

// Exit codes returned by [ExitCode].
const (
	ExitOK     = 0 // clean stop
	ExitError  = 1 // a start, task or stop failed, a shutdown cause, or a timeout
	ExitForced = 2 // a second signal cut the shutdown short
)

// ExitCode maps the error from Run, Stop or Wait to a process exit status:
// nil is ExitOK, an error matching ErrForced is ExitForced, anything else is
// ExitError.
func ExitCode(err error) int {
	switch {
	case err == nil:
		return ExitOK
	case errors.Is(err, ErrForced):
		return ExitForced
	default:
		return ExitError
	}
}

// Main runs svc with [Service.Run] and exits the process with [ExitCode] of
// the result. Run has logged the error (with the stacks of anything stuck).
// Use it as the last line of func main.
func Main(svc *Service) {
	os.Exit(ExitCode(svc.Run(context.Background())))
}
