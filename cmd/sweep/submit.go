package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"mimlab/experiment"
	"mimlab/framework/launch"
	"mimlab/framework/store"
	"mimlab/nn"
)

// cmdSubmit registers specs in the database and launches their workers on a cluster.
func cmdSubmit(args []string) error {
	fs := flag.NewFlagSet("submit", flag.ContinueOnError)
	var sets, extra multi
	fs.Var(&sets, "set", "override key.path=value")
	fs.Var(&extra, "sbatch-option", "one more #SBATCH line, e.g. --sbatch-option=--qos=short (repeatable)")
	slurm := fs.Bool("slurm", false, "launch the workers as a Slurm array job (the one launcher so far; required)")
	db := fs.String("db", dbDefault(), "results database the workers share: postgres://user@host/dbname (default $MIMLAB_DB)")
	runs := fs.String("runs", "runs", "runs folder on a file system every node mounts (checkpoints, exports, job logs)")
	parallel := fs.Int("array-parallel", 4, "array tasks (workers) running at once")
	tasks := fs.Int("array-size", 0, "array tasks in all (default: the trials left to run, at most 1000)")
	partition := fs.String("partition", "", "Slurm partition")
	account := fs.String("account", "", "Slurm account")
	timeLimit := fs.String("time", "", "time limit of each task (Slurm format: 30, 1:00:00, 2-00:00:00)")
	cpus := fs.Int("cpus-per-task", 2, "CPUs per task")
	gpus := fs.Int("gpus-per-task", 0, "GPUs per task (then the workers run with --device cuda)")
	device := fs.String("device", "", "cpu or cuda (default: cuda when --gpus-per-task > 0)")
	backend := fs.String("backend", "auto", "auto, ort, go or xla")
	dryRun := fs.Bool("dry-run", false, "print the sbatch script; register nothing, submit nothing")
	sbatch := fs.String("sbatch", "sbatch", "the sbatch command")
	files, err := parse(fs, args)
	if err != nil {
		return err
	}
	switch {
	case !*slurm:
		return exitErr{2, fmt.Errorf("submit needs a launcher: --slurm (an sbatch array job of `sweep worker`s)")}
	case *parallel < 1:
		return exitErr{2, fmt.Errorf("--array-parallel %d: must be >= 1", *parallel)}
	case *tasks < 0 || *tasks > 100000:
		return exitErr{2, fmt.Errorf("--array-size %d: must be in [1, 100000] (0 = the trials left)", *tasks)}
	case *cpus < 1 || *gpus < 0:
		return exitErr{2, fmt.Errorf("--cpus-per-task %d, --gpus-per-task %d: need >= 1 CPU and >= 0 GPUs", *cpus, *gpus)}
	case !contains(nn.Backends, *backend):
		return exitErr{2, fmt.Errorf("--backend %q: allowed values are %s", *backend, strings.Join(nn.Backends, ", "))}
	}
	dev := *device
	if dev == "" {
		dev = map[bool]string{true: "cuda", false: "cpu"}[*gpus > 0]
	}
	if dev != "cpu" && dev != "cuda" {
		return exitErr{2, fmt.Errorf("--device %q: allowed values are cpu, cuda", dev)}
	}
	ps, err := plan(files, sets)
	if err != nil {
		return err
	}
	absRuns, err := filepath.Abs(*runs)
	if err != nil {
		return err
	}
	bin, err := os.Executable()
	if err != nil {
		return err
	}
	if strings.Contains(bin, string(filepath.Separator)+"go-build") {
		fmt.Fprintf(os.Stderr, "sweep submit: this binary (%s) is a `go run` temporary that the nodes will not find: build one on the shared file system (go build -buildvcs=true -o /shared/bin/sweep ./cmd/sweep: the flag stamps the commit into it for the trials' provenance) and submit with it\n", bin)
	}
	dbArg := *db
	if store.IsURL(dbArg) && store.Redact(dbArg) != dbArg {
		// The job inherits MIMLAB_DB, and Slurm keeps a job's environment in its state files and shows it to
		// administrators: a password in the URL would be stored there.
		fmt.Fprintf(os.Stderr, "sweep submit: --db %s holds a password, which Slurm stores with the job's environment: put it in ~/.pgpass on the nodes (or PGPASSFILE) and drop it from the URL\n", store.Redact(dbArg))
	}
	if !store.IsURL(dbArg) {
		if dbArg, err = filepath.Abs(dbArg); err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "sweep submit: --db %s is a SQLite file: workers on several hosts need it on a shared file system whose locks work; PostgreSQL (--db postgres://...) is the safe choice for a cluster\n", dbArg)
	}
	job := launch.SlurmJob{Parallel: *parallel, Partition: *partition, Account: *account, Time: *timeLimit, CPUsPerTask: *cpus,
		GPUsPerTask: *gpus, Binary: bin, Runs: absRuns, Device: dev, Backend: *backend, Extra: extra}
	for _, p := range ps {
		job.Sweeps = append(job.Sweeps, p.Raw.Name)
	}
	// Every value that reaches the script is checked before anything is registered: a refused flag leaves
	// the database as it was.
	if err := job.Validate(); err != nil {
		return exitErr{2, fmt.Errorf("sweep submit: %w", err)}
	}
	var sbatchPath string
	if !*dryRun { // before anything is registered: a host without Slurm leaves the database as it was
		if sbatchPath, err = exec.LookPath(*sbatch); err != nil {
			return fmt.Errorf("%s not found on PATH: run submit on a Slurm login node (or print the script with --dry-run): %w", *sbatch, err)
		}
	}
	var names []string
	left := 0
	if *dryRun {
		for _, p := range ps {
			names = append(names, p.Raw.Name)
			left += len(p.Trials)
		}
	} else {
		st, err := openStore(dbArg)
		if err != nil {
			return err
		}
		res, err := experiment.RunSpecs(context.Background(), st, ps, experiment.RunOptions{RegisterOnly: true, Runs: absRuns, Log: os.Stderr})
		st.Close()
		if err != nil {
			return err
		}
		for _, s := range res.Sweeps {
			names = append(names, s.Name)
			left += s.Left
		}
	}
	job.Sweeps = names
	job.Tasks = *tasks
	if job.Tasks == 0 {
		job.Tasks = min(max(left, 1), 1000)
	}
	job.Parallel = min(job.Parallel, job.Tasks)
	now := time.Now()
	text, err := job.Script(now)
	if err != nil {
		return exitErr{2, fmt.Errorf("sweep submit: %w", err)}
	}
	if *dryRun {
		fmt.Print(text)
		return nil
	}
	if left == 0 {
		fmt.Fprintf(os.Stderr, "sweep submit: every trial of %s is done; nothing to submit\n", strings.Join(job.Sweeps, ","))
		return nil
	}
	if err := os.MkdirAll(job.LogDir(), 0o755); err != nil {
		return err
	}
	scriptPath := filepath.Join(job.LogDir(), job.ScriptName(now))
	if err := os.WriteFile(scriptPath, []byte(text), 0o644); err != nil {
		return err
	}
	cmd := exec.Command(sbatchPath, "--parsable", scriptPath)
	cmd.Env = append(os.Environ(), "MIMLAB_DB="+dbArg)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return fmt.Errorf("sbatch refused the job (exit %d): %s (script: %s; the trials stay registered, pending, for another submit or `sweep run`)", ee.ExitCode(), strings.TrimSpace(errOut.String()), scriptPath)
		}
		return fmt.Errorf("running sbatch: %w", err)
	}
	id := strings.TrimSpace(strings.Split(strings.TrimSpace(out.String()), ";")[0])
	if _, err := strconv.Atoi(id); err != nil {
		return fmt.Errorf("sbatch answered %q, not a job id (script: %s)", out.String(), scriptPath)
	}
	fmt.Println(id)
	fmt.Fprintf(os.Stderr, "sweep submit: job %s: %d array tasks, %d at once, for %d trials of %s (script %s; logs %s; watch with squeue -j %s and sweep status --db ...)\n",
		id, job.Tasks, job.Parallel, left, strings.Join(job.Sweeps, ","), scriptPath, job.LogDir(), id)
	return nil
}
