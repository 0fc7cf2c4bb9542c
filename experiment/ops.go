package experiment

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"mimlab/framework/npy"
	"mimlab/framework/progress"
	"mimlab/framework/runner"
	"mimlab/framework/spec"
	"mimlab/framework/store"
	"mimlab/framework/sweep"
	"mimlab/nn"
)

// Planned is one spec file expanded into its trials.
type Planned struct {
	Raw    *spec.Raw
	Trials []sweep.Expanded
}

// Plan loads, resolves and cross-checks every spec (overrides applied to each); nothing touches a
// database. An error is a spec error (exit status 2 at the CLI).
func Plan(files, overrides []string) ([]Planned, error) {
	if len(files) == 0 {
		return nil, &spec.Error{Msg: "no spec files given"}
	}
	avail, err := AvailableBytes()
	if err != nil {
		return nil, &spec.Error{Msg: err.Error()}
	}
	var out []Planned
	for _, f := range files {
		raw, err := spec.Load(f, overrides)
		if err != nil {
			return nil, err
		}
		ts, err := sweep.Expand(raw, Sections())
		if err != nil {
			return nil, err
		}
		for _, t := range ts {
			if err := CheckTrial(t.Resolved, avail); err != nil {
				return nil, fmt.Errorf("%w (trial %s)", err, t.Name)
			}
		}
		out = append(out, Planned{raw, ts})
	}
	return out, nil
}

// CheckTrial is the plan's check of one resolved trial beyond what resolving checks (values, names): the
// components' cross-checks and the memory estimate against avail bytes (0 = unbounded). A worker runs the
// same check on every spec it reads from the database, so a row cannot run what the plan would refuse.
func CheckTrial(res *spec.Resolved, avail uint64) error {
	if err := CheckCross(res); err != nil {
		return err
	}
	// A batch no training split can fill is known before any image is read when the dataset's size is.
	if c := Typed(res); c.Data.BatchSize > 0 {
		d, eb := c.Data, c.Train.EffectiveBatch(c.Data.BatchSize)
		if n, ok := d.TrainSizeBound(); ok && eb > n {
			if eb != d.BatchSize {
				return &spec.Error{File: res.File, Msg: fmt.Sprintf("data.batch_size = %d x train.accum_steps = %d: an effective batch of %d, larger than the %d training images of %s (num_train, train_limit), so no step can be drawn: lower either", d.BatchSize, c.Train.AccumSteps, eb, n, d.Name)}
			}
			return &spec.Error{File: res.File, Msg: fmt.Sprintf("data.batch_size = %d: larger than the %d training images of %s (num_train, train_limit), so no batch can be drawn: lower data.batch_size to at most %d", d.BatchSize, n, d.Name, n)}
		}
	}
	return CheckMemory(res, avail)
}

// CheckStored resolves a spec read from the database and checks it as Plan checks a spec file's trials.
func CheckStored(js string) (*spec.Resolved, error) {
	res, err := ResolveStored(js)
	if err != nil {
		return nil, err
	}
	avail, err := AvailableBytes()
	if err != nil {
		return nil, err
	}
	if err := CheckTrial(res, avail); err != nil {
		return nil, fmt.Errorf("stored spec refused, as sweep plan would refuse it: %w", err)
	}
	return res, nil
}

// NewTrials are the store rows of a planned spec.
func (p Planned) NewTrials() []store.NewTrial {
	var out []store.NewTrial
	for _, t := range p.Trials {
		out = append(out, store.NewTrial{Hash: t.Hash, Base: t.Base, Spec: t.Full(), Point: t.Point, Label: t.Label})
	}
	return out
}

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

// changedKeys lists the dotted keys whose values differ between two spec trees.
func changedKeys(a, b map[string]any) []string {
	var out []string
	for sec, av := range a {
		am, _ := av.(map[string]any)
		bm, _ := b[sec].(map[string]any)
		if am == nil || bm == nil {
			if fmt.Sprint(av) != fmt.Sprint(b[sec]) {
				out = append(out, sec)
			}
			continue
		}
		keys := map[string]bool{}
		for k := range am {
			keys[k] = true
		}
		for k := range bm {
			keys[k] = true
		}
		for k := range keys {
			x, y := am[k], bm[k]
			if fmt.Sprint(x) != fmt.Sprint(y) {
				out = append(out, fmt.Sprintf("%s.%s: %v -> %v", sec, k, x, y))
			}
		}
	}
	sort.Strings(out)
	return out
}

