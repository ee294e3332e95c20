package chaos

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/sluicehq/sluice/jobs"
)

// Checker judges a chaos run: an effect log and the store's final state,
// by the rules in the package documentation. The zero value is ready to
// use.
type Checker struct {
	// MaxListed bounds the job IDs and problem lines Report.Err lists per
	// kind of violation. Zero means 20.
	MaxListed int
}

// Report is a Checker's verdict. The ID lists are sorted.
type Report struct {
	Accepted  int // jobs with an accept line
	Completed int // accepted jobs that ended succeeded with a done line for the recorded attempt

	Incarnations int // incarnations seen in the log (in start, done or end lines)
	Kills        int // incarnations that ended by kill
	Stops        int // incarnations that ended by term (or have no end line)
	Starts       int // start lines
	Dones        int // done lines

	// Violations.

	// Lost: accepted jobs missing from the store or not succeeded, or
	// succeeded with no done line at all.
	Lost []int64
	// Phantom: accepted jobs succeeded at an attempt with no done line,
	// though an other attempt has one.
	Phantom []int64
	// UnexplainedDuplicates: jobs that ran again after their work was
	// complete without a kill to explain it.
	UnexplainedDuplicates []int64
	// ShutdownAttempts: jobs with attempts used up that no kill explains:
	// attempts spent by a graceful shutdown (or by a lease lost in a live
	// process).
	ShutdownAttempts []int64
	// TooManyTorn is set when the log has more torn lines than kills.
	TooManyTorn bool

	// Allowed or informational.

	// AllowedDuplicates: jobs that ran again after their work was complete
	// because a kill struck before the success was recorded.
	AllowedDuplicates []int64
	// InFlightAtKill counts runs (start lines) with no done line in an
	// incarnation that ended by kill.
	InFlightAtKill int
	// Interrupted: jobs with a run (start line) that has no done line in a
	// graceful incarnation: work canceled at the drain deadline, released.
	Interrupted []int64
	// Unacknowledged: jobs with effects but no accept line (an enqueue that
	// committed but whose answer never reached the enqueuer).
	Unacknowledged []int64
	// Torn: lines that did not parse.
	Torn int

	// Problems explains each violation, one line per job and rule, with
	// the log lines involved.
	Problems []string

	maxListed int
}

// OK reports whether the run broke no rule.
func (r *Report) OK() bool {
	return len(r.Lost)+len(r.Phantom)+len(r.UnexplainedDuplicates)+len(r.ShutdownAttempts) == 0 && !r.TooManyTorn
}

// Err returns nil if the run broke no rule, else an error listing the
// offending job IDs of each violation and the first problem lines.
func (r *Report) Err() error {
	if r.OK() {
		return nil
	}
	limit := r.maxListed
	if limit <= 0 {
		limit = 20
	}
	var b strings.Builder
	fmt.Fprintf(&b, "chaos: %d accepted, %d completed: rules broken:", r.Accepted, r.Completed)
	list := func(name string, ids []int64) {
		if len(ids) == 0 {
			return
		}
		shown := ids[:min(len(ids), limit)]
		fmt.Fprintf(&b, "\n  %s: %d %v", name, len(ids), shown)
		if len(shown) < len(ids) {
			b.WriteString(" ...")
		}
	}
	list("lost", r.Lost)
	list("phantom successes", r.Phantom)
	list("unexplained duplicates", r.UnexplainedDuplicates)
	list("attempts used by shutdown", r.ShutdownAttempts)
	if r.TooManyTorn {
		fmt.Fprintf(&b, "\n  %d torn lines for %d kills", r.Torn, r.Kills)
	}
	for i, p := range r.Problems {
		if i == limit {
			fmt.Fprintf(&b, "\n  ... %d more problems", len(r.Problems)-i)
			break
		}
		b.WriteString("\n  ")
		b.WriteString(p)
	}
	return fmt.Errorf("%s", b.String())
}

