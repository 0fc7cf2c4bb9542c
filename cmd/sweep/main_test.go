package main

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"mimlab/framework/store"
	"mimlab/framework/store/pgtest"
)

var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "sweepbin")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "sweep")
	if out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building sweep: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	pgtest.Stop()
	os.RemoveAll(dir)
	os.Exit(code)
}

// tiny is a spec that trains in seconds on synthetic data.
const tiny = `name = "tiny"
[data]
name = "synthetic"
image_size = 12
patch_size = 4
batch_size = 16
num_train = 64
num_test = 32
classes = 4
[masking]
num_masked = 4
min_block = 2
[encoder]
dim = 16
depth = 1
heads = 2
[regressor]
depth = 1
[decoder]
depth = 1
[train]
steps = %d
warmup_steps = 2
checkpoint_every = 5
log_every = 1
backend = "go"
[eval]
protocols = ["linear", "knn"]
baselines = false
[sweep]
seeds = %s
`

func writeSpec(t *testing.T, dir, name, text string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func sweepCmd(ctx context.Context, dir string, args ...string) *exec.Cmd {
	c := exec.CommandContext(ctx, binary, args...)
	c.Dir = dir
	c.Env = append(os.Environ(), "MIMLAB_NO_FETCH=1")
	return c
}

func TestBadSpecs(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "results.db")
	st, err := store.Open(db)
	if err != nil {
		t.Fatal(err)
	}
	st.AddSweep("existing", "x.toml", []store.NewTrial{{Hash: "h", Name: "n", Spec: "{}"}})
	st.Close()
	before, _ := os.ReadFile(db)
	good := fmt.Sprintf(tiny, 10, "[1]")
	cases := []struct {
		name  string
		files map[string]string
		want  []string
	}{
		{"malformed TOML", map[string]string{"s.toml": "name = \"x\"\n[data\nname = 3"}, []string{"s.toml:3", "malformed TOML", "expected"}},
		{"unknown key", map[string]string{"s.toml": strings.Replace(good, "num_masked = 4", "num_masked = 4\nnum_maskd = 3", 1)}, []string{"s.toml:12", "masking.num_maskd: unknown key", "allowed: ", "num_masked"}},
		{"unknown component", map[string]string{"s.toml": strings.Replace(good, "[encoder]", "[encoder]\nname = \"vitt\"", 1)}, []string{"s.toml:14", `encoder.name = "vitt": unknown encoder; registered: vit`}},
		{"wrong type", map[string]string{"s.toml": strings.Replace(good, "dim = 16", `dim = "sixteen"`, 1)}, []string{"s.toml:14", "encoder.dim: wrong type"}},
		{"num_masked too large", map[string]string{"s.toml": strings.Replace(good, "num_masked = 4", "num_masked = 9", 1)}, []string{"s.toml", "masking.num_masked = 9: must be < 9 patches (1..8)"}},
		{"patch does not divide", map[string]string{"s.toml": strings.Replace(good, "image_size = 12", "image_size = 14", 1)}, []string{"s.toml:4", "data.image_size = 14: patch_size 4 must divide it"}},
		{"missing base", map[string]string{"s.toml": "base = \"nope.toml\"\n" + good}, []string{"s.toml", `base = "nope.toml"`, "no such file"}},
		{"cycle of bases", map[string]string{"a.toml": "base = \"b.toml\"\nname = \"a\"", "b.toml": "base = \"a.toml\"\nname = \"b\""}, []string{"cycle of bases"}},
		{"unknown backend", map[string]string{"s.toml": strings.Replace(good, `backend = "go"`, `backend = "gpu"`, 1)}, []string{"s.toml:26", `train.backend = "gpu": allowed values are auto, ort, go, xla`}},
		{"unknown section", map[string]string{"s.toml": good + "\n[optimizer]\nlr = 1\n"}, []string{"s.toml", `unknown section or key "optimizer"`, "allowed: name, base, data"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var first string
			for name, text := range tc.files {
				p := writeSpec(t, dir, name, text)
				if first == "" || name == "a.toml" || name == "s.toml" {
					first = p
				}
			}
			var stderr bytes.Buffer
			c := sweepCmd(context.Background(), dir, "run", "--db", db, first)
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
			after, _ := os.ReadFile(db)
			if !bytes.Equal(before, after) {
				t.Fatal("results.db changed")
			}
			for _, suffix := range []string{"-wal", "-shm"} {
				if _, err := os.Stat(db + suffix); err == nil {
					t.Fatalf("results.db%s appeared", suffix)
				}
			}
			for name := range tc.files {
				os.Remove(filepath.Join(dir, name))
			}
		})
	}
}

