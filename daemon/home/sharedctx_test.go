package home

import (
	"strings"
	"testing"
	"time"
)

// TestSharedContextSettings: config.yaml's shared_context reaches the
// config, and an unknown key in it is refused with its line.
func TestSharedContextSettings(t *testing.T) {
	c, err := parseConfig("/h/config.yaml", []byte("shared_context: {max_keys: 3, max_value_size: 100, max_clock_skew: 5s}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if l := c.SharedContext; l.MaxKeys != 3 || l.MaxValueSize != 100 || l.MaxClockSkew != 5*time.Second {
		t.Fatalf("shared_context = %+v", l)
	}
	_, err = parseConfig("/h/config.yaml", []byte("log_level: info\nshared_context:\n  max_keyz: 3\n"))
	if err == nil || !strings.Contains(err.Error(), "3") || !strings.Contains(err.Error(), "max_keyz") {
		t.Fatalf("unknown key: %v, want refused naming line 3 and the key", err)
	}
}
