package main

import (
	"io"
	"net/http"
	"net/http/cookiejar"
	"strings"
	"testing"
)

// testUI: `parley ui` prints a login link that opens the daemon's
// dashboard once, and the page is 401 without it.
func testUI(t *testing.T, bin, home string) {
	out, stderr, code := parley(t, bin, "ui", "--home", home)
	link, _, _ := strings.Cut(out, "\n")
	if code != 0 || !strings.HasPrefix(link, "http://127.0.0.1:") || !strings.Contains(link, "/ui/login?code=") || !strings.Contains(out, "good once") {
		t.Fatalf("ui: exit %d, %q, %s", code, out, stderr)
	}
	base, _, _ := strings.Cut(link, "/ui/login")
	anon := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := anon.Get(base + "/ui")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("GET /ui without the login: %d, want 401", resp.StatusCode)
	}
	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar}
	resp, err = browser.Get(link)
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Request.URL.Path != "/ui" || !strings.Contains(string(page), "parley dashboard") {
		t.Fatalf("the login link led to %s: %d, %.200s", resp.Request.URL, resp.StatusCode, page)
	}
	if resp, err := anon.Get(link); err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("the link used twice: %v, want 401", err)
	} else {
		resp.Body.Close()
	}
	// No display here: --open says so, after printing the link.
	t.Setenv("DISPLAY", "")
	t.Setenv("WAYLAND_DISPLAY", "")
	out, stderr, code = parley(t, bin, "ui", "--home", home, "--open")
	if code != 1 || !strings.Contains(out, "/ui/login?code=") || !strings.Contains(stderr, "no display") {
		t.Fatalf("ui --open without a display: exit %d, %q, %q", code, out, stderr)
	}
}
