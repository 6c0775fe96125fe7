// Package fsync owns the one durability step parley's files share: making
// a file's creation or rename in a directory survive a crash.
package fsync

import (
	"os"
	"runtime"
)

// Dir syncs directory dir, so that files created or renamed in it are
// durable. Windows cannot sync directories; there it does nothing.
func Dir(dir string) error {
	if runtime.GOOS == "windows" {
		return nil
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	if err := d.Sync(); err != nil {
		_ = d.Close()
		return err
	}
	return d.Close()
}
