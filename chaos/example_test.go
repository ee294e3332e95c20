package chaos_test

import (
	"fmt"
	"strings"

	"github.com/sluicehq/sluice/chaos"
	"github.com/sluicehq/sluice/jobs"
)

// A run in which incarnation 1 was killed after job 1's work completed but
// before its success was recorded (an allowed duplicate), and incarnation 2
// was stopped gracefully while job 2 was running, and did not give its
// attempt back.
func ExampleChecker() {
	log := `accept 1
accept 2
start 1 1 1
done 1 1 1
end 1 kill
start 1 2 2
done 1 2 2
start 2 1 2
end 2 term
start 2 2 3
done 2 2 3
end 3 term
`
	lg, err := chaos.ReadLog(strings.NewReader(log))
	if err != nil {
		panic(err)
	}
	final := []*jobs.Job{
		{ID: 1, State: jobs.StateSucceeded, Attempt: 2},
		{ID: 2, State: jobs.StateSucceeded, Attempt: 2},
	}
	r := chaos.Checker{}.Check(lg, final)
	fmt.Println("allowed duplicates:", r.AllowedDuplicates)
	fmt.Println(r.Err())
	// Output:
	// allowed duplicates: [1]
	// chaos: 2 accepted, 2 completed: rules broken:
	//   attempts used by shutdown: 1 [2]
	//   job 2: attempt 1 of 2 used up, last run "start 2 1 2" in incarnation 2 that was not killed
}
