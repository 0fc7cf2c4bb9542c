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
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"mimlab/framework/store/pgtest"
)

// consistent checks what PRAGMA integrity/foreign-key checks would on SQLite, with queries both back ends
// run: no row points at a missing trial or sweep, no trial is left running, each done trial has its evals,
// each trial is in one sweep.
func consistent(t *testing.T, db *sql.DB, trials int) {
	t.Helper()
	checks := []struct {
		name, q string
		want    int
	}{
		{"metrics of missing trials", `SELECT COUNT(*) FROM metrics m WHERE NOT EXISTS (SELECT 1 FROM trials t WHERE t.id = m.trial_id)`, 0},
		{"evals of missing trials", `SELECT COUNT(*) FROM evals e WHERE NOT EXISTS (SELECT 1 FROM trials t WHERE t.id = e.trial_id)`, 0},
		{"artifacts of missing trials", `SELECT COUNT(*) FROM artifacts a WHERE NOT EXISTS (SELECT 1 FROM trials t WHERE t.id = a.trial_id)`, 0},
		{"sweep rows of missing sweeps", `SELECT COUNT(*) FROM sweep_trials s WHERE NOT EXISTS (SELECT 1 FROM sweeps w WHERE w.id = s.sweep_id)`, 0},
		{"trials not done", `SELECT COUNT(*) FROM trials WHERE state <> 'done'`, 0},
		{"done trials", `SELECT COUNT(*) FROM trials WHERE state = 'done'`, trials},
		{"trials in a sweep", `SELECT COUNT(DISTINCT trial_id) FROM sweep_trials`, trials},
		{"final evals (linear, knn)", `SELECT COUNT(*) FROM evals WHERE step = -1 AND metric = 'top1'`, 2 * trials},
		{"encoders exported", `SELECT COUNT(*) FROM artifacts WHERE kind = 'encoder'`, trials},
	}
	for _, c := range checks {
		var n int
		if err := db.QueryRow(c.q).Scan(&n); err != nil || n != c.want {
			t.Errorf("%s: %d (%v), want %d", c.name, n, err, c.want)
		}
	}
}

// stepsOnce checks that a trial logged its loss once at every step 1..steps: no gap, no duplicate.
func stepsOnce(t *testing.T, db *sql.DB, trial, steps int) {
	t.Helper()
	var n, distinct, lo, hi int
	db.QueryRow(`SELECT COUNT(*), COUNT(DISTINCT step), MIN(step), MAX(step) FROM metrics WHERE trial_id = $1 AND name = 'loss'`, trial).Scan(&n, &distinct, &lo, &hi)
	if n != steps || distinct != steps || lo != 1 || hi != steps {
		t.Errorf("trial %d logged %d losses (%d distinct steps) over %d..%d, want one per step 1..%d", trial, n, distinct, lo, hi, steps)
	}
}

