package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// What a worker reads from the database passes the plan's checks before anything runs, and the paths it
// writes to are built from validated parts only: a row cannot make a worker run what `plan` would refuse,
// nor write outside --runs.
func TestWorkerChecksStoredTrials(t *testing.T) {
	cases := []struct {
		name string
		// tamper edits the registered database and runs folder; env is the worker's extra environment.
		tamper func(t *testing.T, dir, db string)
		env    []string
		state  string // the trial's state after the worker
		linked bool   // the tamper made a link of its own
		want   string // in the trial's error (state failed) or the worker's output
	}{
		{name: "more memory than the worker has", env: []string{"MIMLAB_MAX_MEMORY=1K"}, state: "failed",
			want: "as sweep plan would refuse it: stored spec: one trial needs about"},
		{name: "a hash of ../victim with a stale identity fingerprint", state: "done", want: `stored identity "../victim" is not 16 hex digits`,
			tamper: func(t *testing.T, dir, db string) {
				d := openDB(t, db)
				for _, q := range []string{`UPDATE trials SET hash = '../victim'`, `UPDATE meta SET value = 'stale' WHERE key = 'identity'`} {
					if _, err := d.Exec(q); err != nil {
						t.Fatal(err)
					}
				}
			}},
		{name: "a trial folder linked outside the runs folder", state: "failed", linked: true, want: `is a link to "../victim"`,
			tamper: func(t *testing.T, dir, db string) {
				var hash string
				openDB(t, db).QueryRow(`SELECT hash FROM trials`).Scan(&hash)
				os.MkdirAll(filepath.Join(dir, "runs"), 0o755)
				if err := os.Symlink("../victim", filepath.Join(dir, "runs", hash)); err != nil {
					t.Fatal(err)
				}
			}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			db := filepath.Join(dir, "results.db")
			victim := filepath.Join(dir, "victim")
			os.MkdirAll(victim, 0o755)
			os.WriteFile(filepath.Join(victim, ".keep.tmp-1"), []byte("mine"), 0o644)
			p := writeSpec(t, dir, "tiny.toml", fmt.Sprintf(tiny, 4, "[1]"))
			if out, err := sweepCmd(context.Background(), dir, "run", "--register-only", "--db", db, p).CombinedOutput(); err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			if c.tamper != nil {
				c.tamper(t, dir, db)
			}
			w := sweepCmd(context.Background(), dir, "worker", "--db", db, "--runs", filepath.Join(dir, "runs"), "--backend", "go")
			w.Env = append(w.Env, c.env...)
			out, _ := w.CombinedOutput()
			var state, reason string
			var metrics int
			d := openDB(t, db)
			d.QueryRow(`SELECT state, COALESCE(error, '') FROM trials`).Scan(&state, &reason)
			d.QueryRow(`SELECT COUNT(*) FROM metrics`).Scan(&metrics)
			if state != c.state || !strings.Contains(reason+string(out), c.want) {
				t.Fatalf("trial %s (%q), want %s saying %q; worker:\n%s", state, reason, c.state, c.want, out)
			}
			if state == "failed" && metrics > 0 {
				t.Errorf("a refused trial logged %d metrics", metrics)
			}
			entries, _ := os.ReadDir(victim)
			if len(entries) != 1 {
				t.Errorf("the worker wrote or removed files outside --runs: %s holds %v", victim, entries)
			}
			links, _ := filepath.Glob(filepath.Join(dir, "runs", "*"))
			for _, l := range links {
				if target, err := os.Readlink(l); err == nil && strings.Contains(target, "victim") && !c.linked {
					t.Errorf("%s links to %s", l, target)
				}
			}
		})
	}
}

// `sweep export` of a trial whose checkpoint is not the file the database recorded (a flipped bit: still a
// valid safetensors file) refuses, naming the mismatch; the recorded file exports.
func TestExportVerifiesTheCheckpoint(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "results.db")
	p := writeSpec(t, dir, "tiny.toml", fmt.Sprintf(tiny, 4, "[1]"))
	if out, err := sweepCmd(context.Background(), dir, "run", "--db", db, p).CombinedOutput(); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	var hash string
	openDB(t, db).QueryRow(`SELECT hash FROM trials`).Scan(&hash)
	export := func() (string, error) {
		out, err := sweepCmd(context.Background(), dir, "export", "--db", db, "--trial", "1", "--weights", filepath.Join(dir, "enc.safetensors"), "--backend", "go").CombinedOutput()
		return string(out), err
	}
	if out, err := export(); err != nil {
		t.Fatalf("exporting the recorded checkpoint: %v\n%s", err, out)
	}
	ck := filepath.Join(dir, "runs", hash, "checkpoint.safetensors")
	b, err := os.ReadFile(ck)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)-5] ^= 0xff
	os.WriteFile(ck, b, 0o644)
	os.Remove(filepath.Join(dir, "enc.safetensors"))
	out, err := export()
	if err == nil || !strings.Contains(out, "does not match the sha256 recorded for it") {
		t.Fatalf("export of a changed checkpoint: %v\n%s", err, out)
	}
	if _, err := os.Stat(filepath.Join(dir, "enc.safetensors")); err == nil {
		t.Error("the refused export wrote its file")
	}
}

// A batch larger than a training split whose size the spec tells is refused by plan (exit 2, the key named),
// not at run time; a batch that fits is planned.
func TestBatchLargerThanAKnownDataset(t *testing.T) {
	cases := []struct {
		name string
		sets []string
		want string // "" = planned
	}{
		{"synthetic num_train", []string{"data.batch_size=65"}, "data.batch_size = 65: larger than the 64 training images of synthetic"},
		{"train_limit", []string{"data.train_limit=20", "data.batch_size=21"}, "data.batch_size = 21: larger than the 20 training images"},
		{"within train_limit", []string{"data.train_limit=20", "data.batch_size=20"}, ""},
		{"mnist as shipped", []string{"data.name=mnist", "data.image_size=28", "data.batch_size=60001"}, "data.batch_size = 60001: larger than the 60000 training images of mnist"},
	}
	dir := t.TempDir()
	p := writeSpec(t, dir, "tiny.toml", fmt.Sprintf(tiny, 4, "[1]"))
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			args := []string{"plan"}
			for _, s := range c.sets {
				args = append(args, "-set", s)
			}
			out, err := sweepCmd(context.Background(), dir, append(args, p)...).CombinedOutput()
			if c.want == "" {
				if err != nil {
					t.Fatalf("refused: %v\n%s", err, out)
				}
				return
			}
			if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 || !strings.Contains(string(out), c.want) {
				t.Fatalf("exit %v, want 2 saying %q:\n%s", err, c.want, out)
			}
		})
	}
}
