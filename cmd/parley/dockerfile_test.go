package main

import (
	"debug/elf"
	"encoding/json"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// dockerStage is one FROM … stage of the Dockerfile: its ENV settings, ARG
// names and RUN, COPY and USER instructions, in order.
type dockerStage struct {
	from string
	env  []string
	args []string
	run  []string
	copy [][]string // the words after COPY
	user string
}

func parseDockerfile(t *testing.T) []dockerStage {
	t.Helper()
	text := strings.ReplaceAll(readFile(t, dockerfile), "\\\n", " ")
	var stages []dockerStage
	for _, l := range strings.Split(text, "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		instr, rest, _ := strings.Cut(l, " ")
		rest = strings.TrimSpace(rest)
		if instr == "FROM" {
			stages = append(stages, dockerStage{from: rest})
			continue
		}
		if len(stages) == 0 {
			continue // ARGs before the first FROM
		}
		s := &stages[len(stages)-1]
		switch instr {
		case "ENV":
			s.env = append(s.env, strings.Fields(rest)...)
		case "ARG":
			name, _, _ := strings.Cut(rest, "=")
			s.args = append(s.args, name)
		case "RUN":
			s.run = append(s.run, rest)
		case "COPY":
			s.copy = append(s.copy, strings.Fields(rest))
		case "USER":
			s.user = rest
		}
	}
	if len(stages) != 2 {
		t.Fatalf("%s has %d stages; want a builder and a runtime stage", dockerfile, len(stages))
	}
	return stages
}

// dockerignore returns whether .dockerignore keeps path (relative to the
// context, slash-separated) out of the build context. It handles the
// patterns Docker does, save exceptions (!), which it refuses.
func dockerignore(t *testing.T) func(path string) bool {
	t.Helper()
	var res []*regexp.Regexp
	for _, l := range strings.Split(readFile(t, repoRoot+"/.dockerignore"), "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		if strings.HasPrefix(l, "!") {
			t.Fatalf(".dockerignore: %q: this test does not handle exceptions", l)
		}
		p := strings.Trim(filepath.ToSlash(filepath.Clean(l)), "/")
		var re strings.Builder
		for i := 0; i < len(p); i++ {
			switch {
			case strings.HasPrefix(p[i:], "**/"):
				re.WriteString("(.*/)?")
				i += 2
			case strings.HasPrefix(p[i:], "**"):
				re.WriteString(".*")
				i++
			case p[i] == '*':
				re.WriteString("[^/]*")
			case p[i] == '?':
				re.WriteString("[^/]")
			default:
				re.WriteString(regexp.QuoteMeta(p[i : i+1]))
			}
		}
		res = append(res, regexp.MustCompile("^"+re.String()+"$"))
	}
	return func(path string) bool {
		// A pattern that matches a directory excludes what is in it.
		for p := path; p != "."; p = filepath.ToSlash(filepath.Dir(p)) {
			for _, re := range res {
				if re.MatchString(p) {
					return true
				}
			}
		}
		return false
	}
}

// TestDockerBuildStage runs the Dockerfile's builder stage without Docker:
// the build context is this checkout less what .dockerignore leaves out, and
// the stage's RUN commands run in it with its ENV and PARLEY_REVISION set, as
// a golang image's shell would run them. The binary must come out static
// (the runtime stage has no libc of glibc's kind) and name the revision; and
// every file the runtime stage copies must be in the context.
func TestDockerBuildStage(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the parley binary as the Dockerfile does")
	}
	stages := parseDockerfile(t)
	build, runtime := stages[0], stages[1]
	if !strings.HasPrefix(build.from, "golang:") || !strings.HasSuffix(build.from, " AS build") {
		t.Fatalf("the first stage is FROM %s; want a golang builder named build", build.from)
	}
	if runtime.user == "" || strings.HasPrefix(runtime.user, "root") || strings.HasPrefix(runtime.user, "0") {
		t.Fatalf("the runtime stage runs as %q; want a user that is not root", runtime.user)
	}

	ignored := dockerignore(t)
	ctxDir := filepath.Join(t.TempDir(), "src")
	root, err := filepath.Abs(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(ctxDir, 0o755); err != nil {
		t.Fatal(err)
	}
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		if rel == "." {
			return nil
		}
		if ignored(filepath.ToSlash(rel)) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		dst := filepath.Join(ctxDir, rel)
		if d.IsDir() {
			return os.MkdirAll(dst, 0o755)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		return os.WriteFile(dst, data, fi.Mode().Perm())
	})
	if err != nil {
		t.Fatalf("copy the build context: %v", err)
	}
	for _, p := range []string{".git", "Dockerfile", "compose.yaml"} {
		if _, err := os.Stat(filepath.Join(ctxDir, p)); err == nil {
			t.Errorf("the build context has %s: a change to it would rebuild the image", p)
		}
	}

	out := filepath.Join(t.TempDir(), "out")
	env := append(os.Environ(), build.env...)
	for _, a := range build.args {
		if a == "PARLEY_REVISION" {
			env = append(env, "PARLEY_REVISION=0123456789abcdef0123456789abcdef01234567")
		}
	}
	for _, r := range build.run {
		cmd := exec.Command("sh", "-c", strings.ReplaceAll(r, "/out/", out+"/"))
		cmd.Dir, cmd.Env = ctxDir, env
		if o, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("RUN %s: %v\n%s", r, err, o)
		}
	}
	bin := filepath.Join(out, "parley")
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatalf("the builder stage made no ELF binary at /out/parley: %v", err)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Errorf("/out/parley is dynamically linked; the runtime stage needs a static binary (CGO_ENABLED=0)")
		}
	}
	f.Close()
	o, err := exec.Command(bin, "version", "--json").Output()
	var v buildInfo
	if err != nil || json.Unmarshal(o, &v) != nil || v.Revision != "0123456789abcdef0123456789abcdef01234567" || v.Version != "devel" {
		t.Fatalf("the image's parley version --json: %s (%v); want devel and the PARLEY_REVISION build arg", o, err)
	}

	for _, c := range runtime.copy {
		if strings.HasPrefix(c[0], "--from=") {
			continue
		}
		for _, src := range c[:len(c)-1] {
			fi, err := os.Stat(filepath.Join(ctxDir, src))
			if err != nil {
				t.Errorf("the runtime stage copies %s, which is not in the build context: %v", src, err)
			} else if fi.Mode().Perm()&0o111 == 0 {
				t.Errorf("the runtime stage copies %s, which is not executable", src)
			}
		}
	}
}