func pgDB(t *testing.T, url string) *sql.DB {
	t.Helper()
	d, err := sql.Open("pgx", url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// Four `sweep worker` processes on PostgreSQL, two of them SIGKILLed in the middle of a trial, one more
// started later: every trial ends done exactly once, and the killed trials resume from their checkpoints
// (their step logs have no gap and no duplicate).
func TestPostgresWorkersSurviveKills(t *testing.T) {
	url := pgtest.Require(t).NewDB(t)
	dir := t.TempDir()
	const steps = 60
	p := writeSpec(t, dir, "tiny.toml", fmt.Sprintf(tiny, steps, "[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]"))
	if out, err := sweepCmd(context.Background(), dir, "run", "--register-only", "--db", url, p).CombinedOutput(); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	start := func() (*exec.Cmd, *bytes.Buffer) {
		c := sweepCmd(context.Background(), dir, "worker", "--db", url, "--runs", filepath.Join(dir, "runs"), "--backend", "go", "--heartbeat", "200ms")
		var b bytes.Buffer
		c.Stdout, c.Stderr = &b, &b
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		return c, &b
	}
	var cmds []*exec.Cmd
	var outs []*bytes.Buffer
	for i := 0; i < 4; i++ {
		c, b := start()
		cmds, outs = append(cmds, c), append(outs, b)
	}
	db := pgDB(t, url)
	// Kill the workers of the first two trials seen running past step 12 (mid-trial, after a checkpoint).
	killed := map[int]int{} // trial -> step when killed
	ownerPID := regexp.MustCompile(`:(\d+)/`)
	for deadline := time.Now().Add(3 * time.Minute); len(killed) < 2 && time.Now().Before(deadline); {
		time.Sleep(100 * time.Millisecond)
		rows, err := db.Query(`SELECT id, owner, step FROM trials WHERE state = 'running' AND step >= 12 ORDER BY id`)
		if err != nil {
			continue
		}
		for rows.Next() && len(killed) < 2 {
			var id, step int
			var owner string
			rows.Scan(&id, &owner, &step)
			m := ownerPID.FindStringSubmatch(owner)
			if m == nil {
				continue
			}
			pid, _ := strconv.Atoi(m[1])
			for _, c := range cmds {
				if c.Process.Pid == pid && c.ProcessState == nil {
					if _, done := killed[id]; !done && syscall.Kill(pid, 0) == nil {
						c.Process.Signal(syscall.SIGKILL)
						c.Wait()
						killed[id] = step
					}
				}
			}
		}
		rows.Close()
	}
	if len(killed) < 2 {
		t.Fatalf("no two trials were seen running past step 12 to kill their workers (killed %v)", killed)
	}
	time.Sleep(1500 * time.Millisecond) // the killed workers' leases expire (6 heartbeats of 200ms)
	late, lateOut := start()
	cmds, outs = append(cmds, late), append(outs, lateOut)
	for i, c := range cmds {
		if c.ProcessState != nil {
			continue // killed
		}
		if err := c.Wait(); err != nil {
			t.Fatalf("worker %d: %v\n%s", i, err, outs[i])
		}
	}
	all := ""
	for _, o := range outs {
		all += o.String()
	}
	// Leases that expired while every surviving worker had already finished are claimed by the late one;
	// run one more worker if some were still running with a fresh heartbeat when it looked.
	var left int
	db.QueryRow(`SELECT COUNT(*) FROM trials WHERE state <> 'done'`).Scan(&left)
	if left > 0 {
		time.Sleep(1500 * time.Millisecond)
		c, b := start()
		if err := c.Wait(); err != nil {
			t.Fatalf("last worker: %v\n%s", err, b)
		}
		all += b.String()
	}
	consistent(t, db, 12)
	for id, step := range killed {
		var attempts int
		db.QueryRow(`SELECT attempts FROM trials WHERE id = $1`, id).Scan(&attempts)
		if attempts != 2 {
			t.Errorf("killed trial %d: %d attempts, want 2", id, attempts)
		}
		re := regexp.MustCompile(fmt.Sprintf(`trial %d [^\n]*resuming from its checkpoint at step (\d+)/%d`, id, steps))
		m := re.FindStringSubmatch(all)
		if m == nil {
			t.Errorf("killed trial %d (at step %d) was not resumed from a checkpoint:\n%s", id, step, all)
			continue
		}
		// (the step the database had when the worker was killed lags its progress by up to a heartbeat)
		if from, _ := strconv.Atoi(m[1]); from <= 0 || from >= steps || from%5 != 0 {
			t.Errorf("killed trial %d (at step %d or a little later) resumed from step %d (checkpoint_every = 5)", id, step, from)
		}
		stepsOnce(t, db, id, steps)
	}
	// Each trial's folder on the shared runs folder says which host and process held it last.
	owners, _ := filepath.Glob(filepath.Join(dir, "runs", "*", "owner.json"))
	if len(owners) != 12 {
		t.Errorf("%d trial folders record their owner, want 12", len(owners))
	}
	for _, o := range owners {
		b, _ := os.ReadFile(o)
		if !regexp.MustCompile(`"pid": [1-9]`).Match(b) || !strings.Contains(string(b), `"host": "`) {
			t.Errorf("%s: %s", o, b)
		}
	}
}

// `sweep submit --slurm --array-parallel 2` of a 6-trial sweep: sbatch accepts the array job, squeue shows
// its tasks, every trial ends done once.
func TestSlurmSubmit(t *testing.T) {
	if _, err := exec.LookPath("sbatch"); err != nil || exec.Command("sinfo", "-h").Run() != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("Slurm is required under CI=true (.ci/run starts a single-node cluster): sbatch %v", err)
		}
		t.Skip("no Slurm cluster here (.ci/slurm start makes one)")
	}
	url := pgtest.Require(t).NewDB(t)
	dir := t.TempDir()
	p := writeSpec(t, dir, "tiny.toml", fmt.Sprintf(tiny, 20, "[1, 2, 3, 4, 5, 6]"))
	out, err := sweepCmd(context.Background(), dir, "submit", "--slurm", "--array-parallel", "2", "--cpus-per-task", "1", "--backend", "go",
		"--db", url, "--runs", filepath.Join(dir, "runs"), p).Output()
	if err != nil {
		stderr := ""
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("submit: %v\n%s%s", err, out, stderr)
	}
	id := strings.TrimSpace(string(out))
	if _, err := strconv.Atoi(id); err != nil {
		t.Fatalf("submit printed %q, not a job id", out)
	}
	t.Cleanup(func() { exec.Command("scancel", id).Run() })
	q, err := exec.Command("squeue", "-h", "-r", "-j", id, "-o", "%i %T").CombinedOutput()
	if err != nil || !strings.Contains(string(q), id+"_") {
		t.Errorf("squeue does not show the array's tasks: %v\n%s", err, q)
	}
	db := pgDB(t, url)
	for deadline := time.Now().Add(4 * time.Minute); ; {
		var done int
		db.QueryRow(`SELECT COUNT(*) FROM trials WHERE state = 'done'`).Scan(&done)
		if done == 6 {
			break
		}
		if time.Now().After(deadline) {
			logs, _ := filepath.Glob(filepath.Join(dir, "runs", "slurm", "*.out"))
			var b strings.Builder
			for _, l := range logs {
				x, _ := os.ReadFile(l)
				fmt.Fprintf(&b, "== %s\n%s\n", l, x)
			}
			q, _ := exec.Command("squeue", "-h", "-r", "-j", id).CombinedOutput()
			t.Fatalf("%d of 6 trials done after 4 minutes; squeue:\n%s\n%s", done, q, b.String())
		}
		time.Sleep(time.Second)
	}
	consistent(t, db, 6)
	var once int
	db.QueryRow(`SELECT COUNT(*) FROM trials WHERE attempts = 1`).Scan(&once)
	if once != 6 {
		t.Errorf("%d of 6 trials ran in one attempt", once)
	}
	scripts, _ := filepath.Glob(filepath.Join(dir, "runs", "slurm", "*.sbatch"))
	if len(scripts) != 1 {
		t.Fatalf("%d sbatch scripts kept, want 1", len(scripts))
	}
	text, _ := os.ReadFile(scripts[0])
	if strings.Contains(string(text), url) || !strings.Contains(string(text), "#SBATCH --array=0-5%2") {
		t.Errorf("the script holds the database URL or the wrong array:\n%s", text)
	}
}