// String summarizes the figures in one line.
func (r *Report) String() string {
	return fmt.Sprintf("accepted %d, completed %d, lost %d, phantom %d, duplicates allowed %d unexplained %d, "+
		"attempts used by shutdown %d, incarnations %d (kills %d, stops %d), starts %d, dones %d, "+
		"in flight at kills %d, interrupted %d, unacknowledged %d, torn %d",
		r.Accepted, r.Completed, len(r.Lost), len(r.Phantom), len(r.AllowedDuplicates), len(r.UnexplainedDuplicates),
		len(r.ShutdownAttempts), r.Incarnations, r.Kills, r.Stops, r.Starts, r.Dones,
		r.InFlightAtKill, len(r.Interrupted), len(r.Unacknowledged), r.Torn)
}

// trace is one job's lines.
type trace struct {
	accepted bool
	runs     []Event // start and done lines, in log order
}

// Check judges lg against final, the store's jobs after the run (every
// accepted job should be among them; other jobs are ignored). It never
// fails: a broken rule is in the Report (see Report.Err).
func (c Checker) Check(lg *Log, final []*jobs.Job) *Report {
	r := &Report{maxListed: c.MaxListed, Torn: len(lg.Torn)}
	ends := make(map[int]Ending)
	incs := make(map[int]bool)
	traces := make(map[int64]*trace)
	get := func(id int64) *trace {
		t := traces[id]
		if t == nil {
			t = &trace{}
			traces[id] = t
		}
		return t
	}
	for _, e := range lg.Events {
		switch e.Op {
		case OpAccept:
			get(e.Job).accepted = true
		case OpStart, OpDone:
			incs[e.Incarnation] = true
			get(e.Job).runs = append(get(e.Job).runs, e)
			if e.Op == OpStart {
				r.Starts++
			} else {
				r.Dones++
			}
		case OpEnd:
			incs[e.Incarnation] = true
			// A kill wins over a term: a process killed during its graceful
			// stop ended abruptly.
			if ends[e.Incarnation] != Killed {
				ends[e.Incarnation] = e.Ending
			}
		}
	}
	killed := func(inc int) bool { return ends[inc] == Killed }
	r.Incarnations = len(incs)
	for inc := range incs {
		if killed(inc) {
			r.Kills++
		} else {
			r.Stops++
		}
	}
	r.TooManyTorn = r.Torn > r.Kills

	byID := make(map[int64]*jobs.Job, len(final))
	for _, j := range final {
		byID[j.ID] = j
	}
	problem := func(id int64, format string, a ...any) {
		r.Problems = append(r.Problems, fmt.Sprintf("job %d: ", id)+fmt.Sprintf(format, a...))
	}

	for _, id := range slices.Sorted(maps.Keys(traces)) {
		t := traces[id]
		if !t.accepted {
			r.Unacknowledged = append(r.Unacknowledged, id)
		}
		c.checkRuns(r, id, t, killed, problem)
		if !t.accepted {
			continue
		}
		r.Accepted++
		j := byID[id]
		if !c.checkFinal(r, id, t, j, problem) {
			continue
		}
		c.checkAttempts(r, id, t, j, ends, problem)
	}
	return r
}

// checkRuns applies rule 2 and counts runs cut short.
func (Checker) checkRuns(r *Report, id int64, t *trace, killed func(int) bool, problem func(int64, string, ...any)) {
	var dones []Event
	repeat, bad := false, false
	for _, e := range t.runs {
		if len(dones) > 0 {
			repeat = true
			for _, d := range dones {
				if !killed(d.Incarnation) || d.Incarnation == e.Incarnation {
					if !bad {
						problem(id, "%q follows %q, and incarnation %d was not killed before it", e, d, d.Incarnation)
					}
					bad = true
				}
			}
		}
		if e.Op == OpDone {
			dones = append(dones, e)
		}
	}
	switch {
	case bad:
		r.UnexplainedDuplicates = append(r.UnexplainedDuplicates, id)
	case repeat:
		r.AllowedDuplicates = append(r.AllowedDuplicates, id)
	}
	interrupted := false
	for i, s := range t.runs {
		if s.Op != OpStart {
			continue
		}
		finished := slices.ContainsFunc(t.runs[i+1:], func(d Event) bool {
			return d.Op == OpDone && d.Attempt == s.Attempt && d.Incarnation == s.Incarnation
		})
		switch {
		case finished:
		case killed(s.Incarnation):
			r.InFlightAtKill++
		default:
			interrupted = true
		}
	}
	if interrupted {
		r.Interrupted = append(r.Interrupted, id)
	}
}

