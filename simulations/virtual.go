package simulations

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"testing/synctest"
	"time"
)

// RunVirtual runs a scenario in a testing/synctest bubble: every node,
// link and timer of the run lives in the bubble, and time advances only
// when all of them wait, so latencies come from the modelled links and
// not from how busy the machine is. It works from a plain binary: the
// bubble is opened by a one-test testing.RunTests. WallS and RSSMB are
// measured outside the bubble.
func RunVirtual(sc Scenario, progress Progress) (*Result, error) {
	var (
		res *Result
		err error
	)
	start := time.Now()
	testing.Init()
	ok := testing.RunTests(func(string, string) (bool, error) { return true, nil }, []testing.InternalTest{{
		Name: "parley-sim",
		F: func(t *testing.T) {
			synctest.Test(t, func(*testing.T) {
				res, err = Run(context.Background(), sc, progress)
			})
		},
	}})
	if err != nil {
		return nil, err
	}
	if !ok || res == nil {
		return nil, errors.New("simulation did not finish in its bubble")
	}
	res.Clock = "virtual"
	res.WallS = time.Since(start).Seconds()
	res.RSSMB = peakRSSMB()
	return res, nil
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
