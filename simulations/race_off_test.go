//go:build !race

package simulations_test

const raceEnabled = false
