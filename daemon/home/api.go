package home

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// APIPath returns the path of the file holding the running daemon's API URL.
func (h *Home) APIPath() string { return filepath.Join(h.Dir, APIFile) }

// TokenPath returns the path of the file holding the daemon's API token.
func (h *Home) TokenPath() string { return filepath.Join(h.Dir, TokenFile) }

// WriteAPI publishes a running daemon's API: the token to api.token, then
// the URL to api, each written atomically with mode 0600. Clients read them
// with ReadAPI.
func (h *Home) WriteAPI(url, token string) error {
	if err := writeFileAtomic(h.TokenPath(), []byte(token+"\n"), 0o600); err != nil {
		return fmt.Errorf("write API token: %w", err)
	}
	if err := writeFileAtomic(h.APIPath(), []byte(url+"\n"), 0o600); err != nil {
		return fmt.Errorf("write API address: %w", err)
	}
	return nil
}

// RemoveAPI withdraws what WriteAPI published, if api still holds url (a
// later daemon's files are left alone). Missing files are not an error.
func (h *Home) RemoveAPI(url string) error {
	data, err := os.ReadFile(h.APIPath())
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("remove API address: %w", err)
	case strings.TrimSpace(string(data)) != url:
		return nil
	}
	if err := os.Remove(h.APIPath()); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove API address: %w", err)
	}
	if err := os.Remove(h.TokenPath()); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove API token: %w", err)
	}
	return nil
}

// ReadAPI returns the API URL and token a daemon published in the home dir.
// It needs no keys, so any local client can call it. When no daemon has
// published its API the error wraps ErrNoAPIFile. A daemon that died without
// cleaning up leaves its files behind; the client finds out when it dials.
func ReadAPI(dir string) (url, token string, err error) {
	u, err := os.ReadFile(filepath.Join(dir, APIFile))
	if errors.Is(err, fs.ErrNotExist) {
		return "", "", fmt.Errorf("%w in %s", ErrNoAPIFile, dir)
	}
	if err != nil {
		return "", "", err
	}
	t, err := os.ReadFile(filepath.Join(dir, TokenFile))
	if errors.Is(err, fs.ErrNotExist) {
		return "", "", fmt.Errorf("%w in %s: %s is missing", ErrNoAPIFile, dir, TokenFile)
	}
	if err != nil {
		return "", "", err
	}
	url, token = string(bytes.TrimSpace(u)), string(bytes.TrimSpace(t))
	if url == "" || token == "" {
		return "", "", fmt.Errorf("%w in %s: %s or %s is empty", ErrNoAPIFile, dir, APIFile, TokenFile)
	}
	return url, token, nil
}
