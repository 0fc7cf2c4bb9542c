// Package runner runs a sweep's trials: a bounded pool of workers (sourcegraph/conc, -j N) that claim
// trials atomically from the store, write heartbeats, fail a trial that makes no progress for the watchdog
// time, mark a trial failed with its reason and go on with the others, and on cancellation (Ctrl-C) let the
// running trials checkpoint and put them back to pending so that the next run resumes them.
//
// The runner knows nothing of what a trial computes: it calls a Job.
package runner

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/sourcegraph/conc/pool"
	"mimlab/framework/store"
)

// Recorder is what a job reports through; every call is safe from the job's goroutine.
type Recorder interface {
	// Progress says the trial is alive and at step; it feeds the heartbeat and the watchdog.
	Progress(step int)
	// Metrics, Eval and Artifact write results.
	Metrics(ms []store.Metric) error
	Eval(protocol, metric string, value float64) error
	// EvalAt writes an evaluation read at a pretraining step (probes along training).
	EvalAt(step int, protocol, metric string, value float64) error
	Artifact(kind, path string) error
	// Lease is the trial as this attempt holds it: a write through it (and through Metrics, Eval, EvalAt
	// and Artifact, which use it) fails with store.ErrNotOwner once another worker has claimed the trial.
	Lease() *store.Owned
	Store() *store.Store
	Log() io.Writer
	// Owner is the worker holding the trial ("host:pid/wN").
	Owner() string
}

// Job runs one trial; it returns ctx.Err() (or an error wrapping it) when cancelled after checkpointing.
type Job func(ctx context.Context, t *store.Trial, rec Recorder) error

// Options configure a run.
type Options struct {
	Workers   int           // parallel trials (-j)
	Stale     time.Duration // a running trial whose heartbeat is older is claimed again
	Heartbeat time.Duration // how often the heartbeat is written
	Watchdog  time.Duration // fail a trial that reports no progress for this long (0 = off)
	Owner     string        // this process's name in the trials table
	Log       io.Writer
	// OnEnd, when set, is told each trial's outcome as it is recorded (done, failed, pending).
	OnEnd func(t *store.Trial, state string)
}

// Summary counts what a run did.
type Summary struct {
	Done, Failed, Interrupted int
	Errors                    []string
}

// Run claims and runs trials of the sweep until none is left or ctx is cancelled.
func Run(ctx context.Context, st *store.Store, sweepID int64, opt Options, job Job) Summary {
	if opt.Workers < 1 {
		opt.Workers = 1
	}
	if opt.Heartbeat <= 0 {
		opt.Heartbeat = 5 * time.Second
	}
	if opt.Stale <= 0 {
		opt.Stale = 6 * opt.Heartbeat
	}
	if opt.Owner == "" {
		h, _ := os.Hostname()
		opt.Owner = fmt.Sprintf("%s:%d", h, os.Getpid())
	}
	var mu sync.Mutex
	var sum Summary
	// wake is closed (and replaced) whenever a worker of this process ends a trial, so a worker waiting for
	// the trials still running wakes at once instead of a heartbeat later (the quickstart ended 5 s after its
	// last trial: its other worker was asleep).
	wake := make(chan struct{})
	woken := func() <-chan struct{} {
		mu.Lock()
		defer mu.Unlock()
		return wake
	}
	p := pool.New().WithMaxGoroutines(opt.Workers)
	for w := 0; w < opt.Workers; w++ {
		owner := fmt.Sprintf("%s/w%d", opt.Owner, w)
		p.Go(func() {
			for ctx.Err() == nil {
				t, err := st.Claim(ctx, sweepID, owner, opt.Stale)
				if err != nil {
					if ctx.Err() == nil {
						fmt.Fprintf(opt.Log, "runner: claiming a trial: %v\n", err)
					}
					return
				}
				if t == nil {
					// Nothing claimable. Trials still running elsewhere are either alive (wait for them to
					// finish) or dead (their heartbeat goes stale and they are claimed here): poll until none
					// is left, so one `sweep run` always finishes the sweep.
					w := woken()
					n, err := st.Unfinished(sweepID)
					if err != nil || n == 0 {
						return
					}
					select {
					case <-ctx.Done():
						return
					case <-w:
					case <-time.After(opt.Heartbeat):
					}
					continue
				}
				state, reason, recorded := runOne(ctx, st, t, owner, opt, job)
				if opt.OnEnd != nil {
					opt.OnEnd(t, state)
				}
				mu.Lock()
				close(wake)
				wake = make(chan struct{})
				switch state {
				case store.Done:
					sum.Done++
				case store.Failed:
					sum.Failed++
					sum.Errors = append(sum.Errors, fmt.Sprintf("trial %d (%s): %s", t.ID, t.Name, reason))
				default:
					sum.Interrupted++
				}
				mu.Unlock()
				if !recorded {
					// The database refuses writes: this worker stops rather than claim the same trial again.
					return
				}
			}
		})
	}
	p.Wait()
	return sum
}

