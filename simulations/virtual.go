package simulations

import (
	"context"
	"fmt"
	"os"
	"testing"
	"testing/synctest"
	"time"
)

// RunVirtual runs a scenario in a testing/synctest bubble: every node,
// link and timer of the run lives in the bubble, and time advances only
// when all of them wait, so latencies come from the modelled links and
// not from how busy the machine is. A plain binary can only open a bubble
// through testing.Main, which exits the process: so RunVirtual does not
// return. It hands the result (with wall time and peak RSS measured
// outside the bubble) to done, and exits 0 if done returns nil, else 1.
// testing's own PASS/FAIL lines are discarded: done prints the result
// on stdout and any error on stderr.
func RunVirtual(sc Scenario, progress Progress, done func(*Result, error) error) {
	start := time.Now()
	stdout, discard := os.Stdout, devNull()
	os.Stdout = discard
	os.Args = os.Args[:1] // testing parses the command line
	testing.Main(func(string, string) (bool, error) { return true, nil }, []testing.InternalTest{{
		Name: "parley-sim",
		F: func(t *testing.T) {
			var (
				res *Result
				err error
			)
			synctest.Test(t, func(*testing.T) { res, err = Run(context.Background(), sc, progress) })
			if res != nil {
				res.Clock, res.WallS, res.RSSMB = "virtual", time.Since(start).Seconds(), peakRSSMB()
			}
			os.Stdout = stdout
			derr := done(res, err)
			os.Stdout = discard
			if derr != nil {
				fmt.Fprintf(os.Stderr, "parley: %v\n", derr)
				t.Fail()
			}
		},
	}}, nil, nil)
}

// devNull is where testing.Main's report of its one test goes. If it
// cannot be opened, stderr: there the lines are noise, not lost results.
func devNull() *os.File {
	f, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		return os.Stderr
	}
	return f
}

// RunReal runs a scenario on the machine's clock.
func RunReal(ctx context.Context, sc Scenario, progress Progress) (*Result, error) {
	start := time.Now()
	res, err := Run(ctx, sc, progress)
	if err != nil {
		return nil, fmt.Errorf("simulation %s: %w", sc.Name, err)
	}
	res.Clock = "real"
	res.WallS = time.Since(start).Seconds()
	res.RSSMB = peakRSSMB()
	return res, nil
}
