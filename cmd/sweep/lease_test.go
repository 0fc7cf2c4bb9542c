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
	"strings"
	"syscall"
	"testing"
	"time"

	"mimlab/framework/runner"
	"mimlab/framework/store/pgtest"
)

// The lease fence with a real stale worker: worker A is stopped (SIGSTOP) in the middle of a trial that
// checkpoints every step; worker B reclaims the trial once A's lease expired, resumes it from A's last
// checkpoint and finishes it; then A is continued (SIGCONT). A writes nothing more: the checkpoint in place
// is B's final one (its sha256 the recorded one, its step the last), every step is logged once, and
// `sweep export` exports the last step. Before the fence, A wrote its next checkpoint over B's and updated
// the artifacts row before it noticed.
func TestStaleWorkerWritesNothing(t *testing.T) {
	for _, backend := range []string{"sqlite", "postgres"} {
		t.Run(backend, func(t *testing.T) {
			dir := t.TempDir()
			db := filepath.Join(dir, "results.db")
			driver, dsn := "sqlite3", "file:"+db+"?_busy_timeout=200"
			if backend == "postgres" {
				db = pgtest.Require(t).NewDB(t)
				driver, dsn = "pgx", db
			}
			staleWorker(t, dir, db, driver, dsn)
		})
	}
}

func staleWorker(t *testing.T, dir, db, driver, dsn string) {
	const steps = 40
	spec := strings.Replace(fmt.Sprintf(tiny, steps, "[1]"), "checkpoint_every = 5", "checkpoint_every = 1", 1)
	p := writeSpec(t, dir, "tiny.toml", spec)
	if out, err := sweepCmd(context.Background(), dir, "run", "--register-only", "--db", db, p).CombinedOutput(); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	runs := filepath.Join(dir, "runs")
	start := func() (*exec.Cmd, *bytes.Buffer) {
		c := sweepCmd(context.Background(), dir, "worker", "--db", db, "--runs", runs, "--backend", "go", "--heartbeat", "200ms")
		var b bytes.Buffer
		c.Stdout, c.Stderr = &b, &b
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		return c, &b
	}
	d, err := sql.Open(driver, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	a, aOut := start()
	defer a.Process.Kill()
	var step int
	for deadline := time.Now().Add(2 * time.Minute); step < 8; time.Sleep(20 * time.Millisecond) {
		d.QueryRow(`SELECT step FROM trials WHERE state = 'running'`).Scan(&step)
		if time.Now().After(deadline) {
			t.Fatalf("worker A never reached step 8:\n%s", aOut)
		}
	}
	// Stop A in the race's window: just after it logged a step's metrics, while it builds and writes that
	// step's checkpoint; and outside a transaction (a stopped transaction would hold SQLite's write lock, or
	// the trial's row on PostgreSQL, and B could not claim the trial at all).
	for i := 0; ; i++ {
		last := -1
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
			var m int
			d.QueryRow(`SELECT COALESCE(MAX(step), 0) FROM metrics`).Scan(&m)
			if last >= 0 && m != last {
				break
			}
			last = m
		}
		a.Process.Signal(syscall.SIGSTOP)
		time.Sleep(50 * time.Millisecond)
		if idle(d, driver) {
			break
		}
		if i == 50 {
			t.Fatal("worker A was inside a transaction at each of 50 stops")
		}
		a.Process.Signal(syscall.SIGCONT)
	}
	d.QueryRow(`SELECT step FROM trials`).Scan(&step)
	time.Sleep(1500 * time.Millisecond) // 6 heartbeats of 200ms: A's lease expires
	b, bOut := start()
	if err := b.Wait(); err != nil {
		t.Fatalf("worker B: %v\n%s", err, bOut)
	}
	var state string
	var attempts int
	d.QueryRow(`SELECT state, attempts FROM trials`).Scan(&state, &attempts)
	if state != "done" || attempts != 2 {
		t.Fatalf("after B: trial %s after %d attempts, want done after 2 (A stopped at step %d)\nB:\n%s", state, attempts, step, bOut)
	}
	var hash, recorded string
	d.QueryRow(`SELECT hash FROM trials`).Scan(&hash)
	ck := filepath.Join(runs, hash, "checkpoint.safetensors")
	a.Process.Signal(syscall.SIGCONT)
	waited := make(chan error, 1)
	go func() { waited <- a.Wait() }()
	select {
	case <-waited:
	case <-time.After(2 * time.Minute):
		t.Fatalf("worker A did not end after SIGCONT:\n%s", aOut)
	}
	if !strings.Contains(aOut.String(), runner.ErrLostLease.Error()) {
		t.Errorf("worker A does not say it lost its lease:\n%s", aOut)
	}
	d.QueryRow(`SELECT sha256 FROM artifacts WHERE kind = 'checkpoint'`).Scan(&recorded)
	d.QueryRow(`SELECT state FROM trials`).Scan(&state)
	got, err := runner.FileSHA(ck)
	if err != nil || got != recorded || state != "done" {
		t.Errorf("after A continued: trial %s, checkpoint sha256 %s (%v), recorded %s", state, got, err, recorded)
	}
	stepsOnce(t, d, 1, steps)
	if left, _ := filepath.Glob(filepath.Join(runs, hash, ".*.tmp-a1-*")); len(left) > 0 {
		t.Errorf("A's refused temporary files are left: %v", left)
	}
	out, err := sweepCmd(context.Background(), dir, "export", "--db", db, "--trial", "1", "--weights", filepath.Join(dir, "enc.safetensors"), "--backend", "go").CombinedOutput()
	if err != nil || !regexp.MustCompile(fmt.Sprintf(`at step %d\b`, steps)).Match(out) {
		t.Errorf("export after the race: %v\n%s\nA:\n%s\nB:\n%s", err, out, aOut, bOut)
	}
	os.Remove(filepath.Join(dir, "enc.safetensors"))
}

// idle says whether no transaction is open on the database: SQLite's write lock can be taken at once, and
// PostgreSQL has no session idle inside a transaction.
func idle(d *sql.DB, driver string) bool {
	if driver == "pgx" {
		var n int
		return d.QueryRow(`SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() AND state LIKE 'idle in transaction%'`).Scan(&n) == nil && n == 0
	}
	c, err := d.Conn(context.Background())
	if err != nil {
		return false
	}
	defer c.Close()
	if _, err := c.ExecContext(context.Background(), `BEGIN IMMEDIATE`); err != nil {
		return false
	}
	c.ExecContext(context.Background(), `ROLLBACK`)
	return true
}
