// Command sweep runs mimlab experiment specs: `sweep run` expands specs into trials and runs what is not
// done yet (in parallel with -j, resumable, safe to run twice at once on one database), `sweep plan`
// validates and lists trials without touching the database, `sweep status` shows trials, metrics and evals,
// `sweep export` writes a trial's encoder weights (safetensors) or frozen features (.npy), and
// `sweep fetch-ort` places the ONNX Runtime library for the fast CPU backend.
//
// Exit status: 0 done, 1 a trial failed or an operation failed, 2 bad input (spec, flags).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"mimlab/experiment"
	"mimlab/framework/npy"
	"mimlab/framework/runner"
	"mimlab/framework/spec"
	"mimlab/framework/store"
	"mimlab/framework/sweep"
	"mimlab/nn"
)

type multi []string

func (m *multi) String() string     { return strings.Join(*m, ",") }
func (m *multi) Set(v string) error { *m = append(*m, v); return nil }

const usage = `usage:
  sweep run [-j N] [--db results.db] [--device cpu|cuda] [--backend auto|ort|go|xla] [--retry-failed]
            [--runs runs] [--watchdog 15m] [-set key.path=value]... specs...
  sweep plan [-set key.path=value]... specs...
  sweep status [--db results.db] [--sweep NAME]
  sweep export --trial ID (--weights FILE.safetensors | --features train|test -o FILE.npy) [--db results.db]
  sweep fetch-ort
`

// exitErr carries an exit status.
type exitErr struct {
	code int
	err  error
}

func (e exitErr) Error() string { return e.err.Error() }

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "run":
		err = cmdRun(os.Args[2:])
	case "plan":
		err = cmdPlan(os.Args[2:])
	case "status":
		err = cmdStatus(os.Args[2:])
	case "export":
		err = cmdExport(os.Args[2:])
	case "fetch-ort":
		var p string
		p, err = nn.FetchORT(context.Background(), os.Stderr)
		if err == nil {
			fmt.Println(p)
		}
	case "-h", "--help", "help":
		fmt.Print(usage)
	default:
		err = exitErr{2, fmt.Errorf("unknown verb %q; allowed: run, plan, status, export, fetch-ort", os.Args[1])}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "sweep:", err)
		var ee exitErr
		if errors.As(err, &ee) {
			os.Exit(ee.code)
		}
		if spec.IsSpecError(err) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

