// Package bench holds side-by-side benchmarks of sluice's workpool against
// peer Go worker pools (pond, ants, errgroup with SetLimit, conc) and plain
// goroutines. It is a separate module so that the peers never enter the main
// module's go.mod. The benchmarks are in peers_test.go; docs/benchmarks.md
// records the commands and the measured results.
package bench
