package lifecycle

import (
	"bytes"
	"runtime"
	"strconv"
)

// goid returns the calling goroutine's id, parsed from the first line of its
// stack trace ("goroutine 42 [running]:"). About a microsecond; it is called
// once per goroutine the service starts, so that a stuck one can be found in
// a stack dump later.
func goid() uint64 {
	var buf [64]byte
	return parseGoid(buf[:runtime.Stack(buf[:], false)])
}

func parseGoid(b []byte) uint64 {
	b, ok := bytes.CutPrefix(b, []byte("goroutine "))
	if !ok {
		return 0
	}
	if i := bytes.IndexByte(b, ' '); i >= 0 {
		b = b[:i]
	}
	id, err := strconv.ParseUint(string(b), 10, 64)
	if err != nil {
		return 0
	}
	return id
}

// maxDump bounds the buffer for a dump of all goroutines.
const maxDump = 64 << 20

// stacks returns the stack of each goroutine in ids, from one dump of all
// goroutines. It stops the world for the dump (milliseconds with thousands of
// goroutines) and is only called when something is stuck.
func stacks(ids map[uint64]bool) map[uint64]string {
	out := make(map[uint64]string, len(ids))
	if len(ids) == 0 {
		return out
	}
	buf := make([]byte, 64<<10)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) || len(buf) >= maxDump {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	for block := range bytes.SplitSeq(buf, []byte("\n\n")) {
		if id := parseGoid(block); ids[id] {
			out[id] = string(block)
		}
	}
	return out
}
