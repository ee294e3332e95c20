package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/sluicehq/sluice/client"
)

// The API commands: enqueue, job, queue. Each talks to a server through
// package client, prints the server's JSON (indented) on stdout, and
// exits 0 on success, 1 when the server or the network refused, 2 on a
// usage error (bad flags or arguments, nothing sent).

const (
	defaultServer = "http://127.0.0.1:8080"
	envServer     = "SLUICE_SERVER"
	envToken      = "SLUICE_TOKEN"
)

const enqueueUsage = `Usage:
  sluice enqueue [flags] KIND [PAYLOAD]
  sluice enqueue [flags] --batch FILE

Enqueues one job of KIND with the JSON PAYLOAD (or @FILE to read it from
a file), or, with --batch, the jobs of FILE ({"jobs":[...]} or [...])
atomically into --queue. Prints the job(s) as JSON.

Times (--run-at, --deadline) are RFC 3339 or a duration from now ("10m").
Flags:
`

const jobUsage = `Usage:
  sluice job get ID        print a job
  sluice job cancel ID     cancel a job
  sluice job ls [--queue Q] [--state S] [--group G] [--after ID] [--limit N] [--all]
                           list jobs by id; --all follows every page
  sluice job group NAME    print a group's outcome

Every subcommand takes --server (or $SLUICE_SERVER, default ` + defaultServer + `),
--token (or $SLUICE_TOKEN) and --timeout.
`

const queueUsage = `Usage:
  sluice queue ls          print every queue's configuration
  sluice queue get NAME    print a queue's configuration
  sluice queue set NAME [--concurrency N] [--capacity N] [--policy reject|shed|wait]
                   [--max-wait D] [--rate-limit R] [--rate-burst N]
                   [--idempotency-window D] [--paused=true|false] [--replace]
                           change the flags given (a new queue starts from the
                           defaults); --replace resets every other setting
  sluice queue pause NAME  stop starting the queue's jobs (it still accepts them)
  sluice queue resume NAME

Every subcommand takes --server (or $SLUICE_SERVER, default ` + defaultServer + `),
--token (or $SLUICE_TOKEN) and --timeout.
`

// conn holds the flags every API command takes.
type conn struct {
	server  string
	token   string
	timeout time.Duration
}

func (c *conn) register(fs *flag.FlagSet) {
	server := os.Getenv(envServer)
	if server == "" {
		server = defaultServer
	}
	fs.StringVar(&c.server, "server", server, "server base URL ($"+envServer+")")
	// The default stays empty so that usage never prints a token.
	fs.StringVar(&c.token, "token", "", "bearer token (default $"+envToken+")")
	fs.DurationVar(&c.timeout, "timeout", 90*time.Second, "give up after this long (longer than a \"wait\" queue's max_wait, at most 1m)")
}

// open returns the client and the context of one command.
func (c *conn) open() (*client.Client, context.Context, context.CancelFunc, error) {
	token := c.token
	if token == "" {
		token = os.Getenv(envToken)
	}
	cl, err := client.New(c.server, client.Config{Token: token, UserAgent: "sluice-cli/" + version})
	if err != nil {
		return nil, nil, nil, err
	}
	if c.timeout <= 0 {
		return nil, nil, nil, errors.New("--timeout must be positive")
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	return cl, ctx, cancel, nil
}

// cmd is one run of a command: its name for messages and its outputs.
type cmd struct {
	name           string
	stdout, stderr io.Writer
}

// usage reports a usage error: exit status 2.
func (c *cmd) usage(format string, args ...any) int {
	fmt.Fprintf(c.stderr, "%s: %s\n", c.name, fmt.Sprintf(format, args...))
	return 2
}

// fail reports an error from the server or the network: exit status 1.
func (c *cmd) fail(err error) int {
	var ae *client.APIError
	if errors.As(err, &ae) {
		msg := fmt.Sprintf("%s: server answered %d", c.name, ae.Status)
		if ae.Code != "" {
			msg += " " + ae.Code
		}
		if ae.Field != "" {
			msg += ": " + ae.Field
		}
		if ae.Message != "" {
			msg += ": " + ae.Message
		}
		if ae.RetryAfter > 0 {
			msg += fmt.Sprintf(" (retry after %v)", ae.RetryAfter)
		}
		fmt.Fprintln(c.stderr, msg)
		return 1
	}
	fmt.Fprintf(c.stderr, "%s: %v\n", c.name, err)
	return 1
}

// print writes v as indented JSON.
func (c *cmd) print(v any) int {
	enc := json.NewEncoder(c.stdout)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		fmt.Fprintf(c.stderr, "%s: %v\n", c.name, err)
		return 1
	}
	return 0
}