type recorder struct {
	st    *store.Store
	own   *store.Owned
	trial int64
	owner string
	log   io.Writer
	mu    sync.Mutex
	step  int
	last  time.Time
	// progressed says this attempt reported a step (step was the previous attempt's heartbeat until then).
	progressed bool
}

func (r *recorder) Progress(step int) {
	r.mu.Lock()
	r.step, r.last, r.progressed = step, time.Now(), true
	r.mu.Unlock()
}
func (r *recorder) Metrics(ms []store.Metric) error {
	if err := r.own.AddMetrics(ms); err != nil {
		return fmt.Errorf("trial %d: writing %d metrics: %w", r.trial, len(ms), err)
	}
	return nil
}
func (r *recorder) Eval(p, m string, v float64) error {
	r.Progress(r.current())
	if err := r.own.SetEvalAt(store.Final, p, m, v); err != nil {
		return fmt.Errorf("trial %d: writing eval %s/%s: %w", r.trial, p, m, err)
	}
	return nil
}
func (r *recorder) EvalAt(step int, p, m string, v float64) error {
	r.Progress(r.current())
	if err := r.own.SetEvalAt(step, p, m, v); err != nil {
		return fmt.Errorf("trial %d: writing eval %s/%s at step %d: %w", r.trial, p, m, step, err)
	}
	return nil
}
func (r *recorder) Artifact(kind, path string) error {
	sha, n, err := fileSHA(path)
	if err != nil {
		return fmt.Errorf("trial %d: artifact %s: %w", r.trial, kind, err)
	}
	if err := r.own.AddArtifact(kind, path, sha, n); err != nil {
		return fmt.Errorf("trial %d: recording artifact %s: %w", r.trial, kind, err)
	}
	return nil
}
func (r *recorder) Lease() *store.Owned { return r.own }
func (r *recorder) Store() *store.Store { return r.st }
func (r *recorder) Owner() string       { return r.owner }
func (r *recorder) Log() io.Writer      { return r.log }
func (r *recorder) current() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.step
}

// reached is the last step this attempt reported, -1 if none.
func (r *recorder) reached() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.progressed {
		return -1
	}
	return r.step
}

var errWatchdog = errors.New("watchdog")

// discountPause moves the last sign of progress forward by the time the process itself did not run: a tick
// that comes more than two heartbeats after the previous one means the process was stopped (Ctrl-Z, SIGSTOP,
// a debugger) or starved, and the trial cannot have made progress then either. Without it a sweep resumed
// with fg after more than the watchdog's time failed its running trials at the next tick.
func discountPause(last, prevTick, now time.Time, heartbeat time.Duration) time.Time {
	if gap := now.Sub(prevTick); gap > 2*heartbeat && last.Before(prevTick.Add(heartbeat)) {
		// Progress recorded after this tick was due can only come from after the pause (nothing ran during
		// it) and needs no discount; the result never passes now.
		if moved := last.Add(gap - heartbeat); moved.Before(now) {
			return moved
		}
		return now
	}
	return last
}

// ErrLostLease is the cause of a job's cancellation when another worker has claimed its trial: the job must
// stop without writing a checkpoint (the new owner writes them now).
var ErrLostLease = errors.New("lost its lease")