// parse parses flags interleaved with positional arguments.
func parse(fs *flag.FlagSet, args []string) ([]string, error) {
	fs.SetOutput(io.Discard)
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, exitErr{2, fmt.Errorf("%v\n%s", err, usage)}
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

type planned struct {
	raw    *spec.Raw
	trials []sweep.Trial
}

// expand loads, resolves and cross-checks every spec; nothing touches the database.
func expand(files []string, sets []string) ([]planned, error) {
	if len(files) == 0 {
		return nil, exitErr{2, fmt.Errorf("no spec files given\n%s", usage)}
	}
	var out []planned
	for _, f := range files {
		raw, err := spec.Load(f, sets)
		if err != nil {
			return nil, err
		}
		ts, err := sweep.Expand(raw, experiment.Sections())
		if err != nil {
			return nil, err
		}
		for _, t := range ts {
			if err := experiment.CheckCross(t.Resolved); err != nil {
				return nil, fmt.Errorf("%w (trial %s)", err, t.Label)
			}
		}
		out = append(out, planned{raw, ts})
	}
	return out, nil
}

func cmdPlan(args []string) error {
	fs := flag.NewFlagSet("plan", flag.ContinueOnError)
	var sets multi
	fs.Var(&sets, "set", "override key.path=value")
	files, err := parse(fs, args)
	if err != nil {
		return err
	}
	ps, err := expand(files, sets)
	if err != nil {
		return err
	}
	total := 0
	for _, p := range ps {
		fmt.Printf("%s (%s): %d trials\n", p.raw.Name, p.raw.File, len(p.trials))
		for _, t := range p.trials {
			fmt.Printf("  %s  %s\n", t.Hash, t.Label)
		}
		total += len(p.trials)
	}
	fmt.Printf("%d trials in %d specs\n", total, len(ps))
	return nil
}

func cmdRun(args []string) error {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	var sets multi
	fs.Var(&sets, "set", "override key.path=value")
	workers := fs.Int("j", 1, "trials in parallel")
	db := fs.String("db", "results.db", "results database")
	device := fs.String("device", "", "cpu or cuda (default: the spec's train.device)")
	backend := fs.String("backend", "", "auto, ort, go or xla (default: the spec's train.backend)")
	retry := fs.Bool("retry-failed", false, "run failed trials again")
	runs := fs.String("runs", "runs", "folder for checkpoints and exports")
	watchdog := fs.Duration("watchdog", 15*time.Minute, "fail a trial with no progress for this long (0 = off)")
	heartbeat := fs.Duration("heartbeat", 5*time.Second, "heartbeat interval; a trial silent for 6 heartbeats is claimed again")
	files, err := parse(fs, args)
	if err != nil {
		return err
	}
	if *device != "" && *device != "cpu" && *device != "cuda" {
		return exitErr{2, fmt.Errorf("--device %q: allowed values are cpu, cuda", *device)}
	}
	if *backend != "" && !contains(nn.Backends, *backend) {
		return exitErr{2, fmt.Errorf("--backend %q: allowed values are %s", *backend, strings.Join(nn.Backends, ", "))}
	}
	ps, err := expand(files, sets)
	if err != nil {
		return err
	}
	// Backend: the flag wins, then the first trial's spec.
	first := experiment.Typed(ps[0].trials[0].Resolved).Train
	be, dev := first.Backend, first.Device
	if *backend != "" {
		be = *backend
	}
	if *device != "" {
		dev = *device
	}
	if dev == "cuda" {
		be = "cuda"
	}
	backendImpl, resolved, err := nn.NewBackend(be, os.Stderr)
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "sweep: backend %s\n", resolved)
	st, err := store.Open(*db)
	if err != nil {
		return err
	}
	defer st.Close()
	env := experiment.NewEnv(backendImpl, resolved, *runs, os.Stderr)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	failed := 0
	for _, p := range ps {
		var nts []store.NewTrial
		for _, t := range p.trials {
			env.AddSpec(t.Hash, t.Resolved)
			nts = append(nts, store.NewTrial{Hash: t.Hash, Name: t.Label, Spec: t.Full()})
		}
		sid, err := st.AddSweep(p.raw.Name, p.raw.File, nts)
		if err != nil {
			return err
		}
		if *retry {
			n, err := st.RetryFailed(sid)
			if err != nil {
				return err
			}
			if n > 0 {
				fmt.Fprintf(os.Stderr, "sweep %s: %d failed trials back to pending\n", p.raw.Name, n)
			}
		}
		fmt.Fprintf(os.Stderr, "sweep %s: %d trials (%s)\n", p.raw.Name, len(p.trials), *db)
		sum := runner.Run(ctx, st, sid, runner.Options{Workers: *workers, Watchdog: *watchdog, Heartbeat: *heartbeat, Log: os.Stderr}, env.Job)
		fmt.Fprintf(os.Stderr, "sweep %s: %d done, %d failed, %d interrupted in this run\n", p.raw.Name, sum.Done, sum.Failed, sum.Interrupted)
		for _, e := range sum.Errors {
			fmt.Fprintln(os.Stderr, "  ", e)
		}
		failed += sum.Failed
		if ctx.Err() != nil {
			return exitErr{130, fmt.Errorf("interrupted: finished trials are kept, interrupted ones resume on the next run")}
		}
	}
	if failed > 0 {
		return fmt.Errorf("%d trials failed (see `sweep status`; `sweep run --retry-failed` runs them again)", failed)
	}
	return nil
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if x == y {
			return true
		}
	}
	return false
}

func openExisting(db string) (*store.Store, error) {
	if !store.Exists(db) {
		return nil, exitErr{2, fmt.Errorf("--db %s: no such results database (run `sweep run` first)", db)}
	}
	return store.Open(db)
}

