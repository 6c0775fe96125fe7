package node

import (
	"bytes"
	"errors"
	"fmt"
	"os"

	"github.com/libp2p/go-libp2p/core/pnet"
)

// ErrBadPSK is wrapped by LoadPSK's format errors.
var ErrBadPSK = errors.New("invalid private network key file")

// LoadPSK reads a private network key in libp2p's format: the lines
// "/key/swarm/psk/1.0.0/", "/base16/" and 64 hex digits. Nodes with
// different keys cannot connect at all.
func LoadPSK(path string) (pnet.PSK, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("private network key: %w", err)
	}
	psk, err := pnet.DecodeV1PSK(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("%w %s: want the lines /key/swarm/psk/1.0.0/, /base16/ and 64 hex digits: %v", ErrBadPSK, path, err)
	}
	if len(psk) != 32 {
		return nil, fmt.Errorf("%w %s: key is %d bytes, want 32", ErrBadPSK, path, len(psk))
	}
	return psk, nil
}
