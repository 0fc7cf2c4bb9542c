package store

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestOwnedWritesAreFenced(t *testing.T) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) { testOwnedFence(t, b.fresh(t)) })
	}
}

// Worker A claims a trial and goes silent past its lease; B claims it again. Every write through A's handle
// then fails with ErrNotOwner and changes nothing (rows, the file in place, its record); B's succeed.
func testOwnedFence(t *testing.T, db string) {
	s := openT(t, db)
	sw := sweepOf(t, s, 1)
	ctx := context.Background()
	ta, err := s.Claim(ctx, sw, "A", time.Hour)
	if err != nil || ta == nil {
		t.Fatalf("claim A: %v", err)
	}
	a := ta.Lease
	dir := t.TempDir()
	final := filepath.Join(dir, "checkpoint.safetensors")
	commit := func(o *Owned, content string) error {
		tmp := filepath.Join(dir, ".checkpoint.safetensors.tmp-a"+content)
		if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return o.CommitFile("checkpoint", tmp, final, "sha-"+content, int64(len(content)))
	}
	if err := a.AddMetrics([]Metric{{Step: 1, Name: "loss", Value: 1}}); err != nil {
		t.Fatalf("A while it holds the lease: %v", err)
	}
	if err := commit(a, "A1"); err != nil {
		t.Fatalf("A commits while it holds the lease: %v", err)
	}
	time.Sleep(20 * time.Millisecond)
	tb, err := s.Claim(ctx, sw, "B", 10*time.Millisecond) // A's heartbeat is older than this: reclaimed
	if err != nil || tb == nil || tb.Attempts != 2 {
		t.Fatalf("claim B: %+v %v", tb, err)
	}
	b := tb.Lease // the handle Claim returned
	if err := commit(b, "B15"); err != nil {
		t.Fatalf("B commits: %v", err)
	}
	stale := []struct {
		name  string
		write func() error
	}{
		{"metrics", func() error { return a.AddMetrics([]Metric{{Step: 20, Name: "loss", Value: 9}}) }},
		{"truncate", func() error { return a.TruncateMetrics(0) }},
		{"eval", func() error { return a.SetEvalAt(Final, "linear", "top1", 0.1) }},
		{"artifact row", func() error { return a.AddArtifact("encoder", "/elsewhere", "x", 1) }},
		{"checkpoint file", func() error { return commit(a, "A20") }},
		{"outcome", func() error { return a.Finish(Done, "", 20) }},
	}
	for _, w := range stale {
		if err := w.write(); !errors.Is(err, ErrNotOwner) {
			t.Errorf("A's %s after B's claim: %v, want ErrNotOwner", w.name, err)
		}
	}
	// The same handle of A, by owner name alone, must not pass for B's attempt either.
	old := &Owned{s: s, ID: ta.ID, Owner: "B", Attempt: ta.Attempts}
	if err := old.Check(); !errors.Is(err, ErrNotOwner) {
		t.Errorf("an old attempt number passed the fence: %v", err)
	}
	if err := old.Finish(Failed, "stale", 1); !errors.Is(err, ErrNotOwner) {
		t.Errorf("an old attempt number recorded an outcome: %v", err)
	}
	if tr, _ := s.TrialByID(ta.ID); tr.State != Running {
		t.Errorf("trial %s after the stale writes, want still running under B", tr.State)
	}
	if got, _ := os.ReadFile(final); string(got) != "B15" {
		t.Errorf("the file in place is %q, want B's", got)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, ".*tmp-aA20")); len(left) != 0 {
		t.Errorf("A's refused temporary file is left: %v", left)
	}
	if sha, _ := s.ArtifactSHA(ta.ID, "checkpoint"); sha != "sha-B15" {
		t.Errorf("checkpoint record %q, want B's", sha)
	}
	if p, _ := s.Artifact(ta.ID, "encoder"); p != "" {
		t.Errorf("A recorded an encoder at %q", p)
	}
	var n int
	s.Scan(`SELECT COUNT(*) FROM metrics WHERE trial_id = ?`, []any{ta.ID}, &n)
	if n != 1 {
		t.Errorf("%d metrics rows, want A's one from before it lost the lease", n)
	}
	s.Scan(`SELECT COUNT(*) FROM evals WHERE trial_id = ?`, []any{ta.ID}, &n)
	if n != 0 {
		t.Errorf("%d evals rows, want none", n)
	}
}
