//go:build race

package simulations_test

// raceEnabled reports a -race build.
const raceEnabled = true