func openDB(t *testing.T, path string) *sql.DB {
	t.Helper()
	s, err := store.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s.Raw()
}

// A run killed with SIGKILL part way is finished by a second run: every trial done exactly once, the
// interrupted one resumed from its checkpoint (its steps continue).
func TestKillAndResume(t *testing.T) {
	dir := t.TempDir()
	spec := writeSpec(t, dir, "tiny.toml", fmt.Sprintf(tiny, 60, "[1, 2]"))
	db := filepath.Join(dir, "results.db")
	var out1 bytes.Buffer
	c := sweepCmd(context.Background(), dir, "run", "--db", db, "--heartbeat", "200ms", spec)
	c.Stdout, c.Stderr = &out1, &out1
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Minute)
	killedAt := 0
	for time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
		d, err := sql.Open("sqlite3", "file:"+db+"?mode=ro&_busy_timeout=5000")
		if err != nil {
			continue
		}
		var step int
		err = d.QueryRow(`SELECT COALESCE(MAX(step), 0) FROM metrics WHERE trial_id = 1`).Scan(&step)
		d.Close()
		if err == nil && step >= 22 {
			c.Process.Signal(syscall.SIGKILL)
			killedAt = step
			break
		}
	}
	c.Wait()
	if killedAt == 0 {
		t.Fatalf("the first run never reached step 22:\n%s", out1.String())
	}
	time.Sleep(1500 * time.Millisecond) // let the killed run's heartbeat go stale (6 x 200ms)
	// A checkpoint half-written when the kill came (planted: the kill may fall between writes) is removed
	// by the attempt that resumes the trial.
	var hash1 string
	if err := openDB(t, db).QueryRow(`SELECT hash FROM trials WHERE id = 1`).Scan(&hash1); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "runs", hash1, ".checkpoint.safetensors.tmp-12345"), []byte("half"), 0o644); err != nil {
		t.Fatal(err)
	}
	var out2 bytes.Buffer
	c2 := sweepCmd(context.Background(), dir, "run", "--db", db, "--heartbeat", "200ms", spec)
	c2.Stdout, c2.Stderr = &out2, &out2
	if err := c2.Run(); err != nil {
		t.Fatalf("second run: %v\n%s", err, out2.String())
	}
	resumed := -1
	for _, l := range strings.Split(out2.String(), "\n") {
		// Trial 1's line: with -j auto both trials may have run, and both resume.
		if i := strings.Index(l, "resuming from its checkpoint at step "); i >= 0 && strings.HasPrefix(l, "trial 1 ") {
			fmt.Sscanf(l[i+len("resuming from its checkpoint at step "):], "%d/60", &resumed)
		}
	}
	// checkpoint_every = 5: the last checkpoint before the kill.
	if resumed <= 0 || resumed%5 != 0 || resumed > killedAt || killedAt-resumed >= 10 {
		t.Fatalf("the second run did not resume trial 1 from its last checkpoint (killed at step %d, resumed at %d):\n%s", killedAt, resumed, out2.String())
	}
	d := openDB(t, db)
	rows, _ := d.Query(`SELECT id, state, attempts, step FROM trials ORDER BY id`)
	defer rows.Close()
	n := 0
	for rows.Next() {
		var id, attempts, step int
		var state string
		rows.Scan(&id, &state, &attempts, &step)
		n++
		if state != "done" {
			t.Errorf("trial %d is %s", id, state)
		}
		if id == 1 && attempts != 2 {
			t.Errorf("trial 1: %d attempts, want 2 (killed once, resumed once)", attempts)
		}
	}
	if n != 2 {
		t.Fatalf("%d trials", n)
	}
	// Steps continue: one loss per step 1..60, no gaps, no duplicates.
	var cnt, mn, mx int
	d.QueryRow(`SELECT COUNT(*), MIN(step), MAX(step) FROM metrics WHERE trial_id = 1 AND name = 'loss'`).Scan(&cnt, &mn, &mx)
	if cnt != 60 || mn != 1 || mx != 60 {
		t.Fatalf("trial 1 logged %d losses over steps %d..%d, want 60 over 1..60", cnt, mn, mx)
	}
	var evals int
	d.QueryRow(`SELECT COUNT(*) FROM evals WHERE protocol IN ('linear', 'knn') AND metric = 'top1'`).Scan(&evals)
	if evals != 4 {
		t.Fatalf("%d evals, want 4", evals)
	}
	if temps, _ := filepath.Glob(filepath.Join(dir, "runs", "*", ".*.tmp-*")); len(temps) > 0 {
		t.Errorf("temporary files left after the resume: %v", temps)
	}
	// The planted file is among those removed (the kill may also have caught a checkpoint mid-write, whose
	// attempt-named temporary file is removed with it).
	if !regexp.MustCompile(`removed \d+ temporary file\(s\) a killed attempt left: [^\n]*\.checkpoint\.safetensors\.tmp-12345`).MatchString(out2.String()) {
		t.Errorf("the resume does not say it removed the killed attempt's temporary file:\n%s", out2.String())
	}
	// The attempts table has both claims of trial 1: the killed one from step 0 (never closed) and the
	// resumed one from its checkpoint to the end; `sweep status` prints that history.
	type att struct {
		attempt, from, end int
		outcome            string
	}
	var atts []att
	ar, err := d.Query(`SELECT attempt, COALESCE(from_step, -1), COALESCE(end_step, -1), COALESCE(outcome, '') FROM attempts WHERE trial_id = 1 ORDER BY attempt`)
	if err != nil {
		t.Fatal(err)
	}
	for ar.Next() {
		var a att
		ar.Scan(&a.attempt, &a.from, &a.end, &a.outcome)
		atts = append(atts, a)
	}
	ar.Close()
	if want := []att{{1, 0, -1, ""}, {2, resumed, 60, "done"}}; !slices.Equal(atts, want) {
		t.Errorf("trial 1's attempts %+v, want %+v", atts, want)
	}
	st, err := sweepCmd(context.Background(), dir, "status", "--db", db).CombinedOutput()
	if err != nil || !strings.Contains(string(st), "attempts: #1 steps 0-? at ") ||
		!strings.Contains(string(st), fmt.Sprintf("ended unrecorded; #2 steps %d-60 at ", resumed)) {
		t.Errorf("sweep status does not show trial 1's two attempts (%v):\n%s", err, st)
	}
	// A third run does nothing.
	out3, err := sweepCmd(context.Background(), dir, "run", "--db", db, spec).CombinedOutput()
	if err != nil || !strings.Contains(string(out3), "0 done, 0 failed, 0 interrupted") {
		t.Fatalf("third run: %v\n%s", err, out3)
	}
}

