package a2a_test

import (
	"testing"

	"go.uber.org/goleak"
)

// Every goroutine the gateway and the contractor start has an owner that
// stops it on Close.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