func runOne(ctx context.Context, st *store.Store, t *store.Trial, owner string, opt Options, job Job) (state, reason string, recorded bool) {
	own := t.Lease // the claim's handle
	if own == nil {
		own = st.Own(t, owner)
	}
	rec := &recorder{st: st, own: own, trial: t.ID, owner: owner, log: opt.Log, step: t.Step, last: time.Now()}
	jctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	done := make(chan struct{})
	go func() { // heartbeat + watchdog
		tk := time.NewTicker(opt.Heartbeat)
		defer tk.Stop()
		prevTick := time.Now()
		for {
			select {
			case <-done:
				return
			case <-tk.C:
				// The wall time now, not the tick's value: a ticker sends the time the tick was due, so the
				// first tick after a pause carries a time from before it.
				now := time.Now()
				rec.mu.Lock()
				rec.last = discountPause(rec.last, prevTick, now, opt.Heartbeat)
				step, last := rec.step, rec.last
				rec.mu.Unlock()
				if err := st.Heartbeat(t.ID, owner, step); errors.Is(err, store.ErrNotOwner) {
					// Another worker claimed it (this one's lease expired: a stall longer than the lease, or
					// the database away that long): stop without writing anything more for it.
					cancel(fmt.Errorf("%w: %v", ErrLostLease, err))
				} else if err != nil {
					fmt.Fprintf(opt.Log, "trial %d %s: heartbeat: %v\n", t.ID, t.Name, err)
				}
				// After the heartbeat: one that waited on a busy database must not make the next tick look
				// like a pause of the process.
				prevTick = time.Now()
				if opt.Watchdog > 0 && now.Sub(last) > opt.Watchdog {
					cancel(fmt.Errorf("%w: no progress for %s (at step %d)", errWatchdog, opt.Watchdog, step))
				}
			}
		}
	}()
	err := safeJob(jctx, t, rec, job)
	close(done)
	switch {
	case err == nil:
		state = store.Done
	case errors.Is(context.Cause(jctx), ErrLostLease):
		fmt.Fprintf(opt.Log, "trial %d %s: stopped: %v\n", t.ID, t.Name, context.Cause(jctx))
		return store.Pending, context.Cause(jctx).Error(), true
	case errors.Is(err, store.ErrNotOwner):
		// A fenced write found the trial claimed by another worker before this one's heartbeat did (it was
		// stopped longer than its lease): it wrote nothing, and records nothing.
		fmt.Fprintf(opt.Log, "trial %d %s: stopped: %v: %v\n", t.ID, t.Name, ErrLostLease, err)
		return store.Pending, err.Error(), true
	case errors.Is(context.Cause(jctx), errWatchdog):
		state, reason = store.Failed, context.Cause(jctx).Error()
		fmt.Fprintf(opt.Log, "trial %d %s: failed: %s\n", t.ID, t.Name, reason)
	case ctx.Err() != nil:
		state, reason = store.Pending, "interrupted"
		fmt.Fprintf(opt.Log, "trial %d %s: interrupted at step %d; the next `sweep run` resumes it\n", t.ID, t.Name, rec.current())
	default:
		state, reason = store.Failed, err.Error()
		fmt.Fprintf(opt.Log, "trial %d %s: failed: %v\n", t.ID, t.Name, err)
	}
	if ferr := finish(rec.own, t, state, reason, rec.reached(), opt.Log); errors.Is(ferr, store.ErrNotOwner) {
		return store.Pending, ferr.Error(), true // another worker has it now; this one goes on
	} else if ferr != nil {
		// The outcome could not be written: the trial is not done as far as the database knows, so it is
		// not counted as done here either; finish left it pending if it could (the next run resumes it from
		// its last checkpoint), else its stale heartbeat lets the next run claim it.
		return store.Failed, fmt.Sprintf("recording %s failed: %v", state, ferr), false
	}
	return state, reason, true
}

// finish writes a trial's outcome, retrying a failed write (a full disk, a locked or restarting database) a
// few times; if it still fails it tries to put the trial back to pending with the reason.
func finish(own *store.Owned, t *store.Trial, state, reason string, endStep int, log io.Writer) error {
	var err error
	for i, wait := 0, 100*time.Millisecond; i < 4; i, wait = i+1, wait*3 {
		if err = own.Finish(state, reason, endStep); err == nil {
			return nil
		}
		if errors.Is(err, store.ErrNotOwner) {
			fmt.Fprintf(log, "trial %d %s: not recording %s: %v\n", t.ID, t.Name, state, err)
			return err
		}
		fmt.Fprintf(log, "trial %d %s: writing state %s: %v (retrying)\n", t.ID, t.Name, state, err)
		time.Sleep(wait)
	}
	if state != store.Pending {
		if perr := own.Finish(store.Pending, "could not record "+state+": "+err.Error(), endStep); perr == nil {
			fmt.Fprintf(log, "trial %d %s: could not record %s (%v); left pending for the next run\n", t.ID, t.Name, state, err)
			return err
		}
	}
	fmt.Fprintf(log, "trial %d %s: could not record %s: %v; the next run claims it once its heartbeat is stale\n", t.ID, t.Name, state, err)
	return err
}

// safeJob turns a panic inside a job into a failure of that trial only.
func safeJob(ctx context.Context, t *store.Trial, rec Recorder, job Job) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v", r)
		}
	}()
	return job(ctx, t, rec)
}
