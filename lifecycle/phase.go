package lifecycle

import "strconv"

// Phase is a step of the shutdown sequence. Each phase is logged and passed
// to Config.OnPhase when it begins.
type Phase int

const (
	// PhaseNotReady: readiness goes false ([Service.Ready], ReadyzHandler
	// answers 503). It happens the moment shutdown is requested.
	PhaseNotReady Phase = iota + 1
	// PhaseDrainDelay: Config.DrainDelay passes while work is still served,
	// so load balancers see the failing readiness check and stop routing.
	// It lasts zero time when the service never became ready.
	PhaseDrainDelay
	// PhaseQuiesce: stop accepting. The context of every task started with
	// [Service.Go] is canceled, Go returns [ErrShuttingDown], and every
	// [Quiescer] is called (listeners close).
	PhaseQuiesce
	// PhaseDrain: work in flight finishes. Every [Drainer] is called and
	// tasks are waited for until the drain deadline; then
	// [Service.WorkContext] is canceled.
	PhaseDrain
	// PhaseStop: components stop one at a time, in reverse start order.
	PhaseStop
	// PhaseStopped: shutdown is over; Run, Stop and Wait are about to
	// return.
	PhaseStopped
)

var phaseNames = [...]string{
	PhaseNotReady:   "not-ready",
	PhaseDrainDelay: "drain-delay",
	PhaseQuiesce:    "quiesce",
	PhaseDrain:      "drain",
	PhaseStop:       "stop",
	PhaseStopped:    "stopped",
}

func (p Phase) String() string {
	if p > 0 && int(p) < len(phaseNames) {
		return phaseNames[p]
	}
	return "Phase(" + strconv.Itoa(int(p)) + ")"
}
