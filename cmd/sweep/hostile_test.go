package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"mimlab/framework/store"
)

// Values that pass a loose check and then crash or lie: each is refused before anything runs, with exit
// status 2, a message that names the key, and the database untouched (issue 15, first family).
func TestHostileValuesRefusedAtPlan(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "results.db")
	st, err := store.Open(db)
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	before, _ := os.ReadFile(db)
	good := fmt.Sprintf(tiny, 10, "[1]")
	cases := []struct {
		name string
		spec string
		sets []string
		want []string
	}{
		{"batch of 1e9", good, []string{"data.batch_size=1000000000"}, []string{"data.batch_size = 1000000000: must be in [1, 65536]"}},
		{"synthetic num_train 1e11", good, []string{"data.num_train=100000000000"}, []string{"data.num_train/num_test = 100000000000/32"}},
		{"heads do not divide the width", good, []string{"regressor.heads=3"}, []string{"regressor.heads = 3", "must divide encoder.dim = 16"}},
		{"encoder heads do not divide", good, []string{"encoder.heads=3"}, []string{"encoder.heads = 3: must divide dim 16"}},
		{"mlp_ratio nan", good, []string{"encoder.mlp_ratio=nan"}, []string{"encoder.mlp_ratio = NaN: must be a finite number"}},
		{"lr inf", good, []string{"train.lr=inf"}, []string{"train.lr = +Inf: must be a finite number"}},
		{"clip nan", good, []string{"train.clip=nan"}, []string{"train.clip = NaN: must be a finite number"}},
		{"epochs 2^61", good, []string{"train.steps=0", "train.epochs=2305843009213693952"}, []string{"train.epochs = 2305843009213693952: at most 1000000"}},
		{"negative seed with -set", strings.Replace(good, "[sweep]\nseeds = [1]\n", "", 1), []string{"train.seed=-1"}, []string{"train.seed = -1: must be >= 0"}},
		{"random n 1e18", good + "[sweep.random]\nn = 1000000000000000000\n[sweep.random.params]\n\"train.lr\" = { dist = \"loguniform\", low = 1e-4, high = 1e-2 }\n", nil, []string{"random.n = 1000000000000000000: want an integer in [1, 100000]"}},
		{"a million-point grid", good + "[sweep.grid]\n\"train.lr\" = [" + strings.Repeat("1e-3, ", 999) + "1e-3]\n\"train.warmup_steps\" = [" + strings.Repeat("1, ", 999) + "1]\n", nil, []string{"more than 100000 points"}},
		{"name with a newline", strings.Replace(good, `name = "tiny"`, `name = "ti\nny"`, 1), nil, []string{"control character"}},
		{"name with a bidi override", strings.Replace(good, `name = "tiny"`, "name = \"ti\u202eny\"", 1), nil, []string{"bidirectional control"}},
		{"name with a pipe", strings.Replace(good, `name = "tiny"`, `name = "a|b"`, 1), nil, []string{`'|' not allowed`}},
		{"base is /dev/zero", "base = \"/dev/zero\"\n" + good, nil, []string{"/dev/zero", "not a regular file"}},
		{"more memory than the machine", good, []string{"data.image_size=4096", "data.patch_size=4"}, []string{"one trial needs about", "GB available"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := writeSpec(t, dir, "s.toml", tc.spec)
			args := []string{"run", "--db", db}
			for _, s := range tc.sets {
				args = append(args, "-set", s)
			}
			var stderr bytes.Buffer
			c := sweepCmd(context.Background(), dir, append(args, p)...)
			c.Stderr = &stderr
			err := c.Run()
			ee, ok := err.(*exec.ExitError)
			if !ok || ee.ExitCode() != 2 {
				t.Fatalf("exit %v, want status 2; stderr:\n%s", err, stderr.String())
			}
			for _, w := range tc.want {
				if !strings.Contains(stderr.String(), w) {
					t.Errorf("message lacks %q:\n%s", w, stderr.String())
				}
			}
			if strings.Contains(stderr.String(), "goroutine ") || strings.Contains(stderr.String(), "panic:") {
				t.Fatalf("a stack trace:\n%s", stderr.String())
			}
			if after, _ := os.ReadFile(db); !bytes.Equal(before, after) {
				t.Fatal("results.db changed")
			}
		})
	}
}

// A spec edited and run again under the same name is refused (the report would pool the two
// configurations as seeds), unless it is registered as a new revision; more seeds of the same spec are fine.
func TestEditedSpecUnderTheSameName(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "a?b#c%d.db") // also: a path SQLite would read as a URI
	p := writeSpec(t, dir, "tiny.toml", fmt.Sprintf(tiny, 2, "[1]"))
	if out, err := sweepCmd(context.Background(), dir, "run", "--db", db, p).CombinedOutput(); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if _, err := os.Stat(db); err != nil {
		t.Fatalf("the database is not at the path given: %v", err)
	}
	if out, err := sweepCmd(context.Background(), dir, "run", "--db", db, writeSpec(t, dir, "tiny.toml", fmt.Sprintf(tiny, 2, "[1, 2]"))).CombinedOutput(); err != nil {
		t.Fatalf("adding a seed was refused: %v\n%s", err, out)
	}
	edited := writeSpec(t, dir, "tiny.toml", strings.Replace(fmt.Sprintf(tiny, 2, "[1, 2]"), "warmup_steps = 2", "warmup_steps = 1", 1))
	out, err := sweepCmd(context.Background(), dir, "run", "--db", db, edited).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 || !strings.Contains(string(out), "train.warmup_steps: 2 -> 1") || !strings.Contains(string(out), "--as-new-revision") {
		t.Fatalf("edited spec: %v\n%s", err, out)
	}
	out, err = sweepCmd(context.Background(), dir, "run", "--db", db, "--as-new-revision", edited).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "registered as tiny@2") {
		t.Fatalf("--as-new-revision: %v\n%s", err, out)
	}
	st, err := store.OpenForReading(db)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	old, _ := st.Trials("tiny")
	rev, _ := st.Trials("tiny@2")
	if len(old) != 2 || len(rev) != 2 {
		t.Fatalf("tiny has %d trials, tiny@2 %d; want 2 and 2", len(old), len(rev))
	}
}

