// Package launch starts mimlab's workers elsewhere: an sbatch script for a Slurm array job whose every task
// is one `sweep worker`.
//
// Every value that reaches an `#SBATCH` line, the script's shell line or a file name goes through this
// package: a flag with a documented syntax (partition, account, time, extra options) is validated against
// it and refused with the flag's name, and a free-form value (the runs folder, the job name, an extra
// option's value) is encoded so that sbatch reads exactly that value back. It must never write a value raw:
// sbatch reads several options from one `#SBATCH` line, so a space, a quote or a `#` in a name would add or
// cut options, and a newline would add a line.
package launch

import (
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// SlurmJob is what an sbatch script for a sweep's workers says.
type SlurmJob struct {
	Sweeps                   []string // the sweep names the workers claim trials of
	Tasks, Parallel          int      // array size, tasks at once
	Partition, Account, Time string
	CPUsPerTask, GPUsPerTask int
	Binary, Runs             string // the sweep binary and the runs folder (absolute paths)
	Device, Backend          string
	Extra                    []string // more #SBATCH options (--name or --name=value), one per line
}

// FlagError says which flag of `sweep submit` a value came from and what is allowed.
type FlagError struct {
	Flag, Value, Want string
}

func (e *FlagError) Error() string { return fmt.Sprintf("--%s %q: %s", e.Flag, e.Value, e.Want) }

var (
	// Slurm's own names: partitions (a comma-separated list is a choice among them) and accounts.
	partitionRE = regexp.MustCompile(`^[A-Za-z0-9_.-]+(,[A-Za-z0-9_.-]+)*$`)
	accountRE   = regexp.MustCompile(`^[A-Za-z0-9_.-]+$`)
	timeRE      = regexp.MustCompile(`^(\d+-)?\d+(:\d+){0,2}$`)
	optionRE    = regexp.MustCompile(`^(--[a-z][a-z0-9-]*|-[A-Za-z])(=(.*))?$`)
	// Options the script sets itself: an extra one would take the workers' array, log or environment away.
	arrayFlags = "use --array-size and --array-parallel"
	logFlags   = "use --runs (the tasks' logs go to RUNS/slurm)"
	nameFlags  = "the job is named after its sweeps"
	ownOptions = map[string]string{"--array": arrayFlags, "-a": arrayFlags, "--output": logFlags, "-o": logFlags,
		"--error": logFlags, "-e": logFlags, "--job-name": nameFlags, "-J": nameFlags,
		"--export": "the tasks must inherit MIMLAB_DB from the submitting environment"}
	devices  = []string{"cpu", "cuda"}
	maxValue = 4096
)

// Validate checks every flag value against the syntax Slurm gives it; the error names the flag.
func (j SlurmJob) Validate() error {
	var errs []error
	check := func(flag, v string, ok bool, want string) {
		if !ok {
			errs = append(errs, &FlagError{flag, v, want})
		}
	}
	check("partition", j.Partition, j.Partition == "" || partitionRE.MatchString(j.Partition) && len(j.Partition) <= 256,
		"want a Slurm partition name or a comma-separated list of them (letters, digits, _ . -)")
	check("account", j.Account, j.Account == "" || accountRE.MatchString(j.Account) && len(j.Account) <= 256,
		"want a Slurm account name (letters, digits, _ . -)")
	check("time", j.Time, j.Time == "" || timeRE.MatchString(j.Time), "want minutes, MM:SS, HH:MM:SS or D-HH:MM:SS")
	check("device", j.Device, contains(devices, j.Device), "allowed values are cpu, cuda")
	check("backend", j.Backend, regexp.MustCompile(`^[a-z]+$`).MatchString(j.Backend), "want a backend name")
	if err := freeText(j.Runs); err != nil || !filepath.IsAbs(j.Runs) || strings.Contains(j.Runs, `\`) {
		if err == nil {
			err = errors.New("want an absolute path without a backslash (Slurm's file name patterns treat it as an escape)")
		}
		errs = append(errs, &FlagError{"runs", j.Runs, err.Error()})
	}
	if err := freeText(j.Binary); err != nil || !filepath.IsAbs(j.Binary) {
		errs = append(errs, fmt.Errorf("the sweep binary %q: want an absolute path of printable characters", j.Binary))
	}
	for _, e := range j.Extra {
		m := optionRE.FindStringSubmatch(e)
		switch {
		case m == nil:
			errs = append(errs, &FlagError{"sbatch-option", e, "want one sbatch option: --name or --name=value (--qos=short)"})
		case ownOptions[m[1]] != "":
			errs = append(errs, &FlagError{"sbatch-option", e, fmt.Sprintf("the script sets %s itself: %s", m[1], ownOptions[m[1]])})
		default:
			if err := freeText(m[3]); err != nil {
				errs = append(errs, &FlagError{"sbatch-option", e, err.Error()})
			}
		}
	}
	if len(j.Sweeps) == 0 {
		errs = append(errs, errors.New("no sweep to run"))
	}
	for _, s := range j.Sweeps {
		if err := freeText(s); err != nil || strings.Contains(s, ",") || s == "" {
			if err == nil {
				err = errors.New("a comma separates sweeps in `sweep worker --sweep`")
			}
			errs = append(errs, fmt.Errorf("sweep name %q: %w", s, err))
		}
	}
	return errors.Join(errs...)
}

// freeText refuses what no encoding can carry on one line: control characters (a newline ends the
// #SBATCH line), bidirectional overrides, invalid UTF-8, and sbatch's "packjob"/"hetjob", which it acts
// on anywhere in a line before parsing it.
func freeText(s string) error {
	if len(s) > maxValue {
		return fmt.Errorf("longer than %d bytes", maxValue)
	}
	if !utf8.ValidString(s) {
		return errors.New("not valid UTF-8")
	}
	for _, r := range s {
		if unicode.IsControl(r) || unicode.Is(unicode.Bidi_Control, r) || r == '\u2028' || r == '\u2029' {
			return fmt.Errorf("contains the control character %U", r)
		}
	}
	for _, w := range []string{"packjob", "hetjob"} {
		if strings.Contains(strings.ToLower(s), w) {
			return fmt.Errorf("contains %q, which sbatch takes for a heterogeneous job's separator wherever it is on a line", w)
		}
	}
	return nil
}

// JobName is the job's name for its sweeps: the names with anything outside [A-Za-z0-9_.+-] replaced by
// '_', so that it is one word on its #SBATCH line and one path element in a file name. It is cosmetic
// (squeue shows it); the workers are told the sweeps' exact names on their command line.
func (j SlurmJob) JobName() string {
	name := "mimlab-" + strings.Join(j.Sweeps, "+")
	name = strings.ReplaceAll(name, "@", "-r")
	name = strings.Map(func(r rune) rune {
		if r < 128 && (unicode.IsLetter(r) || unicode.IsDigit(r) || strings.ContainsRune("_.+-", r)) {
			return r
		}
		return '_'
	}, name)
	if len(name) > 128 {
		name = name[:128]
	}
	return name
}

// ScriptName is the file name the script is kept under in the log folder.
func (j SlurmJob) ScriptName(now time.Time) string {
	return fmt.Sprintf("%s-%s.sbatch", j.JobName(), now.Format("20060102-150405"))
}

// LogDir is where the script and the tasks' logs are kept: RUNS/slurm.
func (j SlurmJob) LogDir() string { return filepath.Join(j.Runs, "slurm") }

// Script validates the job and renders its sbatch script: an array job whose every task runs `sweep worker`
// against the database. The database URL is not written into it: the job inherits MIMLAB_DB from the
// submitting environment.
func (j SlurmJob) Script(now time.Time) (string, error) {
	if err := j.Validate(); err != nil {
		return "", err
	}
	if j.Tasks < 1 || j.Parallel < 1 || j.CPUsPerTask < 1 || j.GPUsPerTask < 0 {
		return "", fmt.Errorf("array of %d tasks, %d at once, %d CPUs and %d GPUs each: need >= 1 task, >= 1 at once, >= 1 CPU", j.Tasks, j.Parallel, j.CPUsPerTask, j.GPUsPerTask)
	}
	sweeps := strings.Join(j.Sweeps, ",")
	var b strings.Builder
	b.WriteString("#!/bin/bash\n")
	fmt.Fprintf(&b, "# mimlab workers for sweep %s, written by `sweep submit --slurm` on %s.\n", sweeps, now.Format(time.RFC3339))
	b.WriteString("# Each array task is one `sweep worker`: it claims trials from the database until none is left, so a\n")
	b.WriteString("# task that starts when the sweep is finished exits at once. Results: `sweep status --db $MIMLAB_DB`.\n")
	line := func(opt, value string) { fmt.Fprintf(&b, "#SBATCH %s=%s\n", opt, SbatchValue(value)) }
	line("--job-name", j.JobName())
	line("--array", fmt.Sprintf("0-%d%%%d", j.Tasks-1, j.Parallel))
	line("--cpus-per-task", fmt.Sprint(j.CPUsPerTask))
	if j.GPUsPerTask > 0 {
		line("--gpus-per-task", fmt.Sprint(j.GPUsPerTask))
	}
	if j.Partition != "" {
		line("--partition", j.Partition)
	}
	if j.Account != "" {
		line("--account", j.Account)
	}
	if j.Time != "" {
		line("--time", j.Time)
	}
	line("--output", FilePattern(j.LogDir())+"/%A_%a.out")
	b.WriteString("#SBATCH --export=ALL\n")
	for _, e := range j.Extra {
		m := optionRE.FindStringSubmatch(e)
		if m[2] == "" {
			fmt.Fprintf(&b, "#SBATCH %s\n", m[1])
		} else {
			line(m[1], m[3])
		}
	}
	b.WriteString("set -eu\n")
	b.WriteString(": \"${MIMLAB_DB:?the job needs MIMLAB_DB (the results database), exported when it is submitted}\"\n")
	fmt.Fprintf(&b, "exec %s worker --db \"$MIMLAB_DB\" --runs %s --sweep %s --device %s --backend %s\n",
		ShellQuote(j.Binary), ShellQuote(j.Runs), ShellQuote(sweeps), ShellQuote(j.Device), ShellQuote(j.Backend))
	return b.String(), nil
}

// SbatchValue encodes v as one argument of an #SBATCH line. sbatch's parser splits a line at white space
// outside quotes (a backslash does not protect a space), ends it at an unquoted '#', and inside double quotes
// keeps everything but a backslash, which keeps the character after it. So a value with anything outside a
// small safe set is double-quoted with its backslashes and double quotes escaped. v must have passed
// freeText (no control characters).
func SbatchValue(v string) string {
	if plainWord.MatchString(v) {
		return v
	}
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(v) + `"`
}

// FilePattern escapes a path for Slurm's file name patterns (--output), where '%' starts a replacement
// symbol and "%%" is a literal '%'.
func FilePattern(path string) string { return strings.ReplaceAll(path, "%", "%%") }

var plainWord = regexp.MustCompile(`^[A-Za-z0-9_./:@%+=,-]+$`)

// ShellQuote quotes s as one bash word.
func ShellQuote(s string) string {
	if plainWord.MatchString(s) {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if x == y {
			return true
		}
	}
	return false
}