// checkRevision refuses a spec whose trials differ from those already registered under its name at the same
// sweep point (an edited spec run again under the same name would otherwise be averaged with the old runs
// as seeds of one configuration). New points (more seeds, a longer grid) are fine. With newRevision the
// spec is registered as the next free NAME@N instead.
func checkRevision(st *store.Store, p Planned, newRevision bool, log io.Writer) (Planned, error) {
	conflict := func(name string) (string, error) {
		old, err := st.Trials(name)
		if err != nil {
			return "", fmt.Errorf("%s: %w", st.Path, err)
		}
		known := map[string][]store.Trial{}
		for _, t := range old {
			if t.Base == name {
				k := t.Point.Seedless().Key()
				known[k] = append(known[k], t)
			}
		}
		for _, t := range p.Trials {
			prevs := known[t.Point.Seedless().Key()]
			if len(prevs) == 0 {
				continue
			}
			nkey := t.ConfigKey()
			same := false
			for _, prev := range prevs {
				if okey := StoredConfig(prev.Spec).Key; okey == nkey {
					same = true
				}
			}
			if !same {
				otree := StoredConfig(prevs[0].Spec).Tree
				return fmt.Sprintf("at %s: %s", t.Point.Seedless().Name(t.Base), strings.Join(changedKeys(otree, t.ConfigTree()), ", ")), nil
			}
		}
		return "", nil
	}
	why, err := conflict(p.Raw.Name)
	if err != nil || why == "" {
		return p, err
	}
	if !newRevision {
		return p, &spec.Error{File: p.Raw.File, Msg: fmt.Sprintf("sweep %q already holds other trials at the same points (%s): rename the spec, or run with --as-new-revision to register it as a new revision of %q", p.Raw.Name, why, p.Raw.Name)}
	}
	base, first := p.Raw.Name, why
	for rev := 2; rev < 10000; rev++ {
		name := fmt.Sprintf("%s@%d", base, rev)
		p.Raw.Name = name
		ts, err := sweep.Expand(p.Raw, Sections())
		if err != nil {
			return p, err
		}
		p.Trials = ts
		why, err := conflict(name)
		if err != nil {
			return p, err
		}
		if why == "" {
			fmt.Fprintf(log, "sweep %s: registered as %s (the spec changed %s)\n", base, name, first)
			return p, nil
		}
	}
	return p, fmt.Errorf("sweep %s: no free revision name", base)
}

// identityVersion names the current identity scheme (TOML-key space); with the registered keys and their
// defaults it makes the fingerprint that says whether stored identities are current.
const identityVersion = "toml-keys-1"

// IdentityFingerprint changes whenever a registered implementation, a key or a default changes: the events
// after which stored trials may have another identity under today's code.
func IdentityFingerprint() string {
	var b strings.Builder
	b.WriteString(identityVersion)
	for _, s := range Sections() {
		impls := s.Names()
		if len(impls) == 0 {
			impls = []string{""}
		}
		for _, impl := range impls {
			cfg, err := s.New(impl)
			if err != nil {
				continue
			}
			js, _ := json.Marshal(spec.Values(cfg, false))
			fmt.Fprintf(&b, "|%s/%s=%s", s.Name(), impl, js)
			if u, ok := cfg.(spec.Uses); ok { // sections it leaves out of its trials' identities
				fmt.Fprintf(&b, " unused=%s", strings.Join(u.Unused(), ","))
			}
		}
	}
	h := sha256.Sum256([]byte(b.String()))
	return hex.EncodeToString(h[:])[:16]
}

// Reidentify brings the stored trials' identities up to date: each stored spec is resolved with today's code
// (the legacy form of older databases converted) and rehashed; a trial whose hash changed moves to the new
// hash in one transaction, keeping the old one in legacy_hash, so its done state, metrics and evals are
// found under the identity today's specs expand to. Its runs folder gets a link under the new hash. It runs
// only when the registered keys changed since the last time (a fingerprint in the meta table).
func Reidentify(st *store.Store, runs string, log io.Writer) error {
	fp := IdentityFingerprint()
	if cur, err := st.Meta("identity"); err != nil {
		return fmt.Errorf("%s: reading the identity fingerprint: %w", st.Path, err)
	} else if cur == fp {
		return nil
	}
	trials, err := st.Trials("")
	if err != nil {
		return fmt.Errorf("%s: %w", st.Path, err)
	}
	taken := map[string]int64{}
	for _, t := range trials {
		taken[t.Hash] = t.ID
	}
	var moves []store.Reidentified
	for _, t := range trials {
		res, err := ResolveStored(t.Spec)
		if err != nil {
			fmt.Fprintf(log, "sweep: trial %d (%s) keeps its identity: %v\n", t.ID, t.Name, err)
			continue
		}
		h := res.Hash()
		if h == t.Hash {
			continue
		}
		if other, ok := taken[h]; ok && other != t.ID {
			// Old identities held every implementation's fields: two trials that differed only in a field
			// their implementation never read are one configuration today. The first keeps the new identity;
			// this one keeps its old hash (its results stay readable; today's specs do not expand to it).
			fmt.Fprintf(log, "sweep: trial %d (%s) is the same configuration as trial %d under today's keys; it keeps its old identity %s\n", t.ID, t.Name, other, t.Hash)
			continue
		}
		taken[h] = t.ID
		moves = append(moves, store.Reidentified{ID: t.ID, OldHash: t.Hash, NewHash: h, NewSpec: res.Full()})
	}
	if err := st.Reidentify(moves, "identity", fp); err != nil {
		return fmt.Errorf("%s: re-identifying trials: %w", st.Path, err)
	}
	if len(moves) > 0 {
		fmt.Fprintf(log, "sweep: %d trials of %s moved to today's identities (old hashes kept in trials.legacy_hash)\n", len(moves), st.Path)
	}
	for _, m := range moves {
		if !store.ValidHash(m.OldHash) || !store.ValidHash(m.NewHash) {
			// A path is built from validated parts only: a stored hash such as "../victim" links nothing.
			fmt.Fprintf(log, "sweep: trial %d: its stored identity %q is not 16 hex digits: its runs folder is not linked\n", m.ID, m.OldHash)
			continue
		}
		oldDir, newDir := filepath.Join(runs, m.OldHash), filepath.Join(runs, m.NewHash)
		if _, err := os.Stat(oldDir); err != nil {
			continue
		}
		if _, err := os.Lstat(newDir); err == nil {
			continue
		}
		if err := os.Symlink(m.OldHash, newDir); err != nil {
			fmt.Fprintf(log, "sweep: linking %s to %s: %v\n", newDir, oldDir, err)
		}
	}
	return nil
}