// submit's failures are its own messages: no launcher, sbatch missing, sbatch refusing.
func TestSubmitErrors(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "results.db")
	p := writeSpec(t, dir, "tiny.toml", fmt.Sprintf(tiny, 4, "[1]"))
	refuse := writeSpec(t, dir, "sbatch-refuses", "#!/bin/sh\necho 'sbatch: error: Batch job submission failed: Invalid partition name specified' >&2\nexit 1\n")
	os.Chmod(refuse, 0o755)
	cases := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no launcher", []string{"submit", "--db", db, p}, 2, "--slurm"},
		{"bad time", []string{"submit", "--slurm", "--time", "soon", "--db", db, p}, 2, `--time "soon"`},
		{"sbatch missing", []string{"submit", "--slurm", "--sbatch", "no-such-sbatch", "--db", db, p}, 1, "no-such-sbatch not found on PATH"},
		// A newline in any value would add an #SBATCH line: refused before anything is registered.
		{"partition newline", []string{"submit", "--slurm", "--partition", "ci\n#SBATCH --hold", "--db", db, p}, 2, `--partition "ci\n#SBATCH --hold"`},
		{"partition words", []string{"submit", "--slurm", "--partition", "ci --hold", "--db", db, p}, 2, "--partition"},
		{"account newline", []string{"submit", "--slurm", "--account", "lab\n#SBATCH --hold", "--db", db, p}, 2, `--account "lab\n#SBATCH --hold"`},
		{"runs newline", []string{"submit", "--slurm", "--runs", "r\n#SBATCH --hold", "--db", db, p}, 2, "--runs"},
		{"sbatch-option newline", []string{"submit", "--slurm", "--sbatch-option=--qos=a\n#SBATCH --hold", "--db", db, p}, 2, "--sbatch-option"},
		{"sbatch-option array", []string{"submit", "--slurm", "--sbatch-option=--array=0-99", "--db", db, p}, 2, "--array-size"},
		{"sbatch refuses", []string{"submit", "--slurm", "--sbatch", refuse, "--db", db, p}, 1, "sbatch refused the job (exit 1): sbatch: error: Batch job submission failed: Invalid partition name"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out, err := sweepCmd(context.Background(), dir, c.args...).CombinedOutput()
			ee, ok := err.(*exec.ExitError)
			if !ok || ee.ExitCode() != c.code || !strings.Contains(string(out), c.want) {
				t.Fatalf("exit %v, want %d and a message with %q:\n%s", err, c.code, c.want, out)
			}
			if _, err := os.Stat(db); err == nil && c.name != "sbatch refuses" {
				t.Error("the failed submit created the database")
			}
		})
	}
	fresh := filepath.Join(dir, "dry.db")
	out, err := sweepCmd(context.Background(), dir, "submit", "--slurm", "--dry-run", "--array-parallel", "3", "--partition", "gpu", "--gpus-per-task", "1",
		"--account", "lab", "--time", "1:00:00", "--db", fresh, p).Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{"#SBATCH --array=0-0%1", "#SBATCH --partition=gpu", "#SBATCH --gpus-per-task=1", "#SBATCH --account=lab", "#SBATCH --time=1:00:00", "--device cuda"} {
		if !strings.Contains(string(out), w) {
			t.Errorf("dry-run script lacks %q:\n%s", w, out)
		}
	}
	if _, err := os.Stat(fresh); err == nil {
		t.Error("--dry-run created the database")
	}
}

