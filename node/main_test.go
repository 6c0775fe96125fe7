package node_test

import (
	"testing"

	"go.uber.org/goleak"
)

// Every goroutine a node starts has an owner that stops it on Close.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
