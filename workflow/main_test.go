package workflow_test

import (
	"testing"

	"go.uber.org/goleak"
)

// Every goroutine the engine starts stops on Close.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
