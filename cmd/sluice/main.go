// Command sluice is the Sluice job server and its tools.
//
// Usage:
//
//	sluice serve       run the durable job server
//	sluice enqueue     enqueue a job through the API
//	sluice job         inspect and cancel jobs
//	sluice queue       configure queues
//	sluice bench burn  time no-op jobs through the durable engine
//	sluice version     print the version
package main

import (
	"fmt"
	"io"
	"os"
)

const version = "0.1.0-dev"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

const usage = `Sluice: bounded, cancellable, observable work for Go services.

Usage:
  sluice serve     run the durable job server (sluice serve -h for its flags)
  sluice enqueue   enqueue a job through the API
  sluice job       get|cancel|ls|group: inspect and cancel jobs
  sluice queue     ls|get|set|pause|resume: configure queues
  sluice migrate   --db postgres://... : create or upgrade the PostgreSQL schema
  sluice bench burn --db sqlite:<file>|postgres://... [--jobs N]
                   time N no-op jobs through the durable engine
  sluice bench latency --db ... --rate R --duration D
                   enqueue-to-start latency at a fixed arrival rate
  sluice version   print the version
  sluice help      print this help
`

// run executes one subcommand and returns the process exit status.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	case "version":
		fmt.Fprintln(stdout, "sluice", version)
		return 0
	case "enqueue":
		return runEnqueue(args[1:], stdout, stderr)
	case "job":
		return runJob(args[1:], stdout, stderr)
	case "queue":
		return runQueue(args[1:], stdout, stderr)
	case "migrate":
		return runMigrate(args[1:], stdout, stderr)
	case "bench":
		return runBench(args[1:], stdout, stderr)
	case "serve":
		return runServe(args[1:], stdout, stderr)
	default:
		fmt.Fprintf(stderr, "sluice: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
}