// Export writes a trial's encoder weights (timm names) or its frozen features of a split (.npy, labels
// beside them) from the database and the runs folder alone.
type Export struct {
	Weights  string // .safetensors path, or ""
	Features string // "train" or "test", or ""
	Out      string // .npy path for Features
	// CheckpointSHA is the sha256 the database recorded for the trial's checkpoint ("" when none is): a
	// checkpoint on disk that does not match it is not exported.
	CheckpointSHA string
}

// ExportTrial runs an Export for trial tr, on backend be; it returns a line saying what it wrote.
func ExportTrial(env *Env, tr *store.Trial, x Export) (string, error) {
	res, err := ResolveStored(tr.Spec)
	if err != nil {
		return "", err
	}
	env.AddSpec(tr.Hash, res)
	t, err := env.Prepare(tr.Hash)
	if err != nil {
		return "", err
	}
	defer t.Close()
	t.FindDir(tr.LegacyHash)
	if x.CheckpointSHA != "" {
		// The file must be the one the database recorded: another one (damaged, or written by a worker
		// after it lost its lease) would export weights of a step the trial's record does not hold.
		got, err := runner.FileSHA(t.checkpointPath())
		if err != nil {
			return "", fmt.Errorf("trial %d: checkpoint: %w", tr.ID, err)
		}
		if got != x.CheckpointSHA {
			return "", fmt.Errorf("trial %d: checkpoint %s does not match the sha256 recorded for it (file %s, recorded %s): not exported (a damaged file, or one written after its worker lost the trial)", tr.ID, t.checkpointPath(), got[:12], x.CheckpointSHA[:min(12, len(x.CheckpointSHA))])
		}
	}
	set, params, step, err := t.LoadTrained()
	if err != nil {
		return "", err
	}
	defer nn.Free(params...)
	if x.Weights != "" {
		if err := ExportEncoder(t, set, params, x.Weights); err != nil {
			return "", err
		}
		return fmt.Sprintf("wrote %s (encoder of trial %d at step %d, timm names)", x.Weights, tr.ID, step), nil
	}
	split := &t.Data.Train
	if x.Features == "test" {
		split = &t.Data.Test
	}
	pooled, _, err := t.Extract(set, params, split, false)
	if err != nil {
		return "", err
	}
	feature := t.Cfg.Eval.Feature
	if feature == "both" {
		feature = "cls" // one file holds one pooling; set eval.feature to choose
	}
	f := pooled.Get(feature)
	if err := npy.WriteFloat32(x.Out, f.X, f.N, f.D); err != nil {
		return "", err
	}
	labels := make([]int64, f.N)
	for i, l := range f.Labels {
		labels[i] = int64(l)
	}
	lp := strings.TrimSuffix(x.Out, filepath.Ext(x.Out)) + "_labels.npy"
	if err := npy.WriteInt64(lp, labels, f.N); err != nil {
		return "", err
	}
	return fmt.Sprintf("wrote %s (%d x %d %s features, %s) and %s", x.Out, f.N, f.D, x.Features, feature, lp), nil
}

// Component is one registered implementation as `sweep list` shows it.
type Component struct {
	Kind, Name, Doc string
	Default         bool
	Keys            []spec.KeyInfo
}

// Registered lists every registered component by kind (spec order), then the fixed sections.
func Registered() []Component {
	var out []Component
	for _, k := range Kinds() {
		names := k.Names()
		sort.Strings(names)
		for _, n := range names {
			cfg, err := k.New(n)
			if err != nil {
				continue
			}
			var keys []spec.KeyInfo
			for _, ki := range spec.Keys(cfg) {
				if ki.Key != "name" {
					keys = append(keys, ki)
				}
			}
			out = append(out, Component{Kind: k.Name(), Name: n, Doc: k.Doc(n), Default: n == k.Default(), Keys: keys})
		}
	}
	for _, s := range Fixed() {
		cfg, _ := s.New("")
		out = append(out, Component{Kind: s.Name(), Keys: spec.Keys(cfg)})
	}
	return out
}
