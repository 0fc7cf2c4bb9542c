package experiment

import (
	"context"
	"fmt"
	"io"
	"strings"

	"mimlab/framework/progress"
	"mimlab/framework/runner"
	"mimlab/framework/spec"
	"mimlab/framework/store"
	"mimlab/nn"
)

// ExecOptions pick where a spec's trials run: the flags win over each spec's [train] backend and device.
type ExecOptions struct {
	Backend, Device string
}

// BackendFor is the backend name a planned spec runs on.
func (o ExecOptions) BackendFor(p Planned) string {
	tc := Typed(p.Trials[0].Resolved).Train
	be, dev := tc.Backend, tc.Device
	if o.Backend != "" {
		be = o.Backend
	}
	if o.Device != "" {
		dev = o.Device
	}
	if dev == "cuda" {
		be = "cuda"
	}
	return be
}

// RunOptions are the options of RunSpecs.
type RunOptions struct {
	ExecOptions
	Runs        string
	RetryFailed bool
	// NewRevision registers a spec whose trials differ from those already under its name as the next
	// revision (NAME@2, NAME@3, ...) instead of refusing it.
	NewRevision bool
	// RegisterOnly registers the specs' trials and runs none (workers run them: `sweep worker`).
	RegisterOnly bool
	// Progress, when set, shows the sweep line and the running trials (see framework/progress).
	Progress *progress.Display
	// Jobs and Threads are -j and --threads: trials in parallel and compute threads per trial (0 = auto:
	// runner.Choose picks them from the cores and the trials left, and the log says what it picked).
	Jobs, Threads int
	Runner        runner.Options
	Log           io.Writer
}

// RunResult sums what RunSpecs did.
type RunResult struct {
	Done, Failed, Interrupted int
	// Sweeps are the names the specs were registered under (NAME@2 after a new revision), with their trials
	// left to run.
	Sweeps []SweepLeft
}

// SweepLeft is a registered sweep and how many of its trials are pending or running.
type SweepLeft struct {
	Name string
	Left int
}

// RunSpecs registers each planned spec's trials in st and runs what is not done, spec by spec, each on its
// own backend (created once per backend name).
func RunSpecs(ctx context.Context, st *store.Store, ps []Planned, o RunOptions) (RunResult, error) {
	var res RunResult
	if err := Reidentify(st, o.Runs, o.Log); err != nil {
		return res, err
	}
	envs := map[string]*Env{}
	env := func(want string, threads int) (*Env, error) {
		key := fmt.Sprintf("%s/%d", want, threads)
		if e, ok := envs[key]; ok {
			return e, nil
		}
		be, resolved, err := nn.NewBackendWith(want, nn.BackendOptions{Threads: threads}, o.Log)
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(o.Log, "sweep: backend %s\n", resolved)
		e := NewEnv(be, resolved, o.Runs, o.Log)
		e.Progress = o.Progress
		envs[key] = e
		return e, nil
	}
	for _, p := range ps {
		want := o.BackendFor(p)
		if err := o.CheckPrecision(p, ""); err != nil {
			return res, err
		}
		p, err := checkRevision(st, p, o.NewRevision, o.Log)
		if err != nil {
			return res, err
		}
		sid, err := st.AddSweep(p.Raw.Name, p.Raw.File, p.NewTrials())
		if err != nil {
			return res, fmt.Errorf("registering sweep %s: %w", p.Raw.Name, err)
		}
		if o.RetryFailed {
			n, err := st.RetryFailed(sid)
			if err != nil {
				return res, err
			}
			if n > 0 {
				fmt.Fprintf(o.Log, "sweep %s: %d failed trials back to pending\n", p.Raw.Name, n)
			}
		}
		fmt.Fprintf(o.Log, "sweep %s: %d trials (%s)\n", p.Raw.Name, len(p.Trials), st.Path)
		left, err := st.Unfinished(sid)
		if err != nil {
			return res, err
		}
		if o.RegisterOnly {
			res.Sweeps = append(res.Sweeps, SweepLeft{p.Raw.Name, left})
			continue
		}
		ro := o.Runner
		if o.Progress != nil {
			o.Progress.Sweep(p.Raw.Name, len(p.Trials), len(p.Trials)-left)
			ro.OnEnd = func(t *store.Trial, state string) { o.Progress.End(t.ID, state) }
		}
		split := runner.Choose(runner.Cores(), o.Jobs, o.Threads, left, gpuBackend(want))
		fmt.Fprintf(o.Log, "sweep %s: %s\n", p.Raw.Name, split.Why)
		ro.Workers = split.Workers
		e, err := env(want, split.Threads)
		if err != nil {
			return res, fmt.Errorf("spec %s: %w", p.Raw.File, err)
		}
		if err := o.CheckPrecision(p, e.BackendName); err != nil { // auto may have resolved otherwise
			return res, err
		}
		for _, t := range p.Trials {
			e.AddSpec(t.Hash, t.Resolved)
		}
		if ts, err := st.Trials(p.Raw.Name); err == nil {
			e.NameTrials(ts)
		}
		sum := runner.Run(ctx, st, sid, ro, e.Job)
		fmt.Fprintf(o.Log, "sweep %s: %d done, %d failed, %d interrupted in this run\n", p.Raw.Name, sum.Done, sum.Failed, sum.Interrupted)
		for _, e := range sum.Errors {
			fmt.Fprintln(o.Log, "  ", e)
		}
		res.Done += sum.Done
		res.Failed += sum.Failed
		res.Interrupted += sum.Interrupted
		if ctx.Err() != nil {
			return res, ctx.Err()
		}
	}
	return res, nil
}

