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
	"strings"
	"syscall"
	"time"

	"mimlab/experiment"
	"mimlab/framework/export"
	"mimlab/framework/files"
	"mimlab/framework/progress"
	"mimlab/framework/runner"
	"mimlab/framework/spec"
	"mimlab/framework/store"
	"mimlab/framework/sweep"
	"mimlab/nn"

	"golang.org/x/term"
)

type multi []string

func (m *multi) String() string     { return strings.Join(*m, ",") }
func (m *multi) Set(v string) error { *m = append(*m, v); return nil }

const usage = `usage:
  sweep run [-j auto|N] [--threads T] [--db results.db] [--device cpu|cuda] [--backend auto|ort|go|xla] [--retry-failed] [--as-new-revision] [--register-only] [--plain]
            [--runs runs] [--watchdog 15m] [-set key.path=value]... specs...
  sweep plan [-set key.path=value]... specs...
  sweep status [--db results.db] [--sweep NAME] [--full]
  sweep export --trial ID (--weights FILE.safetensors | --features train|test -o FILE.npy) [--db results.db]
  sweep export --table trials|metrics|evals|attempts [--format csv|parquet] [--csv-exact] [-o FILE] [--db results.db]
  sweep worker [--db results.db] [--runs runs] [--sweep NAME[,NAME...]] [--device cpu|cuda] [--backend B] [-j auto|N] [--threads T]
                                  claim and run trials from the database alone (specs are read from it)
  sweep submit --slurm [--db postgres://...] [--runs SHARED/runs] [--array-parallel K] [--array-size N] [--partition P]
               [--account A] [--time T] [--cpus-per-task C] [--gpus-per-task G] [--sbatch-option=--qos=X]... [--dry-run] specs...
                                  register the specs and launch a Slurm array job of workers (prints the job id)
  sweep migrate [--db results.db]  bring a database to this mimlab's schema (status, report and export never write)
  sweep list                      every registered component by kind, its keys, defaults and allowed values
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
	experiment.RecordStartHead() // provenance of an unstamped binary: the commit at start, not when a trial starts
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
	case "list":
		err = cmdList(os.Args[2:])
	case "worker":
		err = cmdWorker(os.Args[2:])
	case "migrate":
		err = cmdMigrate(os.Args[2:])
	case "submit":
		err = cmdSubmit(os.Args[2:])
	case "fetch-ort":
		var p string
		p, err = nn.FetchORT(context.Background(), os.Stderr)
		if err == nil {
			fmt.Println(p)
		}
	case "-h", "--help", "help":
		fmt.Print(usage)
	default:
		err = exitErr{2, fmt.Errorf("unknown verb %q; allowed: run, plan, status, export, list, worker, submit, migrate, fetch-ort", os.Args[1])}
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

// plan expands the specs; a missing spec list is a usage error.
func plan(files, sets []string) ([]experiment.Planned, error) {
	if len(files) == 0 {
		return nil, exitErr{2, fmt.Errorf("no spec files given\n%s", usage)}
	}
	return experiment.Plan(files, sets)
}

func cmdPlan(args []string) error {
	fs := flag.NewFlagSet("plan", flag.ContinueOnError)
	var sets multi
	fs.Var(&sets, "set", "override key.path=value")
	files, err := parse(fs, args)
	if err != nil {
		return err
	}
	ps, err := plan(files, sets)
	if err != nil {
		return err
	}
	total := 0
	for _, p := range ps {
		fmt.Printf("%s (%s): %d trials\n", p.Raw.Name, p.Raw.File, len(p.Trials))
		for _, line := range strings.Split(strings.TrimRight(sweep.Describe(p.Trials), "\n"), "\n") {
			fmt.Printf("  %s\n", line)
		}
		total += len(p.Trials)
	}
	fmt.Printf("%d trials in %d specs\n", total, len(ps))
	return nil
}

func cmdRun(args []string) error {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	var sets multi
	fs.Var(&sets, "set", "override key.path=value")
	split := splitFlags(fs)
	db := fs.String("db", dbDefault(), "results database: a SQLite file, or postgres://user@host/dbname (default $MIMLAB_DB, else results.db)")
	device := fs.String("device", "", "cpu or cuda (default: each spec's train.device)")
	backend := fs.String("backend", "", "auto, ort, go or xla (default: each spec's train.backend)")
	retry := fs.Bool("retry-failed", false, "run failed trials again")
	plain := fs.Bool("plain", false, "plain log lines even on a terminal (no live progress lines)")
	registerOnly := fs.Bool("register-only", false, "register the specs' trials in --db and run none (for `sweep worker`s)")
	revision := fs.Bool("as-new-revision", false, "register a spec whose trials differ from those under its name as NAME@2, NAME@3, ...")
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
	nj, nt, err := split()
	if err != nil {
		return err
	}
	ps, err := plan(files, sets)
	if err != nil {
		return err
	}
	for _, p := range ps { // before the database is touched, like every spec error
		if err := (experiment.ExecOptions{Backend: *backend, Device: *device}).CheckPrecision(p, ""); err != nil {
			return exitErr{2, err}
		}
	}
	st, err := openStore(*db)
	if err != nil {
		return err
	}
	defer st.Close()
	ctx, stop := interruptible()
	defer stop()
	disp := progress.New(os.Stderr, !*plain && term.IsTerminal(int(os.Stderr.Fd())))
	res, err := experiment.RunSpecs(ctx, st, ps, experiment.RunOptions{
		ExecOptions: experiment.ExecOptions{Backend: *backend, Device: *device}, Runs: *runs, RetryFailed: *retry, NewRevision: *revision,
		RegisterOnly: *registerOnly, Log: disp, Progress: disp, Jobs: nj, Threads: nt,
		Runner: runner.Options{Watchdog: *watchdog, Heartbeat: *heartbeat, Log: disp}})
	disp.Wait()
	if ctx.Err() != nil {
		return exitErr{130, fmt.Errorf("interrupted: finished trials are kept, interrupted ones resume on the next run")}
	}
	if err != nil {
		return err
	}
	if res.Failed > 0 {
		return fmt.Errorf("%d trials failed (see `sweep status`; `sweep run --retry-failed` runs them again)", res.Failed)
	}
	return nil
}

func cmdWorker(args []string) error {
	fs := flag.NewFlagSet("worker", flag.ContinueOnError)
	db := fs.String("db", dbDefault(), "results database: a SQLite file, or postgres://user@host/dbname (default $MIMLAB_DB, else results.db)")
	runs := fs.String("runs", "runs", "folder for checkpoints and exports (shared by the workers)")
	sw := fs.String("sweep", "", "only this sweep (default: every sweep in the database)")
	device := fs.String("device", "cpu", "cpu or cuda")
	backend := fs.String("backend", "auto", "auto, ort, go or xla")
	split := splitFlags(fs)
	watchdog := fs.Duration("watchdog", 15*time.Minute, "fail a trial with no progress for this long (0 = off)")
	heartbeat := fs.Duration("heartbeat", 5*time.Second, "heartbeat interval; a trial silent for 6 heartbeats is claimed again")
	if pos, err := parse(fs, args); err != nil {
		return err
	} else if len(pos) > 0 {
		return exitErr{2, fmt.Errorf("worker takes no spec files (it reads the specs from --db): %v", pos)}
	}
	if *device != "cpu" && *device != "cuda" {
		return exitErr{2, fmt.Errorf("--device %q: allowed values are cpu, cuda", *device)}
	}
	if !contains(nn.Backends, *backend) {
		return exitErr{2, fmt.Errorf("--backend %q: allowed values are %s", *backend, strings.Join(nn.Backends, ", "))}
	}
	nj, nt, err := split()
	if err != nil {
		return err
	}
	be := *backend
	if *device == "cuda" {
		be = "cuda"
	}
	st, err := openExisting(*db, true)
	if err != nil {
		return err
	}
	defer st.Close()
	ctx, stop := interruptible()
	defer stop()
	res, err := experiment.Work(ctx, st, experiment.WorkOptions{Sweep: *sw, Backend: be, Runs: *runs, Log: os.Stderr,
		Jobs: nj, Threads: nt, Runner: runner.Options{Watchdog: *watchdog, Heartbeat: *heartbeat, Log: os.Stderr}})
	if ctx.Err() != nil {
		return exitErr{130, fmt.Errorf("interrupted: finished trials are kept, interrupted ones resume on the next run")}
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "sweep worker: %d done, %d failed, %d interrupted\n", res.Done, res.Failed, res.Interrupted)
	if res.Failed > 0 {
		return fmt.Errorf("%d trials failed (see `sweep status`)", res.Failed)
	}
	return nil
}

// splitFlags declares -j and --threads on fs (sweep run and sweep worker) and returns their reader:
// -j as a number (0 = auto) and --threads (0 = auto), or a usage error.
func splitFlags(fs *flag.FlagSet) func() (jobs, threads int, err error) {
	j := fs.String("j", "auto", "trials in parallel in this process: auto (one per core, at most one per trial left) or N")
	t := fs.Int("threads", 0, "compute threads per trial (0 = auto: the cores divided among the trials in parallel)")
	return func() (int, int, error) {
		nj, err := runner.ParseJobs(*j)
		if err != nil {
			return 0, 0, exitErr{2, err}
		}
		if *t < 0 {
			return 0, 0, exitErr{2, fmt.Errorf("--threads %d: must be >= 0 (0 = auto)", *t)}
		}
		return nj, *t, nil
	}
}

// cmdList prints every registered component by kind with its keys, defaults and allowed values.
func cmdList(args []string) error {
	fs := flag.NewFlagSet("list", flag.ContinueOnError)
	if _, err := parse(fs, args); err != nil {
		return err
	}
	kind := ""
	for _, c := range experiment.Registered() {
		if c.Kind != kind {
			kind = c.Kind
			fmt.Printf("[%s]\n", kind)
		}
		if c.Name != "" {
			def := ""
			if c.Default {
				def = " (default)"
			}
			fmt.Printf("  %s%s: %s\n", c.Name, def, c.Doc)
		}
		for _, k := range c.Keys {
			line := fmt.Sprintf("      %s = %s", k.Key, tomlValue(k.Default))
			if k.Allowed != "" {
				line += "  allowed: " + k.Allowed
			}
			if k.Exec {
				line += "  (execution only, not part of a trial's identity)"
			}
			if k.Doc != "" {
				line += "  # " + k.Doc
			}
			fmt.Println(line)
		}
	}
	return nil
}

func tomlValue(v any) string {
	switch x := v.(type) {
	case string:
		return fmt.Sprintf("%q", x)
	case []any:
		parts := make([]string, len(x))
		for i, e := range x {
			parts[i] = tomlValue(e)
		}
		return "[" + strings.Join(parts, ", ") + "]"
	}
	return fmt.Sprint(v)
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if x == y {
			return true
		}
	}
	return false
}

// interruptible is the context of a command that runs trials: the first Ctrl-C (or SIGTERM) cancels it, and
// every long loop (training, tokenizer, probes, fine-tuning, feature extraction) stops within a step and
// leaves its trial pending; a second Ctrl-C stops the process at once (its trials are then claimed again
// when their leases expire).
func interruptible() (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() {
		select {
		case <-sig:
			signal.Reset(os.Interrupt, syscall.SIGTERM) // the default action again: the next signal ends the process
			fmt.Fprintln(os.Stderr, "sweep: stopping: running trials checkpoint and stay pending (Ctrl-C again to stop at once)")
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, func() { signal.Stop(sig); cancel() }
}

// dbDefault is --db's default: $MIMLAB_DB, else results.db.
func dbDefault() string {
	if v := os.Getenv("MIMLAB_DB"); v != "" {
		return v
	}
	return "results.db"
}

// openStore opens the database of a command that writes (run, worker, submit); PostgreSQL retries are
// reported on stderr.
func openStore(db string) (*store.Store, error) {
	st, err := store.Open(db)
	if err != nil {
		return nil, err
	}
	st.Log = os.Stderr
	return st, nil
}

// openExisting opens a database that must exist already: for reading (status, export: never written, never
// migrated), or for a worker, which writes and migrates.
func openExisting(db string, write bool) (*store.Store, error) {
	if err := store.CheckExists(db); err != nil {
		return nil, exitErr{2, err}
	}
	if write {
		return openStore(db)
	}
	return store.OpenForReading(db)
}

// cmdMigrate brings a database to this mimlab's schema (the reading commands never do).
func cmdMigrate(args []string) error {
	fs := flag.NewFlagSet("migrate", flag.ContinueOnError)
	db := fs.String("db", dbDefault(), "results database: a SQLite file, or postgres://user@host/dbname (default $MIMLAB_DB, else results.db)")
	if pos, err := parse(fs, args); err != nil {
		return err
	} else if len(pos) > 0 {
		return exitErr{2, fmt.Errorf("migrate takes no arguments besides --db: %v", pos)}
	}
	st, err := openExisting(*db, true)
	if err != nil {
		return err
	}
	defer st.Close()
	fmt.Fprintf(os.Stderr, "sweep migrate: %s is at this mimlab's schema\n", st.Path)
	return nil
}

func cmdStatus(args []string) error {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	db := fs.String("db", dbDefault(), "results database: a SQLite file, or postgres://user@host/dbname (default $MIMLAB_DB, else results.db)")
	sw := fs.String("sweep", "", "only this sweep")
	full := fs.Bool("full", false, "name trials by every swept key (default: the short name, [sweep] labels or the keys that differ)")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	st, err := openExisting(*db, false)
	if err != nil {
		return err
	}
	defer st.Close()
	r, err := experiment.Status(st, *sw)
	if err != nil {
		return err
	}
	readings := r.Readings()
	head := fmt.Sprintf("%-4s %-8s %-7s %-9s", "id", "state", "step", "loss")
	for _, p := range readings {
		head += fmt.Sprintf(" %-*s", colWidth(p), p)
	}
	fmt.Printf("%s %-9s %s\n", head, "hash", "name")
	for _, t := range r.Trials {
		loss := "-"
		if t.Has {
			loss = fmt.Sprintf("%.4f", t.Loss)
		}
		line := fmt.Sprintf("%-4d %-8s %-7d %-9s", t.ID, t.State, t.Step, loss)
		for _, p := range readings {
			v := "-"
			if x, ok := t.Top1[p]; ok {
				v = fmt.Sprintf("%.4f", x)
			}
			line += fmt.Sprintf(" %-*s", colWidth(p), v)
		}
		name := t.Short
		if *full || name == "" {
			name = t.Name
		}
		fmt.Printf("%s %-9s %s\n", line, experiment.Printable(t.Hash[:min(8, len(t.Hash))]), experiment.Printable(name))
		if len(t.AlongSteps) > 0 {
			fmt.Printf("     probed along training at steps %v\n", t.AlongSteps)
		}
		if n := len(t.Attempts); n > 0 && t.Attempts[n-1].GPU != "" && t.Attempts[n-1].GPU != "none" {
			fmt.Printf("     on %s: %s\n", experiment.Printable(t.Attempts[n-1].Backend), experiment.Printable(t.Attempts[n-1].GPU))
		}
		if l := experiment.AttemptsLine(t.Attempts); l != "" {
			fmt.Printf("     attempts: %s\n", experiment.Printable(l))
		}
		if t.State == store.Failed && t.Error != "" {
			fmt.Printf("     error: %s\n", experiment.Printable(t.Error))
		}
	}
	fmt.Println(r.Summary())
	if r.LinearAtLimit+r.LinearFailed > 0 {
		fmt.Printf("linear probes: %d of the trials' %d readings stopped unconverged (%d at L-BFGS's iteration limit eval.linear_max_iter, %d by a failure of its line search): their accuracy may still move (evals metric lbfgs_converged 0 or -1; the reference rows' are in baselines)\n",
			r.LinearAtLimit+r.LinearFailed, r.LinearFits, r.LinearAtLimit, r.LinearFailed)
	}
	if len(r.Leases) > 0 {
		fmt.Println("running (lease renewed by each heartbeat; expired after 6 missed heartbeats):")
		fmt.Printf("  %-5s %-20s %-8s %-8s %s\n", "id", "host", "pid", "step", "lease age")
		for _, l := range r.Leases {
			fmt.Printf("  %-5d %-20s %-8d %-8d %s\n", l.TrialID, experiment.Printable(l.Host()), l.PID(), l.Step, l.Age().Round(100*time.Millisecond))
		}
	}
	if len(r.References) > 0 {
		fmt.Println("reference rows (same splits):")
		for _, ref := range r.References {
			fmt.Printf("  %-14s %-32s %-18s %.4f\n", ref.Dataset, ref.Arch, ref.Protocol, ref.Value)
		}
	}
	return nil
}

// colWidth is a reading column's width: its name, at least a number's.
func colWidth(name string) int { return max(len(name), 8) }

// exportTable writes one table of the results database as CSV or Parquet (to stdout without -o).
func exportTable(db, table, format, out string, o export.Options) error {
	if !contains(export.Tables, table) {
		return exitErr{2, fmt.Errorf("--table %q: allowed values are %s", table, strings.Join(export.Tables, ", "))}
	}
	if !contains(export.Formats, format) {
		return exitErr{2, fmt.Errorf("--format %q: allowed values are %s", format, strings.Join(export.Formats, ", "))}
	}
	st, err := openExisting(db, false)
	if err != nil {
		return err
	}
	defer st.Close()
	if out == "" {
		if _, err := export.TableWith(st, table, format, os.Stdout, o); err != nil {
			return fmt.Errorf("exporting %s from %s: %w", table, st.Path, err)
		}
		return nil
	}
	// Written to a temporary name and renamed, so a reader never sees half a file.
	var n int
	if err := files.WriteAtomic(out, func(w io.Writer) (err error) {
		n, err = export.TableWith(st, table, format, w, o)
		return err
	}); err != nil {
		return fmt.Errorf("exporting %s from %s: %w", table, st.Path, err)
	}
	fmt.Fprintf(os.Stderr, "wrote %s (%d rows of %s, %s)\n", out, n, table, format)
	return nil
}

func cmdExport(args []string) error {
	fs := flag.NewFlagSet("export", flag.ContinueOnError)
	db := fs.String("db", dbDefault(), "results database: a SQLite file, or postgres://user@host/dbname (default $MIMLAB_DB, else results.db)")
	id := fs.Int64("trial", 0, "trial id (see `sweep status`)")
	weights := fs.String("weights", "", "write the encoder's weights (timm names) to this .safetensors file")
	features := fs.String("features", "", "train or test: write frozen-encoder features")
	out := fs.String("o", "", "output .npy for --features (labels go to <name>_labels.npy)")
	backend := fs.String("backend", "auto", "backend for --features")
	runs := fs.String("runs", "runs", "folder of checkpoints")
	table := fs.String("table", "", "trials, metrics, evals or attempts: write a whole table (with --format and -o)")
	format := fs.String("format", "csv", "csv or parquet, for --table")
	csvExact := fs.Bool("csv-exact", false, "write CSV text cells exactly as stored (default: a cell beginning with = + - @ gets a leading ' so that a spreadsheet does not run it as a formula)")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	if *table != "" {
		return exportTable(*db, *table, *format, *out, export.Options{ExactCSV: *csvExact})
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
	st, err := openExisting(*db, false)
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
	sha, err := st.ArtifactSHA(tr.ID, "checkpoint")
	if err != nil {
		return err
	}
	if sha == "" {
		fmt.Fprintf(os.Stderr, "sweep export: trial %d has no checkpoint sha256 recorded; its checkpoint is exported unverified\n", tr.ID)
	}
	msg, err := experiment.ExportTrial(experiment.NewEnv(be, name, *runs, os.Stderr), tr, experiment.Export{Weights: *weights, Features: *features, Out: *out, CheckpointSHA: sha})
	if err != nil {
		return err
	}
	fmt.Println(msg)
	return nil
}