// PostgreSQL restarted while two workers run a sweep: they retry with backoff and finish it; nothing is
// lost or logged twice.
func TestPostgresRestartDuringSweep(t *testing.T) {
	srv := pgtest.Private(t)
	url := srv.NewDB(t)
	dir := t.TempDir()
	const steps = 60
	p := writeSpec(t, dir, "tiny.toml", fmt.Sprintf(tiny, steps, "[1, 2, 3, 4]"))
	if out, err := sweepCmd(context.Background(), dir, "run", "--register-only", "--db", url, p).CombinedOutput(); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	var cmds []*exec.Cmd
	var outs []*bytes.Buffer
	for i := 0; i < 2; i++ {
		c := sweepCmd(context.Background(), dir, "worker", "--db", url, "--runs", filepath.Join(dir, "runs"), "--backend", "go", "--heartbeat", "1s")
		var b bytes.Buffer
		c.Stdout, c.Stderr = &b, &b
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		cmds, outs = append(cmds, c), append(outs, &b)
	}
	db := pgDB(t, url)
	for deadline := time.Now().Add(2 * time.Minute); ; {
		var step int
		db.QueryRow(`SELECT COALESCE(MAX(step), 0) FROM metrics`).Scan(&step)
		if step >= 10 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the workers never reached step 10:\n%s\n%s", outs[0], outs[1])
		}
		time.Sleep(100 * time.Millisecond)
	}
	srv.StopFor(t, 3*time.Second)
	for i, c := range cmds {
		if err := c.Wait(); err != nil {
			t.Fatalf("worker %d did not survive the restart: %v\n%s", i, err, outs[i])
		}
	}
	if !strings.Contains(outs[0].String()+outs[1].String(), "database unavailable") {
		t.Errorf("no worker reported retrying while the database was away:\n%s\n%s", outs[0], outs[1])
	}
	db = pgDB(t, url) // the old pool's connections died with the server
	consistent(t, db, 4)
	for id := 1; id <= 4; id++ {
		stepsOnce(t, db, id, steps)
	}
}

