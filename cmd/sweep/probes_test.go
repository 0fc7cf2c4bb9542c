package main

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Probes along training (eval.at_steps) and fine-tuning, through a kill: the evaluations stored before the
// kill are kept, not rerun; every reading ends up once at every step and once at the end; the reference rows
// include fine-tuning from scratch; and fine-tuning with all labels learns (above chance).
func TestProbesAlongTrainingSurviveAKill(t *testing.T) {
	dir := t.TempDir()
	text := strings.Replace(fmt.Sprintf(tiny, 40, "[1]"), `[eval]
protocols = ["linear", "knn"]
baselines = false`, `[eval]
protocols = ["linear", "finetune"]
feature = "both"
at_steps = [10, 20, 30]
finetune_labels = [8, 0]
finetune_epochs = 15
finetune_min_steps = 20
finetune_lr = 3e-3
baselines = true`, 1)
	spec := writeSpec(t, dir, "probes.toml", text)
	db := dir + "/results.db"
	readings := []string{"linear", "linear_mean", "finetune_8", "finetune_8_mean", "finetune", "finetune_mean"}
	var out1 bytes.Buffer
	c := sweepCmd(context.Background(), dir, "run", "--db", db, "--heartbeat", "200ms", "--plain", spec)
	c.Stdout, c.Stderr = &out1, &out1
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	killed := false
	for deadline := time.Now().Add(3 * time.Minute); time.Now().Before(deadline) && !killed; {
		time.Sleep(100 * time.Millisecond)
		d, err := sql.Open("sqlite3", "file:"+db+"?mode=ro&_busy_timeout=5000")
		if err != nil {
			continue
		}
		var n int
		err = d.QueryRow(`SELECT COUNT(*) FROM evals WHERE step = 20 AND metric = 'top1'`).Scan(&n)
		d.Close()
		if err == nil && n == len(readings) {
			c.Process.Signal(syscall.SIGKILL)
			killed = true
		}
	}
	c.Wait()
	if !killed {
		t.Fatalf("the first run never stored the step-20 evaluations:\n%s", out1.String())
	}
	time.Sleep(1500 * time.Millisecond) // the killed run's heartbeat goes stale
	out2, err := sweepCmd(context.Background(), dir, "run", "--db", db, "--heartbeat", "200ms", "--plain", spec).CombinedOutput()
	if err != nil {
		t.Fatalf("second run: %v\n%s", err, out2)
	}
	for _, s := range []string{"at step 10", "at step 20"} {
		if strings.Contains(string(out2), "evaluating the encoder "+s) {
			t.Errorf("the resumed run evaluated %s again:\n%s", s, out2)
		}
	}
	if !strings.Contains(string(out2), "evaluating the encoder at step 30") {
		t.Errorf("the resumed run did not evaluate step 30:\n%s", out2)
	}
	d := openDB(t, db)
	for _, step := range []int{10, 20, 30, -1} {
		for _, r := range readings {
			var n int
			var v float64
			d.QueryRow(`SELECT COUNT(*), COALESCE(MAX(value), -1) FROM evals WHERE trial_id = 1 AND protocol = ? AND metric = 'top1' AND step = ?`, r, step).Scan(&n, &v)
			if n != 1 || v < 0 || v > 1 {
				t.Errorf("step %d %s: %d rows, value %v", step, r, n, v)
			}
		}
	}
	// Each linear reading says how its L-BFGS ended, at every step and for the random-init reference.
	for _, step := range []int{10, 20, 30, -1} {
		var iters, conv float64
		var n int
		d.QueryRow(`SELECT COUNT(*), COALESCE(SUM(CASE WHEN metric = 'lbfgs_iterations' THEN value END), -1), COALESCE(SUM(CASE WHEN metric = 'lbfgs_converged' THEN value END), -1)
			FROM evals WHERE trial_id = 1 AND protocol = 'linear' AND step = ? AND metric LIKE 'lbfgs_%'`, step).Scan(&n, &iters, &conv)
		if n != 3 || iters < 1 || (conv != 0 && conv != 1 && conv != -1) {
			t.Errorf("step %d linear: %d lbfgs rows, iterations %v, converged %v", step, n, iters, conv)
		}
	}
	var refRows int
	d.QueryRow(`SELECT COUNT(*) FROM baselines WHERE key LIKE 'random_init|%' AND protocol = 'linear' AND metric LIKE 'lbfgs_%'`).Scan(&refRows)
	if refRows != 3 {
		t.Errorf("the random-init linear reference has %d lbfgs rows, want 3", refRows)
	}
	// The resumed attempt ends at the last training step: the final evaluation (fine-tuning reports it is
	// alive) reads the trained encoder, at step 40, and used to report step 0.
	var endStep, fromStep int
	var outcome string
	d.QueryRow(`SELECT COALESCE(from_step, -1), COALESCE(end_step, -1), COALESCE(outcome, '') FROM attempts WHERE trial_id = 1 ORDER BY attempt DESC LIMIT 1`).Scan(&fromStep, &endStep, &outcome)
	if endStep != 40 || outcome != "done" || fromStep < 20 || fromStep > 30 {
		t.Errorf("trial 1's last attempt: from step %d to %d, %q; want from its checkpoint (20-30) to 40, done", fromStep, endStep, outcome)
	}
	var other int
	d.QueryRow(`SELECT COUNT(*) FROM evals WHERE step NOT IN (10, 20, 30, -1)`).Scan(&other)
	if other != 0 {
		t.Errorf("%d evals at steps nobody asked for", other)
	}
	// The reference rows: raw pixels for linear, and every reading from the random-init ViT.
	for _, r := range readings {
		var n int
		d.QueryRow(`SELECT COUNT(*) FROM baselines WHERE key LIKE 'random_init|%' AND protocol = ? AND metric = 'top1'`, r).Scan(&n)
		if n != 1 {
			t.Errorf("random-init reference %s: %d rows", r, n)
		}
	}
	var ft float64
	d.QueryRow(`SELECT value FROM evals WHERE trial_id = 1 AND protocol = 'finetune' AND step = -1`).Scan(&ft)
	if ft <= 0.25+0.1 { // 4 classes
		t.Errorf("fine-tuning with every label reached top-1 %.3f: not above chance (0.25)", ft)
	}
}
