//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package audit

import "io"

type noLock struct{}

func (noLock) Close() error { return nil }

// lockDir does nothing where flock is missing: one Log (and one Prune) per
// directory is then the caller's to ensure.
func lockDir(string, string) (io.Closer, error) { return noLock{}, nil }