// requireSlurm skips without a Slurm cluster, except under CI=true, where it fails.
func requireSlurm(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("sbatch"); err != nil || exec.Command("sinfo", "-h").Run() != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("Slurm is required under CI=true (.ci/run starts a single-node cluster): sbatch %v", err)
		}
		t.Skip("no Slurm cluster here (.ci/slurm start makes one)")
	}
}

// Hostile names and flags on the real sbatch: a spec named like sbatch options, one with a '/', a runs folder
// with a space, '#' and '%', an account and an extra option with spaces. sbatch gets each value as given (the
// job is not held, its name has no option in it, its log lands in RUNS/slurm), and the trials run.
func TestSlurmSubmitHostileValues(t *testing.T) {
	requireSlurm(t)
	dir := t.TempDir()
	runs := filepath.Join(dir, "my runs #1 %x")
	db := filepath.Join(dir, "results.db")
	hostile := strings.Replace(fmt.Sprintf(tiny, 4, "[1]"), `name = "tiny"`, `name = "x --comment=pwned --hold"`, 1)
	slash := strings.Replace(fmt.Sprintf(tiny, 4, "[1]"), `name = "tiny"`, `name = "cae/pixel"`, 1)
	p1, p2 := writeSpec(t, dir, "hostile.toml", hostile), writeSpec(t, dir, "slash.toml", slash)
	out, err := sweepCmd(context.Background(), dir, "submit", "--slurm", "--cpus-per-task", "1", "--backend", "go",
		"--partition", "ci", "--account", "lab.1", "--time", "10", "--sbatch-option=--comment=a b #c --hold",
		"--db", db, "--runs", runs, p1, p2).Output()
	if err != nil {
		stderr := ""
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("submit: %v\n%s%s", err, out, stderr)
	}
	id := strings.TrimSpace(string(out))
	if _, err := strconv.Atoi(id); err != nil {
		t.Fatalf("submit printed %q, not a job id", out)
	}
	t.Cleanup(func() { exec.Command("scancel", id).Run() })
	show, err := exec.Command("scontrol", "show", "job", id).CombinedOutput()
	if err != nil {
		t.Fatalf("scontrol show job %s: %v\n%s", id, err, show)
	}
	for _, want := range []string{"JobName=mimlab-x_--comment_pwned_--hold+cae_pixel", "Partition=ci", "Account=lab.1",
		"Comment=a b #c --hold", "TimeLimit=00:10:00"} {
		if !regexp.MustCompile(`(^|\s)` + regexp.QuoteMeta(want) + `\s`).Match(show) {
			t.Errorf("sbatch did not get %q:\n%s", want, show)
		}
	}
	if strings.Contains(string(show), "JobHeldUser") || strings.Contains(string(show), "Comment=pwned") {
		t.Errorf("an option in a name reached sbatch:\n%s", show)
	}
	// The tasks run and log into RUNS/slurm (the folder's '%' is not a Slurm file-name pattern).
	st, err := sql.Open("sqlite3", "file:"+db+"?mode=ro&_busy_timeout=5000")
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for deadline := time.Now().Add(3 * time.Minute); ; {
		var done int
		st.QueryRow(`SELECT COUNT(*) FROM trials WHERE state = 'done'`).Scan(&done)
		if done == 2 {
			break
		}
		if time.Now().After(deadline) {
			q, _ := exec.Command("squeue", "-h", "-r", "-j", id).CombinedOutput()
			logs, _ := filepath.Glob(filepath.Join(runs, "slurm", "*"))
			t.Fatalf("%d of 2 trials done after 3 minutes; squeue: %s; logs: %v", done, q, logs)
		}
		time.Sleep(time.Second)
	}
	logs, _ := filepath.Glob(filepath.Join(runs, "slurm", id+"_*.out"))
	scripts, _ := filepath.Glob(filepath.Join(runs, "slurm", "mimlab-x_--comment_pwned_--hold+cae_pixel-*.sbatch"))
	if len(logs) == 0 || len(scripts) != 1 {
		all, _ := filepath.Glob(filepath.Join(runs, "slurm", "*"))
		t.Errorf("task logs %v and script %v in RUNS/slurm, want one of each; the folder holds %v", logs, scripts, all)
	}
}