// Two `sweep run` processes on one database and one sweep: every trial runs once.
func TestConcurrentRunners(t *testing.T) {
	dir := t.TempDir()
	spec := writeSpec(t, dir, "tiny.toml", fmt.Sprintf(tiny, 15, "[1, 2, 3, 4, 5, 6]"))
	db := filepath.Join(dir, "results.db")
	var wg sync.WaitGroup
	outs := make([]bytes.Buffer, 2)
	errs := make([]error, 2)
	for i := 0; i < 2; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			c := sweepCmd(context.Background(), dir, "run", "--db", db, "--heartbeat", "200ms", spec)
			c.Stdout, c.Stderr = &outs[i], &outs[i]
			errs[i] = c.Run()
		}(i)
	}
	wg.Wait()
	for i := range errs {
		if errs[i] != nil {
			t.Fatalf("runner %d: %v\n%s", i, errs[i], outs[i].String())
		}
	}
	d := openDB(t, db)
	var done, once int
	d.QueryRow(`SELECT COUNT(*), SUM(attempts = 1) FROM trials WHERE state = 'done'`).Scan(&done, &once)
	if done != 6 || once != 6 {
		t.Fatalf("%d trials done, %d of them in one attempt; want 6 and 6\n%s\n%s", done, once, outs[0].String(), outs[1].String())
	}
	total := 0
	for _, o := range outs {
		var n int
		for _, l := range strings.Split(o.String(), "\n") {
			if strings.HasPrefix(l, "sweep tiny: ") && strings.Contains(l, " done,") {
				fmt.Sscanf(strings.TrimPrefix(l, "sweep tiny: "), "%d done", &n)
			}
		}
		total += n
	}
	if total != 6 {
		t.Fatalf("the two runs report %d trials done between them, want 6", total)
	}
}

func TestPlanListsTrials(t *testing.T) {
	out, err := sweepCmd(context.Background(), "../..", "plan", "experiments/quickstart.toml").CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if !strings.Contains(string(out), "quickstart (experiments/quickstart.toml): 2 trials") {
		t.Fatalf("plan output:\n%s", out)
	}
	if _, err := os.Stat("../../results.db-plan-check"); err == nil {
		t.Fatal("plan created a database")
	}
}