func cmdStatus(args []string) error {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	db := fs.String("db", "results.db", "results database")
	sw := fs.String("sweep", "", "only this sweep")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	st, err := openExisting(*db)
	if err != nil {
		return err
	}
	defer st.Close()
	trials, err := st.Trials(*sw)
	if err != nil {
		return err
	}
	counts := map[string]int{}
	fmt.Printf("%-4s %-8s %-7s %-9s %-9s %-8s %-8s %-9s %s\n", "id", "state", "step", "loss", "linear", "knn", "attent.", "hash", "name")
	for _, t := range trials {
		counts[t.State]++
		_, last, _ := st.LastMetrics(t.ID)
		ev, _ := st.Evals(t.ID)
		f := func(p string) string {
			if v, ok := ev[p]["top1"]; ok {
				return fmt.Sprintf("%.4f", v)
			}
			return "-"
		}
		loss := "-"
		if v, ok := last["loss"]; ok {
			loss = fmt.Sprintf("%.4f", v)
		}
		fmt.Printf("%-4d %-8s %-7d %-9s %-9s %-8s %-8s %-9s %s\n", t.ID, t.State, t.Step, loss, f("linear"), f("knn"), f("attentive"), t.Hash[:8], t.Name)
		if t.State == store.Failed && t.Error != "" {
			fmt.Printf("     error: %s\n", t.Error)
		}
	}
	var states []string
	for s, n := range counts {
		states = append(states, fmt.Sprintf("%d %s", n, s))
	}
	sort.Strings(states)
	fmt.Printf("%d trials: %s\n", len(trials), strings.Join(states, ", "))
	bl, err := st.Baselines("")
	if err != nil {
		return err
	}
	if len(bl) > 0 {
		fmt.Println("reference rows (same splits):")
		rows, _ := st.DB.Query(`SELECT dataset, arch, protocol, value FROM baselines ORDER BY dataset, arch, protocol`)
		defer rows.Close()
		for rows.Next() {
			var d, a, p string
			var v float64
			rows.Scan(&d, &a, &p, &v)
			fmt.Printf("  %-14s %-32s %-10s %.4f\n", d, a, p, v)
		}
	}
	return nil
}

func cmdExport(args []string) error {
	fs := flag.NewFlagSet("export", flag.ContinueOnError)
	db := fs.String("db", "results.db", "results database")
	id := fs.Int64("trial", 0, "trial id (see `sweep status`)")
	weights := fs.String("weights", "", "write the encoder's weights (timm names) to this .safetensors file")
	features := fs.String("features", "", "train or test: write frozen-encoder features")
	out := fs.String("o", "", "output .npy for --features (labels go to <name>_labels.npy)")
	backend := fs.String("backend", "auto", "backend for --features")
	runs := fs.String("runs", "runs", "folder of checkpoints")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	if *id == 0 || (*weights == "") == (*features == "") {
		return exitErr{2, fmt.Errorf("export needs --trial ID and one of --weights FILE or --features train|test -o FILE\n%s", usage)}
	}
	if *features != "" && *features != "train" && *features != "test" {
		return exitErr{2, fmt.Errorf("--features %q: allowed values are train, test", *features)}
	}
	if *features != "" && *out == "" {
		return exitErr{2, fmt.Errorf("--features needs -o FILE.npy")}
	}
	st, err := openExisting(*db)
	if err != nil {
		return err
	}
	defer st.Close()
	tr, err := st.TrialByID(*id)
	if err != nil {
		return exitErr{2, err}
	}
	be, name, err := nn.NewBackend(*backend, os.Stderr)
	if err != nil {
		return err
	}
	env := experiment.NewEnv(be, name, *runs, os.Stderr)
	res, err := experiment.ResolveStored(tr.Spec)
	if err != nil {
		return err
	}
	env.AddSpec(tr.Hash, res)
	t, err := env.Prepare(tr.Hash)
	if err != nil {
		return err
	}
	set, params, step, err := t.LoadTrained()
	if err != nil {
		return err
	}
	defer nn.Free(params...)
	if *weights != "" {
		if err := experiment.ExportEncoder(t, set, params, *weights); err != nil {
			return err
		}
		fmt.Printf("wrote %s (encoder of trial %d at step %d, timm names)\n", *weights, tr.ID, step)
		return nil
	}
	split := &t.Data.Train
	if *features == "test" {
		split = &t.Data.Test
	}
	f, _, err := t.Extract(set, params, split, false)
	if err != nil {
		return err
	}
	if err := npy.WriteFloat32(*out, f.X, f.N, f.D); err != nil {
		return err
	}
	labels := make([]int64, f.N)
	for i, l := range f.Labels {
		labels[i] = int64(l)
	}
	lp := strings.TrimSuffix(*out, filepath.Ext(*out)) + "_labels.npy"
	if err := npy.WriteInt64(lp, labels, f.N); err != nil {
		return err
	}
	fmt.Printf("wrote %s (%d x %d %s features, %s) and %s\n", *out, f.N, f.D, *features, t.Cfg.Eval.Feature, lp)
	return nil
}
