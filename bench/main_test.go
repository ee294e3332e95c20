package bench

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the run if a goroutine outlives the tests and benchmarks:
// every subject's stop must wait for all the goroutines it started. The
// goroutines already running when TestMain starts are ignored: ants starts
// a default pool (with its purge and ticktock goroutines) when its package
// is initialized, and never stops it.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m, goleak.IgnoreCurrent()) }
