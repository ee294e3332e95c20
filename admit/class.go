package admit

import "fmt"

// Class is a request's priority class. Under overload the Limiter refuses
// ClassSheddable first, then ClassDefault, and ClassCritical last. Classes
// are ordered: a larger value is more important.
type Class uint8

// The classes, in increasing importance; they index Stats arrays.
const (
	// ClassSheddable is work whose loss nobody notices at once: prefetches,
	// batch and background traffic, retries of retries.
	ClassSheddable Class = iota
	// ClassDefault is ordinary interactive traffic, and the class of a
	// request without a priority header.
	ClassDefault
	// ClassCritical is work that must get through if anything does: health
	// of the system itself, payments, writes a user is waiting on.
	ClassCritical
	numClasses
)

var classNames = [numClasses]string{"sheddable", "default", "critical"}

// String returns the class's header value: "sheddable", "default" or
// "critical".
func (c Class) String() string {
	if c < numClasses {
		return classNames[c]
	}
	return fmt.Sprintf("Class(%d)", uint8(c))
}

// ParseClass parses a priority header value. It accepts exactly
// "critical", "default" and "sheddable" (lower case, no spaces); anything
// else is an error that matches ErrBadPriority.
func ParseClass(s string) (Class, error) {
	if c, ok := parseClass(s); ok {
		return c, nil
	}
	return ClassDefault, fmt.Errorf("%w: %q", ErrBadPriority, s)
}

// parseClass is ParseClass without the error allocation.
func parseClass(s string) (Class, bool) {
	switch s {
	case "default":
		return ClassDefault, true
	case "sheddable":
		return ClassSheddable, true
	case "critical":
		return ClassCritical, true
	}
	return ClassDefault, false
}
