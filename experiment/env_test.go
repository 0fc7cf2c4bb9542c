package experiment

import (
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"testing"
)

// A binary's provenance is the commit it was built from when go build stamped one.
func TestVCSOf(t *testing.T) {
	cases := []struct {
		name      string
		bi        *debug.BuildInfo
		rev       string
		dirty, ok bool
	}{
		{"stamped clean", &debug.BuildInfo{Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "abc"}, {Key: "vcs.modified", Value: "false"}}}, "abc", false, true},
		{"stamped dirty", &debug.BuildInfo{Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "abc"}, {Key: "vcs.modified", Value: "true"}}}, "abc", true, true},
		{"go run (no stamp)", &debug.BuildInfo{Settings: []debug.BuildSetting{{Key: "-compiler", Value: "gc"}}}, "", false, false},
		{"no build info", nil, "", false, false},
	}
	for _, c := range cases {
		rev, dirty, ok := vcsOf(c.bi, c.bi != nil)
		if rev != c.rev || dirty != c.dirty || ok != c.ok {
			t.Errorf("%s: got (%q, %v, %v), want (%q, %v, %v)", c.name, rev, dirty, ok, c.rev, c.dirty, c.ok)
		}
	}
}

// Without a VCS stamp, a trial's commit is the working tree's HEAD when the process started: commits made
// while a long sweep runs belong to later processes, not to the trials this one starts after them.
func TestUnstampedProvenanceIsTheHeadAtStart(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("no git")
	}
	dir := t.TempDir()
	git := func(args ...string) string {
		t.Helper()
		c := exec.Command("git", append([]string{"-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"}, args...)...)
		c.Dir = dir
		out, err := c.CombinedOutput()
		if err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	git("init", "-q")
	os.WriteFile(filepath.Join(dir, "a"), []byte("1"), 0o644)
	git("add", "a")
	git("commit", "-qm", "first")
	first := git("rev-parse", "HEAD")
	t.Chdir(dir)
	startHead = sync.OnceValue(headOf) // this test's process "starts" here
	e := NewEnv(nil, "go", t.TempDir(), io.Discard)
	os.WriteFile(filepath.Join(dir, "a"), []byte("2"), 0o644)
	git("commit", "-qam", "second")
	if p := e.Provenance(); p.GitCommit != first || p.GitDirty {
		t.Errorf("provenance %q dirty=%v, want the HEAD at start %q, clean", p.GitCommit, p.GitDirty, first)
	}
	// An Env made after the commit (a later spec of the same `sweep run`) has the same start.
	if p := NewEnv(nil, "go", t.TempDir(), io.Discard).Provenance(); p.GitCommit != first {
		t.Errorf("a later Env's provenance %q, want the HEAD at start %q", p.GitCommit, first)
	}
	// A tree with uncommitted changes at start is dirty.
	os.WriteFile(filepath.Join(dir, "a"), []byte("3"), 0o644)
	startHead = sync.OnceValue(headOf)
	if p := NewEnv(nil, "go", t.TempDir(), io.Discard).Provenance(); p.GitCommit != git("rev-parse", "HEAD") || !p.GitDirty {
		t.Errorf("provenance of a dirty tree: %+v", p)
	}
}
