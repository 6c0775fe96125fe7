package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestVersionFromBuildInfo: what 'parley version' makes of the build info
// the go command records for each way of building it.
func TestVersionFromBuildInfo(t *testing.T) {
	vcs := func(rev, tm, modified string) []debug.BuildSetting {
		return []debug.BuildSetting{{Key: "vcs", Value: "git"}, {Key: "vcs.revision", Value: rev}, {Key: "vcs.time", Value: tm}, {Key: "vcs.modified", Value: modified}}
	}
	const rev = "40660743ef6d395762836ee0cd1ee6fc9ed3bfe8"
	tests := []struct {
		name    string
		bi      *debug.BuildInfo
		stamped string
		want    buildInfo
		short   string
	}{
		{"go install @v1.2.3", &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v1.2.3"}}, "",
			buildInfo{Version: "v1.2.3", Go: "go1.26.8"}, "v1.2.3"},
		{"go install @commit", &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v0.0.0-20261201180733-40660743ef6d"}}, "",
			buildInfo{Version: "v0.0.0-20261201180733-40660743ef6d", Go: "go1.26.8"}, "v0.0.0-20261201180733-40660743ef6d"},
		{"checkout, untagged, dirty", &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v0.0.0-20261201180733-40660743ef6d+dirty"}, Settings: vcs(rev, "2026-12-01T18:07:33Z", "true")}, "",
			buildInfo{Version: "devel", Revision: rev, Time: "2026-12-01T18:07:33Z", Modified: true, Go: "go1.26.8"}, "devel 40660743ef6d+dirty"},
		{"checkout at a tag", &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v1.2.3"}, Settings: vcs(rev, "2026-12-01T18:07:33Z", "false")}, "",
			buildInfo{Version: "v1.2.3", Revision: rev, Time: "2026-12-01T18:07:33Z", Go: "go1.26.8"}, "v1.2.3 40660743ef6d"},
		{"checkout at a tag, dirty", &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v1.2.3+dirty"}, Settings: vcs(rev, "2026-12-01T18:07:33Z", "true")}, "",
			buildInfo{Version: "v1.2.3", Revision: rev, Time: "2026-12-01T18:07:33Z", Modified: true, Go: "go1.26.8"}, "v1.2.3 40660743ef6d+dirty"},
		{"-buildvcs=false", &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"}}, "",
			buildInfo{Version: "devel", Go: "go1.26.8"}, "devel"},
		{"docker build, revision stamped by -ldflags", &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"}}, rev,
			buildInfo{Version: "devel", Revision: rev, Go: "go1.26.8"}, "devel 40660743ef6d"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := newBuildInfo(tt.bi, tt.stamped)
			if got != tt.want {
				t.Errorf("build info %+v, want %+v", got, tt.want)
			}
			if s := got.short(); s != tt.short {
				t.Errorf("version %q, want %q", s, tt.short)
			}
		})
	}
}

// TestVersionNamesTheCommit builds the binary with -buildvcs=true and reads
// 'parley version': it names a version and, where the go command could
// stamp the checkout's commit, that commit.
func TestVersionNamesTheCommit(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the parley binary")
	}
	bin := filepath.Join(t.TempDir(), "parley")
	if out, err := exec.Command("go", "build", "-buildvcs=true", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build -buildvcs=true: %v\n%s", err, out)
	}
	out, stderr, code := parley(t, bin, "version", "--json")
	var v buildInfo
	if code != 0 || json.Unmarshal([]byte(out), &v) != nil {
		t.Fatalf("version --json: exit %d, %q, %s", code, out, stderr)
	}
	if v.Version == "" || !strings.HasPrefix(v.Go, "go1.") {
		t.Fatalf("version --json: %+v; want a version and the Go version", v)
	}
	text, _, code := parley(t, bin, "version")
	if code != 0 || !strings.HasPrefix(text, "parley "+v.Version) || !strings.Contains(text, v.Go) {
		t.Fatalf("version: exit %d, %q; want parley %s and %s", code, text, v.Version, v.Go)
	}

	if v.Revision == "" {
		reason := "the go command found no VCS checkout"
		if fi, err := os.Lstat("../../.git"); err == nil && !fi.IsDir() {
			reason = "../../.git is a file (a git worktree), which the go command does not stamp"
		}
		t.Skipf("the binary has no VCS info (%s): the revision is not checked", reason)
	}
	head := gitOut(t, "rev-parse", "HEAD")
	if v.Revision != head {
		t.Fatalf("version --json names revision %s; git rev-parse HEAD is %s", v.Revision, head)
	}
	commitTime, err := time.Parse(time.RFC3339, v.Time)
	if err != nil || commitTime.Unix() != parseUnix(t, gitOut(t, "log", "-1", "--format=%ct")) {
		t.Fatalf("version --json names time %q; HEAD was committed at %s", v.Time, gitOut(t, "log", "-1", "--format=%cI"))
	}
	if dirty := gitOut(t, "status", "--porcelain") != ""; v.Modified != dirty {
		t.Fatalf("version --json says modified %v; git status says %v", v.Modified, dirty)
	}
	want := head[:12]
	if v.Modified {
		want += "+dirty"
	}
	if !strings.Contains(text, " "+want+" ") {
		t.Fatalf("version printed %q; want the commit as %s", text, want)
	}
}

func gitOut(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("git", args...).Output()
	if err != nil {
		t.Fatalf("git %v: %v", args, err)
	}
	return strings.TrimSpace(string(out))
}

func parseUnix(t *testing.T, s string) int64 {
	t.Helper()
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		t.Fatalf("not a unix time: %q", s)
	}
	return n
}