// parse parses flags that may come before, between or after the
// positional arguments, and returns the positional ones. help reports
// -h/--help (usage printed).
func parse(fs *flag.FlagSet, args []string) (pos []string, help bool, err error) {
	for {
		if err := fs.Parse(args); err != nil {
			return nil, errors.Is(err, flag.ErrHelp), err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, false, nil
		}
		if len(args) > len(rest) && args[len(args)-len(rest)-1] == "--" {
			return append(pos, rest...), false, nil // after --, everything is positional
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// newFlags returns a flag set whose usage prints text then the flags.
func newFlags(name, text string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, text)
		fs.PrintDefaults()
	}
	return fs
}

// exitParse turns a flag parsing failure into the exit status: 0 for
// -h, 2 otherwise (the flag package printed why).
func exitParse(help bool) int {
	if help {
		return 0
	}
	return 2
}

// parseWhen parses an RFC 3339 time or a duration from now.
func parseWhen(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if d, err := time.ParseDuration(s); err == nil {
		return now.Add(d), nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return t, fmt.Errorf("%q is neither an RFC 3339 time nor a duration", s)
	}
	return t, nil
}

// readJSONArg returns arg as JSON, reading @FILE.
func readJSONArg(arg string) (json.RawMessage, error) {
	data := []byte(arg)
	if name, ok := strings.CutPrefix(arg, "@"); ok {
		var err error
		if data, err = os.ReadFile(name); err != nil {
			return nil, err
		}
	}
	if !json.Valid(data) {
		return nil, errors.New("not valid JSON")
	}
	return json.RawMessage(data), nil
}

// runEnqueue runs "sluice enqueue ..." (args after "enqueue").
func runEnqueue(args []string, stdout, stderr io.Writer) int {
	c := &cmd{name: "sluice enqueue", stdout: stdout, stderr: stderr}
	fs := newFlags("enqueue", enqueueUsage, stderr)
	var (
		cn      conn
		n       client.NewJob
		runAt   string
		dl      string
		batch   string
		maxAtt  int
		prio    int
		groupCF bool
	)
	cn.register(fs)
	fs.StringVar(&n.Queue, "queue", "default", "queue")
	fs.IntVar(&prio, "priority", 0, "priority 0..9; higher runs first")
	fs.StringVar(&n.IdempotencyKey, "key", "", "idempotency key")
	fs.StringVar(&runAt, "run-at", "", "not before this time")
	fs.StringVar(&dl, "deadline", "", "never start after this time (after --run-at)")
	fs.DurationVar(&n.AttemptTimeout, "attempt-timeout", 0, "bound of each attempt (0: none)")
	fs.IntVar(&maxAtt, "max-attempts", 0, "attempts before the job fails (0: the server's default, 5)")
	fs.DurationVar(&n.BackoffMin, "backoff-min", 0, "first retry backoff (0: the server's default)")
	fs.DurationVar(&n.BackoffMax, "backoff-max", 0, "largest retry backoff (0: the server's default)")
	fs.StringVar(&n.Group, "group", "", "join this group")
	fs.BoolVar(&groupCF, "cancel-group-on-failure", false, "a final failure cancels the group's other jobs")
	fs.StringVar(&batch, "batch", "", `enqueue the jobs of this JSON file atomically ({"jobs":[...]} or [...])`)
	pos, help, err := parse(fs, args)
	if err != nil {
		return exitParse(help)
	}
	n.Priority, n.MaxAttempts, n.CancelGroupOnFailure = prio, maxAtt, groupCF
	now := time.Now()
	if n.RunAt, err = parseWhen(runAt, now); err != nil {
		return c.usage("--run-at: %v", err)
	}
	if n.Deadline, err = parseWhen(dl, now); err != nil {
		return c.usage("--deadline: %v", err)
	}
	if n.Queue == "" {
		return c.usage("--queue must not be empty")
	}

	if batch != "" {
		if len(pos) != 0 {
			return c.usage("--batch takes no KIND or PAYLOAD")
		}
		var jobFlags []string
		fs.Visit(func(f *flag.Flag) {
			switch f.Name {
			case "batch", "queue", "server", "token", "timeout":
			default:
				jobFlags = append(jobFlags, "--"+f.Name)
			}
		})
		if len(jobFlags) > 0 {
			return c.usage("with --batch, set %s in each job of the file", strings.Join(jobFlags, ", "))
		}
		data, err := os.ReadFile(batch)
		if err != nil {
			return c.usage("--batch: %v", err)
		}
		var list []client.NewJob
		var wrapped struct {
			Jobs []client.NewJob `json:"jobs"`
		}
		if err := json.Unmarshal(data, &wrapped); err == nil && wrapped.Jobs != nil {
			list = wrapped.Jobs
		} else if err := json.Unmarshal(data, &list); err != nil {
			return c.usage("--batch %s: want {\"jobs\":[...]} or [...]: %v", batch, err)
		}
		if len(list) == 0 {
			return c.usage("--batch %s holds no jobs", batch)
		}
		cl, ctx, cancel, err := cn.open()
		if err != nil {
			return c.usage("%v", err)
		}
		defer cancel()
		res, err := cl.EnqueueMany(ctx, n.Queue, list)
		if err != nil {
			return c.fail(err)
		}
		status := c.print(struct {
			Jobs []client.EnqueueResult `json:"jobs"`
		}{res})
		for _, r := range res {
			if r.Err != nil {
				fmt.Fprintf(stderr, "%s: some jobs were not enqueued (see their \"error\")\n", c.name)
				return 1
			}
		}
		return status
	}

	switch len(pos) {
	case 1, 2:
	default:
		fs.Usage()
		return 2
	}
	n.Kind = pos[0]
	if len(pos) == 2 {
		if n.Payload, err = readJSONArg(pos[1]); err != nil {
			return c.usage("PAYLOAD: %v", err)
		}
	}
	cl, ctx, cancel, err := cn.open()
	if err != nil {
		return c.usage("%v", err)
	}
	defer cancel()
	res, err := cl.Enqueue(ctx, n)
	if err != nil {
		return c.fail(err)
	}
	return c.print(res)
}

// runJob runs "sluice job ..." (args after "job").
func runJob(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprint(stderr, jobUsage)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	sub := args[0]
	c := &cmd{name: "sluice job " + sub, stdout: stdout, stderr: stderr}
	fs := newFlags("job "+sub, jobUsage, stderr)
	var cn conn
	cn.register(fs)
	switch sub {
	case "get", "cancel":
		pos, help, err := parse(fs, args[1:])
		if err != nil {
			return exitParse(help)
		}
		if len(pos) != 1 {
			return c.usage("want one job ID")
		}
		id, err := strconv.ParseInt(pos[0], 10, 64)
		if err != nil || id <= 0 {
			return c.usage("job ID %q must be a positive integer", pos[0])
		}
		cl, ctx, cancel, err := cn.open()
		if err != nil {
			return c.usage("%v", err)
		}
		defer cancel()
		var j *client.Job
		if sub == "get" {
			j, err = cl.Get(ctx, id)
		} else {
			j, err = cl.Cancel(ctx, id)
		}
		if err != nil {
			return c.fail(err)
		}
		return c.print(j)

	case "ls":
		var (
			f     client.ListFilter
			state string
			all   bool
		)
		fs.StringVar(&f.Queue, "queue", "", "only this queue")
		fs.StringVar(&state, "state", "", "only this state: waiting, running, succeeded, failed, canceled, expired, shed")
		fs.StringVar(&f.Group, "group", "", "only this group")
		fs.Int64Var(&f.After, "after", 0, "only jobs with a larger id (a page's next_after)")
		fs.IntVar(&f.Limit, "limit", 0, "jobs per page, 1..1000 (0: the server's default, 100)")
		fs.BoolVar(&all, "all", false, "follow every page")
		pos, help, err := parse(fs, args[1:])
		if err != nil {
			return exitParse(help)
		}
		if len(pos) != 0 {
			return c.usage("unexpected argument %q", pos[0])
		}
		if f.Limit < 0 || f.After < 0 {
			return c.usage("--limit and --after must not be negative")
		}
		f.State = client.State(state)
		cl, ctx, cancel, err := cn.open()
		if err != nil {
			return c.usage("%v", err)
		}
		defer cancel()
		out := struct {
			Jobs      []*client.Job `json:"jobs"`
			NextAfter *int64        `json:"next_after"`
		}{Jobs: []*client.Job{}}
		for {
			p, err := cl.List(ctx, f)
			if err != nil {
				return c.fail(err)
			}
			out.Jobs = append(out.Jobs, p.Jobs...)
			if p.NextAfter == 0 {
				break
			}
			if !all {
				out.NextAfter = &p.NextAfter
				break
			}
			f.After = p.NextAfter
		}
		return c.print(out)

	case "group":
		pos, help, err := parse(fs, args[1:])
		if err != nil {
			return exitParse(help)
		}
		if len(pos) != 1 || pos[0] == "" {
			return c.usage("want one group NAME")
		}
		cl, ctx, cancel, err := cn.open()
		if err != nil {
			return c.usage("%v", err)
		}
		defer cancel()
		g, err := cl.Group(ctx, pos[0])
		if err != nil {
			return c.fail(err)
		}
		return c.print(g)
	}
	fmt.Fprintf(stderr, "sluice job: unknown subcommand %q\n\n%s", sub, jobUsage)
	return 2
}

// runQueue runs "sluice queue ..." (args after "queue").
func runQueue(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprint(stderr, queueUsage)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	sub := args[0]
	c := &cmd{name: "sluice queue " + sub, stdout: stdout, stderr: stderr}
	fs := newFlags("queue "+sub, queueUsage, stderr)
	var cn conn
	cn.register(fs)
	switch sub {
	case "ls":
		pos, help, err := parse(fs, args[1:])
		if err != nil {
			return exitParse(help)
		}
		if len(pos) != 0 {
			return c.usage("unexpected argument %q", pos[0])
		}
		cl, ctx, cancel, err := cn.open()
		if err != nil {
			return c.usage("%v", err)
		}
		defer cancel()
		qs, err := cl.Queues(ctx)
		if err != nil {
			return c.fail(err)
		}
		if qs == nil {
			qs = []client.Queue{}
		}
		return c.print(struct {
			Queues []client.Queue `json:"queues"`
		}{qs})

	case "get", "pause", "resume":
		pos, help, err := parse(fs, args[1:])
		if err != nil {
			return exitParse(help)
		}
		if len(pos) != 1 || pos[0] == "" {
			return c.usage("want one queue NAME")
		}
		cl, ctx, cancel, err := cn.open()
		if err != nil {
			return c.usage("%v", err)
		}
		defer cancel()
		var q client.Queue
		switch sub {
		case "get":
			q, err = cl.Queue(ctx, pos[0])
		case "pause":
			q, err = cl.Pause(ctx, pos[0])
		default:
			q, err = cl.Resume(ctx, pos[0])
		}
		if err != nil {
			return c.fail(err)
		}
		return c.print(q)

	case "set":
		var (
			want    client.Queue
			replace bool
		)
		fs.IntVar(&want.Concurrency, "concurrency", 0, "jobs of the queue one worker runs at once")
		fs.IntVar(&want.Capacity, "capacity", 0, "waiting jobs the queue holds")
		fs.StringVar(&want.Policy, "policy", "", "when full: reject, shed or wait")
		fs.DurationVar(&want.MaxWait, "max-wait", 0, `bound of the "wait" policy (at most 1m)`)
		fs.Float64Var(&want.RateLimit, "rate-limit", 0, "job starts per second per worker (0: no limit)")
		fs.IntVar(&want.RateBurst, "rate-burst", 0, "burst of the rate limit")
		fs.DurationVar(&want.IdempotencyWindow, "idempotency-window", 0, "how long an idempotency key stays bound")
		fs.BoolVar(&want.Paused, "paused", false, "accept jobs but start none")
		fs.BoolVar(&replace, "replace", false, "reset every setting not given to its default")
		pos, help, err := parse(fs, args[1:])
		if err != nil {
			return exitParse(help)
		}
		if len(pos) != 1 || pos[0] == "" {
			return c.usage("want one queue NAME")
		}
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		cl, ctx, cancel, err := cn.open()
		if err != nil {
			return c.usage("%v", err)
		}
		defer cancel()
		q := client.Queue{Name: pos[0]}
		if !replace {
			cur, err := cl.Queue(ctx, pos[0])
			switch {
			case err == nil:
				q = cur
			case !errors.Is(err, client.ErrNotFound):
				return c.fail(err)
			}
		}
		for name, apply := range map[string]func(){
			"concurrency":        func() { q.Concurrency = want.Concurrency },
			"capacity":           func() { q.Capacity = want.Capacity },
			"policy":             func() { q.Policy = want.Policy },
			"max-wait":           func() { q.MaxWait = want.MaxWait },
			"rate-limit":         func() { q.RateLimit = want.RateLimit },
			"rate-burst":         func() { q.RateBurst = want.RateBurst },
			"idempotency-window": func() { q.IdempotencyWindow = want.IdempotencyWindow },
			"paused":             func() { q.Paused = want.Paused },
		} {
			if set[name] {
				apply()
			}
		}
		q, err = cl.PutQueue(ctx, q)
		if err != nil {
			return c.fail(err)
		}
		return c.print(q)
	}
	fmt.Fprintf(stderr, "sluice queue: unknown subcommand %q\n\n%s", sub, queueUsage)
	return 2
}