// checkFinal applies rule 1 and reports whether the job succeeded.
func (Checker) checkFinal(r *Report, id int64, t *trace, j *jobs.Job, problem func(int64, string, ...any)) bool {
	anyDone := slices.ContainsFunc(t.runs, func(e Event) bool { return e.Op == OpDone })
	switch {
	case j == nil:
		r.Lost = append(r.Lost, id)
		problem(id, "accepted but not in the store")
		return false
	case j.State != jobs.StateSucceeded:
		r.Lost = append(r.Lost, id)
		problem(id, "ended %s at attempt %d (reason %q, error %q), want succeeded", j.State, j.Attempt, j.Reason, j.LastError)
		return false
	case !anyDone:
		r.Lost = append(r.Lost, id)
		problem(id, "succeeded at attempt %d with no done line: its work never completed", j.Attempt)
		return false
	case !slices.ContainsFunc(t.runs, func(e Event) bool { return e.Op == OpDone && e.Attempt == j.Attempt }):
		r.Phantom = append(r.Phantom, id)
		problem(id, "succeeded at attempt %d, but no done line has that attempt", j.Attempt)
		return false
	}
	r.Completed++
	return true
}

// checkAttempts applies rule 3 to a succeeded job.
func (Checker) checkAttempts(r *Report, id int64, t *trace, j *jobs.Job, ends map[int]Ending, problem func(int64, string, ...any)) {
	last := make(map[int]int) // attempt -> index in t.runs of its last start line
	for i, e := range t.runs {
		if e.Op == OpStart {
			last[e.Attempt] = i
		}
		if e.Attempt > j.Attempt {
			r.ShutdownAttempts = append(r.ShutdownAttempts, id)
			problem(id, "%q has an attempt above the stored %d", e, j.Attempt)
			return
		}
	}
	used := make(map[int]bool) // kill-ended incarnations that explain an attempt
	unstarted := 0
	for k := 1; k < j.Attempt; k++ {
		i, ok := last[k]
		if !ok {
			unstarted++
			continue
		}
		s := t.runs[i]
		rerun := slices.ContainsFunc(t.runs[i+1:], func(e Event) bool { return e.Op == OpStart && e.Incarnation == s.Incarnation })
		switch {
		case ends[s.Incarnation] != Killed:
			r.ShutdownAttempts = append(r.ShutdownAttempts, id)
			problem(id, "attempt %d of %d used up, last run %q in incarnation %d that was not killed", k, j.Attempt, s, s.Incarnation)
			return
		case rerun || used[s.Incarnation]:
			r.ShutdownAttempts = append(r.ShutdownAttempts, id)
			problem(id, "attempt %d of %d used up in incarnation %d, which ran the job again before it was killed", k, j.Attempt, s.Incarnation)
			return
		default:
			used[s.Incarnation] = true
		}
	}
	// An unstarted attempt is explained by a kill-ended incarnation in
	// which J has no start line (one that started J holds J until its
	// death, unless it lost the lease).
	ran := make(map[int]bool)
	for _, e := range t.runs {
		ran[e.Incarnation] = true
	}
	free := 0
	for inc, how := range ends {
		if how == Killed && !ran[inc] {
			free++
		}
	}
	if unstarted > free {
		r.ShutdownAttempts = append(r.ShutdownAttempts, id)
		problem(id, "%d attempts of %d used up without a start line, only %d kills left to explain them", unstarted, j.Attempt, free)
	}
}

// Lister lists jobs; *jobs.Client and every jobs.Store have this method.
type Lister interface {
	List(ctx context.Context, f jobs.ListFilter) ([]*jobs.Job, error)
}

// Snapshot returns every job of queue ("" means every queue), by ID, paging
// through l 1000 at a time.
func Snapshot(ctx context.Context, l Lister, queue string) ([]*jobs.Job, error) {
	var all []*jobs.Job
	var after int64
	for {
		page, err := l.List(ctx, jobs.ListFilter{Queue: queue, AfterID: after, Limit: 1000})
		if err != nil {
			return nil, fmt.Errorf("chaos: snapshot: %w", err)
		}
		all = append(all, page...)
		if len(page) < 1000 {
			return all, nil
		}
		after = page[len(page)-1].ID
	}
}
