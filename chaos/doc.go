// Package chaos tests the durable job engine under realistic failure: it
// records what a run of the engine did in an effect log, and a [Checker]
// judges the log against the store's final state: no accepted job lost, a
// job run again only when a kill explains it, no attempt used up by a
// graceful shutdown. The tests of this package run the engine as a real
// process on a SQLite file and kill it (SIGKILL) or stop it (SIGTERM)
// repeatedly under load; `sluice chaos` and the multi-node PostgreSQL tests
// reuse the log and the checker.
//
// # The effect log
//
// One text file, opened with O_APPEND by every process that writes to it
// ([OpenEffectLog]); each line is written with one write(2), so lines from
// several processes never interleave and a kill -9 can at worst cut the last
// line short ([ReadLog] counts such lines as torn). Four kinds of line:
//
//	accept <job>                    the enqueuer got the job's ID from Enqueue
//	start  <job> <attempt> <inc>    a handler begins (before any work)
//	done   <job> <attempt> <inc>    the handler's work is complete (before it returns nil)
//	end    <inc> kill|term          how engine incarnation <inc> ended
//
// An incarnation is one run of one engine process; the orchestrator (the
// test, or `sluice chaos`) numbers them, passes the number to the process,
// and writes the end line once the process has exited: kill for an abrupt
// end (SIGKILL, a crash), term for a graceful stop (SIGTERM: quiesce, drain
// within a deadline, stop). An incarnation without an end line is judged as
// a graceful one. [EffectHandler] writes the start and done lines.
//
// # Rules
//
// For each accepted job J, with final stored state F (from [Snapshot]):
//
//  1. Nothing lost: F exists and is succeeded, and some done line of J has
//     attempt F.Attempt (the recorded success is a run that did its work).
//     A succeeded job with no such line is a phantom: the store claims a
//     success no handler reported.
//  2. Duplicates: J ran more than once after its work was complete when a
//     start or done line of J follows one of its done lines. That is
//     allowed only if every earlier done line belongs to an incarnation that
//     ended by kill, other than the later line's own: the work was complete
//     but the success not yet recorded when the process died, so lease
//     recovery ran it again (at-least-once). Any other repeat is an
//     unexplained duplicate, in particular every repeat under SIGTERM.
//     This rule applies to every job with lines in the log, accepted or
//     not: an effect must not repeat either way.
//  3. Attempts: Fetch increments Attempt, a Released outcome (a graceful
//     stop) gives it back, lease recovery after a kill keeps it. So the
//     F.Attempt-1 attempts before the successful one were used up, and each
//     needs a kill of its own to explain it. Attempt k is explained when
//     the last start line of J with attempt k is in a kill-ended
//     incarnation that did not start J again (a kill ends one attempt; an
//     attempt ended while the process lived, by a lost lease, is not
//     explained). An attempt with no start line (claimed, then killed
//     before its handler began) needs a kill-ended incarnation with no line
//     of J, one per such attempt. Anything else, chiefly an attempt whose
//     last start is in a graceful incarnation, is an attempt used up by
//     shutdown. So under SIGTERM alone every job succeeds with Attempt 1.
//  4. Torn lines: at most one per kill.
//
// Informational, not violations: starts with no done in a killed
// incarnation (work in flight at a kill), starts with no done in a graceful
// one (work interrupted at the drain deadline and released; its attempt
// must come back, which rule 3 checks), and jobs with effects but no accept
// line (the enqueue committed but its answer never reached the enqueuer).
// Jobs at their max attempts fail for good, which rule 1 reports as lost: a
// chaos run should give its jobs more attempts than it has kills.
//
// # Running the loops
//
//	go test -race -count=1 -run 'TestKill9Loop|TestSIGTERMLoop' -v ./chaos/
//
// Each loop re-executes the test binary as the engine (a jobs.Worker in a
// lifecycle.Service on a SQLite file, lease 1s), enqueues about 2000 jobs
// from the test process through jobs.Client on the same file, kills or
// stops and restarts the engine 5 to 8 times at seeded random moments, lets
// a last incarnation finish every job, stops it with SIGTERM and runs the
// Checker. The seed is logged; CHAOS_SEED=<n> repeats the schedule (the
// interleaving of two processes is not reproducible, the schedule is), and
// CHAOS_DIR=<dir> keeps the SQLite file, the effect log and each
// incarnation's stderr there for a post-mortem. -short runs fewer jobs and
// rounds. Under -race on two cores the two loops take about 35s together.
package chaos
