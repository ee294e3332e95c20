package lifecycle

import "context"

// Component is a part of a service with a start and a stop, such as a
// database pool, a queue consumer or a server. Components start one at a
// time in the order they were added and stop in reverse order.
//
// Start is given a context that is canceled when startup ends (successfully
// or not), when Config.StartTimeout passes, or when shutdown is requested
// during startup; it must not be kept for long-running work: use
// [Service.Go] for that. Stop is given a context whose deadline is the
// component's share of the shutdown budget (Config.StopTimeout); a Stop that
// ignores it is abandoned Config.Margin after the deadline and named in a
// [StopTimeoutError].
//
// A component that serves work can also implement [Quiescer] and [Drainer]
// to take part in shutdown phases 3 and 4.
type Component interface {
	Start(ctx context.Context) error
	Stop(ctx context.Context) error
}

// Quiescer is implemented by a component that accepts work (a listener, a
// queue consumer, a pool's Submit). Quiesce is called in phase 3
// ([PhaseQuiesce]), concurrently for every started component that has it: it
// must stop accepting new work (close listeners, make submissions fail, for
// example with [ErrShuttingDown]) and return without waiting for work already
// accepted.
type Quiescer interface {
	Quiesce(ctx context.Context) error
}

// Drainer is implemented by a component that has work in flight. Drain is
// called in phase 4 ([PhaseDrain]), concurrently for every started component
// that has it. It waits for in-flight work to finish; when ctx is done (the
// drain deadline) it must cancel that work and return once it has stopped.
type Drainer interface {
	Drain(ctx context.Context) error
}

// Hook is a [Component] made of functions; each nil field is skipped, so
// Hook{OnStart: open, OnStop: close} is a plain start/stop pair. The zero
// Hook does nothing.
type Hook struct {
	OnStart   func(ctx context.Context) error // phase "start", in Add order
	OnQuiesce func(ctx context.Context) error // phase 3, see Quiescer
	OnDrain   func(ctx context.Context) error // phase 4, see Drainer
	OnStop    func(ctx context.Context) error // phase 5, in reverse Add order
}

// Start calls h.OnStart if it is set.
func (h Hook) Start(ctx context.Context) error { return call(h.OnStart, ctx) }

// Quiesce calls h.OnQuiesce if it is set.
func (h Hook) Quiesce(ctx context.Context) error { return call(h.OnQuiesce, ctx) }

// Drain calls h.OnDrain if it is set.
func (h Hook) Drain(ctx context.Context) error { return call(h.OnDrain, ctx) }

// Stop calls h.OnStop if it is set.
func (h Hook) Stop(ctx context.Context) error { return call(h.OnStop, ctx) }

func call(fn func(context.Context) error, ctx context.Context) error {
	if fn == nil {
		return nil
	}
	return fn(ctx)
}

// entry is a component as the service runs it: one func per operation, nil
// when the component has nothing to do in that phase (no goroutine is
// started for it).
type entry struct {
	name                       string
	start, quiesce, drain, end func(context.Context) error
}

func newEntry(name string, c Component) *entry {
	e := &entry{name: name}
	var h *Hook
	switch c := c.(type) {
	case Hook:
		h = &c
	case *Hook:
		h = c
	}
	if h != nil {
		e.start, e.quiesce, e.drain, e.end = h.OnStart, h.OnQuiesce, h.OnDrain, h.OnStop
		return e
	}
	e.start, e.end = c.Start, c.Stop
	if q, ok := c.(Quiescer); ok {
		e.quiesce = q.Quiesce
	}
	if d, ok := c.(Drainer); ok {
		e.drain = d.Drain
	}
	return e
}