// A checkpoint whose bytes were damaged after it was recorded is not resumed: the trial trains from scratch,
// says so, and ends done with every step logged once.
func TestDamagedCheckpointIsNotResumed(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "results.db")
	p := writeSpec(t, dir, "tiny.toml", fmt.Sprintf(tiny, 10, "[1]"))
	if out, err := sweepCmd(context.Background(), dir, "run", "--db", db, p).CombinedOutput(); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	sdb := openDB(t, db)
	var id int64
	var hash string
	if err := sdb.QueryRow(`SELECT id, hash FROM trials`).Scan(&id, &hash); err != nil {
		t.Fatal(err)
	}
	ck := filepath.Join(dir, "runs", hash, "checkpoint.safetensors")
	b, err := os.ReadFile(ck)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)-5] ^= 0xff // a flipped bit in the last tensor's bytes: still a valid file
	if err := os.WriteFile(ck, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := sdb.Exec(`UPDATE trials SET state = 'pending' WHERE id = ?`, id); err != nil {
		t.Fatal(err)
	}
	sdb.Close()
	out, err := sweepCmd(context.Background(), dir, "run", "--db", db, p).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "does not match its record") || !strings.Contains(string(out), "training from scratch") {
		t.Fatalf("%v\n%s", err, out)
	}
	sdb = openDB(t, db)
	defer sdb.Close()
	var state string
	var steps, distinct int
	sdb.QueryRow(`SELECT state FROM trials WHERE id = ?`, id).Scan(&state)
	sdb.QueryRow(`SELECT COUNT(*), COUNT(DISTINCT step) FROM metrics WHERE trial_id = ? AND name = 'loss'`, id).Scan(&steps, &distinct)
	if state != store.Done || steps != 10 || distinct != 10 {
		t.Fatalf("state %s, %d loss rows over %d steps; want done, 10 and 10", state, steps, distinct)
	}
}

// Workers need only the database and the runs folder: trials registered by `run --register-only` are run
// by two `sweep worker` processes after the spec file is gone, each trial once.
func TestWorkersRunFromTheDatabaseAlone(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "results.db")
	p := writeSpec(t, dir, "tiny.toml", fmt.Sprintf(tiny, 4, "[1, 2, 3, 4]"))
	if out, err := sweepCmd(context.Background(), dir, "run", "--register-only", "--db", db, p).CombinedOutput(); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
	var cmds []*exec.Cmd
	var outs []*bytes.Buffer
	for i := 0; i < 2; i++ {
		c := sweepCmd(context.Background(), dir, "worker", "--db", db, "--backend", "go", "--heartbeat", "200ms")
		var b bytes.Buffer
		c.Stdout, c.Stderr = &b, &b
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		cmds, outs = append(cmds, c), append(outs, &b)
	}
	for i, c := range cmds {
		if err := c.Wait(); err != nil {
			t.Fatalf("worker %d: %v\n%s", i, err, outs[i].String())
		}
	}
	sdb := openDB(t, db)
	defer sdb.Close()
	var done, once int
	sdb.QueryRow(`SELECT COUNT(*), SUM(attempts = 1) FROM trials WHERE state = 'done'`).Scan(&done, &once)
	if done != 4 || once != 4 {
		t.Fatalf("%d trials done, %d of them in one attempt; want 4 and 4\n%s\n%s", done, once, outs[0], outs[1])
	}
}

// Several specs in one run each get their own [train] backend (the first spec's is no longer used for all).
func TestEachSpecItsOwnBackend(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "results.db")
	a := writeSpec(t, dir, "a.toml", fmt.Sprintf(tiny, 2, "[1]"))
	b := writeSpec(t, dir, "b.toml", strings.Replace(strings.Replace(fmt.Sprintf(tiny, 2, "[1]"), `name = "tiny"`, `name = "other"`, 1), `backend = "go"`, `backend = "ort"`, 1))
	out, err := sweepCmd(context.Background(), dir, "run", "--db", db, a, b).CombinedOutput()
	if err != nil {
		if os.Getenv("MIMLAB_REQUIRE_ORT") == "" && strings.Contains(string(out), "ONNX Runtime") {
			t.Skip("no ONNX Runtime here")
		}
		t.Fatalf("%v\n%s", err, out)
	}
	if !strings.Contains(string(out), "sweep: backend go") || !strings.Contains(string(out), "sweep: backend ort") {
		t.Fatalf("want one backend per spec:\n%s", out)
	}
}
