package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"mimlab/framework/runner"
	"mimlab/framework/store"
	"mimlab/framework/store/pgtest"
)

// BenchmarkClaims: 16 concurrent workers, each with its own connection (as 16 processes would have), run
// 1,000 fake trials whose job sleeps 10 ms, through the runner (claim, heartbeat, finish) on SQLite and on
// PostgreSQL. Reports claims/s (trials finished per second of wall time) and duplicate claims (a trial's job
// run more than once). 16 x 10 ms jobs cap the rate at 1,600/s; below that the database is the limit.
func BenchmarkClaims(b *testing.B) {
	for _, backend := range []string{"sqlite", "postgres"} {
		b.Run(backend, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				db := freshDB(b, backend)
				rate, dups := claimRun(b, db, 16, 1000, 10*time.Millisecond)
				b.ReportMetric(rate, "claims/s")
				b.ReportMetric(float64(dups), "duplicates")
			}
		})
	}
}

func claimRun(b *testing.B, db string, workers, trials int, job time.Duration) (float64, int) {
	st, err := store.Open(db)
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	var ts []store.NewTrial
	for i := 0; i < trials; i++ {
		ts = append(ts, store.NewTrial{Hash: fmt.Sprintf("%016x", i+1), Name: fmt.Sprintf("fake[i=%d]", i), Spec: "{}"})
	}
	sw, err := st.AddSweep("fake", "fake.toml", ts)
	if err != nil {
		b.Fatal(err)
	}
	runs := make([]atomic.Int32, trials+1)
	fake := func(ctx context.Context, t *store.Trial, rec runner.Recorder) error {
		runs[t.ID].Add(1)
		time.Sleep(job)
		return nil
	}
	start := time.Now()
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			ws, err := store.Open(db)
			if err != nil {
				b.Error(err)
				return
			}
			defer ws.Close()
			runner.Run(context.Background(), ws, sw, runner.Options{Workers: 1, Owner: fmt.Sprintf("bench:%d", w), Heartbeat: time.Second, Log: io.Discard}, fake)
		}(w)
	}
	wg.Wait()
	el := time.Since(start)
	dups := 0
	for i := 1; i <= trials; i++ {
		if n := runs[i].Load(); n != 1 {
			dups += int(n) - 1
			if n == 0 {
				b.Errorf("trial %d never ran", i)
			}
		}
	}
	var done int
	st.Scan(`SELECT COUNT(*) FROM trials WHERE state = 'done'`, nil, &done)
	if done != trials {
		b.Errorf("%d of %d trials done", done, trials)
	}
	return float64(trials) / el.Seconds(), dups
}

// BenchmarkWorkerStart: the overhead of a worker per trial, from starting a `sweep worker` process to the
// trial's first logged training step (process start, opening the database, claiming, reading the stored
// spec, loading the data, building and compiling the model), on SQLite and PostgreSQL, for a tiny synthetic
// spec on the Go backend (so the engine's compile time is small and the rest shows).
func BenchmarkWorkerStart(b *testing.B) {
	dir := b.TempDir()
	bin := filepath.Join(dir, "sweep")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/sweep").CombinedOutput(); err != nil {
		b.Fatalf("%v\n%s", err, out)
	}
	spec := filepath.Join(dir, "tiny.toml")
	os.WriteFile(spec, []byte(`name = "tiny"
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
steps = 3
log_every = 1
backend = "go"
[eval]
protocols = ["linear"]
baselines = false
`), 0o644)
	for _, backend := range []string{"sqlite", "postgres"} {
		b.Run(backend, func(b *testing.B) {
			var total time.Duration
			for i := 0; i < b.N; i++ {
				db := freshDB(b, backend)
				if out, err := exec.Command(bin, "run", "--register-only", "--db", db, spec).CombinedOutput(); err != nil {
					b.Fatalf("%v\n%s", err, out)
				}
				st, err := store.Open(db)
				if err != nil {
					b.Fatal(err)
				}
				c := exec.Command(bin, "worker", "--db", db, "--runs", filepath.Join(b.TempDir(), "runs"), "--backend", "go")
				var out bytes.Buffer
				c.Stdout, c.Stderr = &out, &out
				start := time.Now()
				if err := c.Start(); err != nil {
					b.Fatal(err)
				}
				for deadline := time.Now().Add(time.Minute); ; {
					if step, _, _ := st.LastMetrics(1); step >= 1 {
						break
					}
					if time.Now().After(deadline) {
						b.Fatalf("no step logged after a minute:\n%s", out.String())
					}
					time.Sleep(5 * time.Millisecond)
				}
				total += time.Since(start)
				c.Wait()
				st.Close()
			}
			b.ReportMetric(total.Seconds()/float64(b.N), "s-to-first-step")
		})
	}
}

// freshDB is a new empty database of the back end ("sqlite" or "postgres").
func freshDB(b *testing.B, backend string) string {
	if backend == "sqlite" {
		return filepath.Join(b.TempDir(), "r.db")
	}
	return pgtest.Require(b).NewDB(b)
}
