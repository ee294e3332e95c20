// Package lifecycle owns a service's components and goroutines from start
// to exit: ordered start with rollback, owned background tasks whose errors
// are seen, signal handling, readiness, and a shutdown in five observable,
// bounded phases. It imports only the standard library.
//
// # Use
//
//	svc := lifecycle.New(lifecycle.Config{DrainDelay: 5 * time.Second})
//	svc.Add("db", lifecycle.Hook{OnStart: db.Open, OnStop: db.Close})
//	svc.Go("worker", worker.Run)             // ctx ends at phase 3
//	mux.Handle("GET /readyz", svc.ReadyzHandler())
//	svc.AddHTTPServer("http", &http.Server{Addr: ":8080", Handler: mux}, lifecycle.HTTPServerConfig{})
//	lifecycle.Main(svc)                      // run until SIGTERM, exit 0/1/2
//
// Components start one at a time in the order they were added. If one
// fails, the ones already started are shut down in reverse order and the
// error is returned. Tasks queued with [Service.Go] start after every
// component has.
//
// # Shutdown
//
// A shutdown starts on the first SIGINT or SIGTERM, the end of Run's
// context, [Service.Shutdown] or [Service.Stop], a fatal task error, or a
// failed start. It runs these phases, each logged and reported to
// Config.OnPhase:
//
//  1. [PhaseNotReady]: readiness goes false at once; /readyz answers 503,
//     /healthz keeps answering 200.
//  2. [PhaseDrainDelay]: Config.DrainDelay passes while work is still served,
//     so load balancers stop routing to the process.
//  3. [PhaseQuiesce]: stop accepting. Task contexts are canceled, Go returns
//     [ErrShuttingDown], every [Quiescer] runs, listeners close.
//  4. [PhaseDrain]: in-flight work finishes: every [Drainer] runs and tasks
//     are waited for until the drain deadline, when [Service.WorkContext]
//     and HTTP handlers' contexts are canceled.
//  5. [PhaseStop]: components stop one at a time in reverse start order (the
//     HTTP server, then workers, then the database last).
//
// A second signal makes Run return at once with an error matching
// [ErrForced] that lists what was still running, with stacks; [Main] then
// exits with status 2.
//
// # Guarantees
//
// Bounded: Stop, Wait and Run return within Config.ShutdownTimeout plus
// Config.Margin of the shutdown request, whatever the components do. An
// operation or task still running Margin after its deadline is abandoned:
// its goroutine is left running, and it is named with its stack in a
// [StopTimeoutError], so the exit status is non-zero. That is the only case
// in which a goroutine started by this package outlives Stop, Wait or Run
// (besides the shutdown itself after a forced exit, which ends the process).
// Otherwise, when they return, every goroutine the package started has
// returned.
//
// Errors are never dropped: start, stop and task errors come back joined as
// [ComponentError] values, and every caller of Stop or Wait gets the same
// result. Stop is idempotent, safe from several goroutines, and safe before
// Start.
//
// Panics are not recovered. A panic in a component or a task crashes the
// process with its stack: lifecycle code is infrastructure, and a service
// whose parts panic should restart rather than run half-broken. (Pool tasks
// and job handlers, which run user work, recover instead; see workpool.)
//
// # Time and cost
//
// The package reads the clock through the time package only, so tests run it
// under testing/synctest with a fake clock: a 30s shutdown takes
// microseconds and deadlines are exact. Each component operation and task
// runs in its own goroutine (one per operation, about a microsecond to
// start); a stack dump, which stops the world briefly, is taken only when
// something is stuck or forced.
package lifecycle