// WorkOptions are the options of Work.
type WorkOptions struct {
	Sweep   string // "" for every sweep in the database; several comma-separated
	Backend string // the backend name (auto, ort, go, xla, cuda)
	Runs    string
	// Jobs and Threads are as in RunOptions (0 = auto).
	Jobs, Threads int
	Runner        runner.Options
	Log           io.Writer
}

// Work claims and runs trials from the database alone, sweep by sweep, until none is pending: each trial's
// resolved spec is read from its row, never from spec files on this host. Several workers (processes,
// hosts sharing the runs folder) may run at once; each trial goes to one of them.
func Work(ctx context.Context, st *store.Store, o WorkOptions) (RunResult, error) {
	var res RunResult
	if err := Reidentify(st, o.Runs, o.Log); err != nil {
		return res, err
	}
	var sweeps []store.Sweep
	for _, name := range strings.Split(o.Sweep, ",") { // "" = every sweep; or several, comma-separated
		sw, err := st.Sweeps(name)
		if err != nil {
			return res, fmt.Errorf("%s: %w", st.Path, err)
		}
		if name != "" && len(sw) == 0 {
			return res, &spec.Error{Msg: fmt.Sprintf("--sweep %q: %s has no such sweep (sweep status lists them)", name, st.Path)}
		}
		sweeps = append(sweeps, sw...)
	}
	left := 0
	for _, sw := range sweeps {
		n, err := st.Unfinished(sw.ID)
		if err != nil {
			return res, fmt.Errorf("%s: %w", st.Path, err)
		}
		left += n
	}
	split := runner.Choose(runner.Cores(), o.Jobs, o.Threads, left, gpuBackend(o.Backend))
	be, resolved, err := nn.NewBackendWith(o.Backend, nn.BackendOptions{Threads: split.Threads}, o.Log)
	if err != nil {
		return res, err
	}
	fmt.Fprintf(o.Log, "sweep worker: backend %s, %d sweeps in %s; %s\n", resolved, len(sweeps), st.Path, split.Why)
	o.Runner.Workers = split.Workers
	env := NewEnv(be, resolved, o.Runs, o.Log)
	for _, sw := range sweeps {
		n, err := st.Unfinished(sw.ID)
		if err != nil {
			return res, fmt.Errorf("%s: %w", st.Path, err)
		}
		if n == 0 {
			continue
		}
		fmt.Fprintf(o.Log, "sweep %s: %d trials left\n", sw.Name, n)
		sum := runner.Run(ctx, st, sw.ID, o.Runner, env.Job)
		res.Done += sum.Done
		res.Failed += sum.Failed
		res.Interrupted += sum.Interrupted
		for _, e := range sum.Errors {
			fmt.Fprintln(o.Log, "  ", e)
		}
		if ctx.Err() != nil {
			return res, ctx.Err()
		}
	}
	return res, nil
}

// gpuBackend says whether a backend name runs on a GPU (whose trials share one device).
func gpuBackend(name string) bool { return name == "cuda" || name == "xla" }
