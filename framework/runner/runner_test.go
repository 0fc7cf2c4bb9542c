package runner

import (
	"context"
	"errors"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"mimlab/framework/store"
)

func setup(t *testing.T, n int) (*store.Store, int64) {
	t.Helper()
	st, err := store.Open(filepath.Join(t.TempDir(), "r.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	var ts []store.NewTrial
	for i := 0; i < n; i++ {
		ts = append(ts, store.NewTrial{Hash: string(rune('a' + i)), Name: "t" + string(rune('a'+i)), Spec: "{}"})
	}
	id, err := st.AddSweep("s", "s.toml", ts)
	if err != nil {
		t.Fatal(err)
	}
	return st, id
}

func states(t *testing.T, st *store.Store) map[string]store.Trial {
	t.Helper()
	ts, err := st.Trials("")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]store.Trial{}
	for _, tr := range ts {
		out[tr.Hash] = tr
	}
	return out
}

// A failing trial (an error, such as a NaN loss) is marked failed with its reason and the others still run.
func TestFailureIsRecordedAndOthersRun(t *testing.T) {
	st, id := setup(t, 3)
	job := func(ctx context.Context, tr *store.Trial, rec Recorder) error {
		rec.Progress(1)
		if tr.Hash == "b" {
			return errors.New("step 7: loss is NaN")
		}
		return nil
	}
	sum := Run(context.Background(), st, id, Options{Workers: 2, Heartbeat: 20 * time.Millisecond, Log: io.Discard}, job)
	if sum.Done != 2 || sum.Failed != 1 {
		t.Fatalf("%+v", sum)
	}
	s := states(t, st)
	if s["b"].State != store.Failed || !strings.Contains(s["b"].Error, "loss is NaN") {
		t.Fatalf("trial b: %+v", s["b"])
	}
	if s["a"].State != store.Done || s["c"].State != store.Done {
		t.Fatalf("others: %+v %+v", s["a"], s["c"])
	}
}

// A panic inside a job fails that trial only.
func TestPanicFailsOneTrial(t *testing.T) {
	st, id := setup(t, 2)
	job := func(ctx context.Context, tr *store.Trial, rec Recorder) error {
		if tr.Hash == "a" {
			panic("boom")
		}
		return nil
	}
	sum := Run(context.Background(), st, id, Options{Workers: 1, Heartbeat: 20 * time.Millisecond, Log: io.Discard}, job)
	if sum.Done != 1 || sum.Failed != 1 || !strings.Contains(states(t, st)["a"].Error, "panic: boom") {
		t.Fatalf("%+v %+v", sum, states(t, st)["a"])
	}
}

// The watchdog fails a trial that reports no progress.
func TestWatchdogFailsAStuckTrial(t *testing.T) {
	st, id := setup(t, 1)
	job := func(ctx context.Context, tr *store.Trial, rec Recorder) error {
		<-ctx.Done() // stuck until cancelled
		return ctx.Err()
	}
	sum := Run(context.Background(), st, id, Options{Workers: 1, Heartbeat: 20 * time.Millisecond, Watchdog: 100 * time.Millisecond, Log: io.Discard}, job)
	if sum.Failed != 1 || !strings.Contains(states(t, st)["a"].Error, "no progress") {
		t.Fatalf("%+v %+v", sum, states(t, st)["a"])
	}
}

// Cancellation (Ctrl-C) lets the job return and puts its trial back to pending for the next run.
func TestCancelPutsTrialBackToPending(t *testing.T) {
	st, id := setup(t, 1)
	ctx, cancel := context.WithCancel(context.Background())
	job := func(jctx context.Context, tr *store.Trial, rec Recorder) error {
		rec.Progress(3)
		cancel()
		<-jctx.Done()
		return jctx.Err() // a real job checkpoints first
	}
	sum := Run(ctx, st, id, Options{Workers: 1, Heartbeat: 20 * time.Millisecond, Log: io.Discard}, job)
	if sum.Interrupted != 1 || states(t, st)["a"].State != store.Pending {
		t.Fatalf("%+v %+v", sum, states(t, st)["a"])
	}
	sum = Run(context.Background(), st, id, Options{Workers: 1, Heartbeat: 20 * time.Millisecond, Log: io.Discard},
		func(context.Context, *store.Trial, Recorder) error { return nil })
	if sum.Done != 1 || states(t, st)["a"].Attempts != 2 {
		t.Fatalf("rerun: %+v %+v", sum, states(t, st)["a"])
	}
}

// When the final write of a trial fails (here a trigger refuses state 'done', as a full disk refuses every
// write), the trial is not counted done, is not left running, and the next run finishes it.
func TestFailedFinalWriteIsRepairedByTheNextRun(t *testing.T) {
	st, id := setup(t, 2)
	if _, err := st.Raw().Exec(`CREATE TRIGGER refuse_done BEFORE UPDATE OF state ON trials WHEN NEW.state = 'done' AND NEW.hash = 'a'
		BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END`); err != nil {
		t.Fatal(err)
	}
	runs := 0
	job := func(ctx context.Context, tr *store.Trial, rec Recorder) error {
		runs++
		rec.Progress(1)
		return nil
	}
	var log strings.Builder
	sum := Run(context.Background(), st, id, Options{Workers: 1, Heartbeat: 20 * time.Millisecond, Log: &log}, job)
	if sum.Done != 0 || sum.Failed != 1 {
		t.Fatalf("summary %+v, want the unrecorded trial failed and the worker stopped\n%s", sum, log.String())
	}
	a := states(t, st)["a"]
	if a.State != store.Pending || !strings.Contains(a.Error, "database or disk is full") {
		t.Fatalf("trial a is %s (%q), want pending with the reason\n%s", a.State, a.Error, log.String())
	}
	if _, err := st.Raw().Exec(`DROP TRIGGER refuse_done`); err != nil {
		t.Fatal(err)
	}
	sum = Run(context.Background(), st, id, Options{Workers: 1, Heartbeat: 20 * time.Millisecond, Log: io.Discard}, job)
	if sum.Done != 2 || states(t, st)["a"].State != store.Done {
		t.Fatalf("next run: %+v, trial a %s", sum, states(t, st)["a"].State)
	}
}

// A worker with nothing left to claim waits for the trials still running; when they end in this process it
// stops at once, not a heartbeat later (the run used to end up to one heartbeat after its last trial).
func TestIdleWorkerWakesWhenTheLastTrialEnds(t *testing.T) {
	st, id := setup(t, 2)
	release := make(chan struct{})
	job := func(ctx context.Context, tr *store.Trial, rec Recorder) error {
		rec.Progress(1)
		if tr.Hash == "b" {
			<-release
		}
		return nil
	}
	go func() { time.Sleep(300 * time.Millisecond); close(release) }()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	start := time.Now()
	sum := Run(ctx, st, id, Options{Workers: 2, Heartbeat: time.Hour, Stale: 2 * time.Hour, Log: io.Discard}, job)
	if sum.Done != 2 || ctx.Err() != nil {
		t.Fatalf("%+v after %s (context: %v): the idle worker slept until the context ended", sum, time.Since(start), ctx.Err())
	}
}

// The watchdog does not count time the process was stopped (Ctrl-Z then fg): a late tick moves the last
// sign of progress forward by the pause; on-time ticks leave it alone, so a stuck trial still fails.
func TestWatchdogDiscountsAPause(t *testing.T) {
	t0 := time.Date(2026, 12, 3, 8, 0, 0, 0, time.UTC)
	hb := 5 * time.Second
	for _, c := range []struct {
		name           string
		last, prevTick time.Time
		now            time.Time
		want           time.Time
	}{
		{"on time", t0, t0.Add(10 * time.Second), t0.Add(15 * time.Second), t0},
		{"a little late", t0, t0.Add(10 * time.Second), t0.Add(19 * time.Second), t0},
		{"stopped 20 minutes", t0, t0.Add(10 * time.Second), t0.Add(10*time.Second + 20*time.Minute), t0.Add(20*time.Minute - hb)},
		{"progress just before the stop", t0.Add(12 * time.Second), t0.Add(10 * time.Second), t0.Add(10*time.Second + 20*time.Minute),
			t0.Add(12*time.Second + 20*time.Minute - hb)},
		{"progress after the resume, before the late tick", t0.Add(20*time.Minute + 5*time.Second), t0.Add(10 * time.Second),
			t0.Add(10*time.Second + 20*time.Minute), t0.Add(20*time.Minute + 5*time.Second)},
		{"progress just before a short pause", t0.Add(14 * time.Second), t0.Add(10 * time.Second), t0.Add(22 * time.Second), t0.Add(21 * time.Second)},
	} {
		if got := discountPause(c.last, c.prevTick, c.now, hb); !got.Equal(c.want) {
			t.Errorf("%s: last progress %s, want %s", c.name, got.Sub(t0), c.want.Sub(t0))
		}
	}
	// A stuck trial with on-time ticks still reaches the watchdog.
	last, prev := t0, t0
	for now := t0.Add(hb); now.Before(t0.Add(time.Minute)); now = now.Add(hb) {
		last = discountPause(last, prev, now, hb)
		prev = now
	}
	if !last.Equal(t0) {
		t.Errorf("on-time ticks moved the last progress to %s", last.Sub(t0))
	}
}
