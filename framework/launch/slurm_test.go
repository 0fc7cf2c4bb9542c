package launch

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode"
)

// sbatchOptions reads a script's #SBATCH options the way sbatch 22.05 does (src/sbatch/opt.c,
// _opt_batch_script and _get_argument): lines that start with "#SBATCH" until the first line that is not a
// comment; several arguments per line, separated by white space; a backslash keeps the next character; single
// or double quotes group; an unquoted '#' ends the line.
func sbatchOptions(script string) []string {
	var args []string
	for _, line := range strings.Split(script, "\n") {
		rest, ok := strings.CutPrefix(line, "#SBATCH")
		if !ok {
			if t := strings.TrimLeftFunc(line, unicode.IsSpace); t != "" && t[0] != '#' {
				break
			}
			continue
		}
		for {
			rest = strings.TrimLeftFunc(rest, unicode.IsSpace)
			if rest == "" || rest[0] == '#' {
				break
			}
			var arg strings.Builder
			var q byte
			escape, i := false, 0
			for ; i < len(rest) && (q != 0 || !unicode.IsSpace(rune(rest[i]))); i++ {
				c := rest[i]
				switch {
				case escape:
					escape = false
				case c == '\\':
					escape = true
					continue
				case q != 0:
					if c == q {
						q = 0
						continue
					}
				case c == '"' || c == '\'':
					q = c
					continue
				case c == '#':
					rest = ""
				}
				if rest == "" {
					break
				}
				arg.WriteByte(c)
			}
			args = append(args, arg.String())
			if rest == "" {
				break
			}
			rest = rest[i:]
		}
	}
	return args
}

func base() SlurmJob {
	return SlurmJob{Sweeps: []string{"tiny"}, Tasks: 3, Parallel: 2, CPUsPerTask: 1, Binary: "/shared/bin/sweep",
		Runs: "/shared/runs", Device: "cpu", Backend: "go"}
}

// Every flag, hostile or ordinary: the script's #SBATCH options, read the way sbatch reads them, are exactly
// mimlab's own with the given values, or the flag is refused with its name.
func TestScriptCarriesEachValueExactly(t *testing.T) {
	own := func(j SlurmJob, extra ...string) []string {
		o := []string{"--job-name=" + j.JobName(), "--array=0-2%2", "--cpus-per-task=1"}
		o = append(o, extra...)
		return o
	}
	cases := []struct {
		name   string
		edit   func(*SlurmJob)
		want   []string // the options between --cpus-per-task and --output, then after --export
		output string   // the --output value sbatch reads
		after  []string
		err    string // the refused flag, if refused
	}{
		{name: "ordinary", edit: func(*SlurmJob) {}},
		{name: "partition", edit: func(j *SlurmJob) { j.Partition = "gpu,cpu" }, want: []string{"--partition=gpu,cpu"}},
		{name: "partition with a newline", edit: func(j *SlurmJob) { j.Partition = "gpu\n#SBATCH --hold" }, err: "--partition"},
		{name: "partition with a space", edit: func(j *SlurmJob) { j.Partition = "gpu --hold" }, err: "--partition"},
		{name: "account", edit: func(j *SlurmJob) { j.Account = "lab_1.x" }, want: []string{"--account=lab_1.x"}},
		{name: "account with a newline", edit: func(j *SlurmJob) { j.Account = "lab\n#SBATCH --hold" }, err: "--account"},
		{name: "account with a comment", edit: func(j *SlurmJob) { j.Account = "lab#x" }, err: "--account"},
		{name: "time", edit: func(j *SlurmJob) { j.Time = "1-02:00:00" }, want: []string{"--time=1-02:00:00"}},
		{name: "time with an option", edit: func(j *SlurmJob) { j.Time = "10 --hold" }, err: "--time"},
		{name: "runs with a space", edit: func(j *SlurmJob) { j.Runs = "/shared/my runs" }, output: "/shared/my runs/slurm/%A_%a.out"},
		{name: "runs with quotes, # and a percent", edit: func(j *SlurmJob) { j.Runs = `/s/"a'#b %x` },
			output: `/s/"a'#b %%x/slurm/%A_%a.out`},
		{name: "runs with an option", edit: func(j *SlurmJob) { j.Runs = "/s/x --hold" }, output: "/s/x --hold/slurm/%A_%a.out"},
		{name: "runs with a newline", edit: func(j *SlurmJob) { j.Runs = "/s/x\n#SBATCH --hold" }, err: "--runs"},
		{name: "runs with a backslash", edit: func(j *SlurmJob) { j.Runs = `/s/x\y` }, err: "--runs"},
		{name: "relative runs", edit: func(j *SlurmJob) { j.Runs = "runs" }, err: "--runs"},
		{name: "sweep name with options", edit: func(j *SlurmJob) { j.Sweeps = []string{"x --comment=a --hold"} }},
		{name: "sweep name with a slash", edit: func(j *SlurmJob) { j.Sweeps = []string{"cae/pixel"} }},
		{name: "sweep name with a comma", edit: func(j *SlurmJob) { j.Sweeps = []string{"a,b"} }, err: "comma"},
		{name: "sweep name with a newline", edit: func(j *SlurmJob) { j.Sweeps = []string{"a\n#SBATCH --hold"} }, err: "control character"},
		{name: "sweep name with packjob", edit: func(j *SlurmJob) { j.Sweeps = []string{"my packjob"} }, err: "packjob"},
		{name: "extra option", edit: func(j *SlurmJob) { j.Extra = []string{"--qos=short", "--exclusive"} },
			after: []string{"--qos=short", "--exclusive"}},
		{name: "extra option with spaces and #", edit: func(j *SlurmJob) { j.Extra = []string{"--comment=a b #c --hold"} },
			after: []string{"--comment=a b #c --hold"}},
		{name: "extra option with a newline", edit: func(j *SlurmJob) { j.Extra = []string{"--qos=a\n#SBATCH --hold"} }, err: "--sbatch-option"},
		{name: "extra words", edit: func(j *SlurmJob) { j.Extra = []string{"--qos short"} }, err: "--sbatch-option"},
		{name: "extra array", edit: func(j *SlurmJob) { j.Extra = []string{"--array=0-9"} }, err: "--array-size"},
		{name: "extra output", edit: func(j *SlurmJob) { j.Extra = []string{"-o=/tmp/x"} }, err: "--runs"},
		{name: "device", edit: func(j *SlurmJob) { j.Device = "cpu --hold" }, err: "--device"},
		{name: "backend", edit: func(j *SlurmJob) { j.Backend = "go; rm" }, err: "--backend"},
	}
	now := time.Date(2026, 12, 4, 0, 0, 0, 0, time.UTC)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			j := base()
			c.edit(&j)
			text, err := j.Script(now)
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("error %v, want one naming %s; script:\n%s", err, c.err, text)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			out := c.output
			if out == "" {
				out = j.Runs + "/slurm/%A_%a.out"
			}
			want := append(own(j, c.want...), "--output="+out, "--export=ALL")
			want = append(want, c.after...)
			if got := sbatchOptions(text); !reflect.DeepEqual(got, want) {
				t.Errorf("sbatch reads\n%q\nwant\n%q\nscript:\n%s", got, want, text)
			}
			if strings.ContainsAny(j.ScriptName(now), "/ \n") || !strings.HasPrefix(j.JobName(), "mimlab-") {
				t.Errorf("script file %q, job %q: want one path element", j.ScriptName(now), j.JobName())
			}
			// The shell line gives the worker the sweeps' exact names and the runs folder as one word each.
			last := text[strings.LastIndex(strings.TrimSuffix(text, "\n"), "\n")+1:]
			for _, w := range []string{ShellQuote(j.Runs), ShellQuote(strings.Join(j.Sweeps, ","))} {
				if !strings.Contains(last, " "+w+" ") {
					t.Errorf("the worker line lacks %s:\n%s", w, last)
				}
			}
		})
	}
}

// The errors name the flag as a *FlagError, so a caller can exit 2 on them.
func TestFlagErrorType(t *testing.T) {
	j := base()
	j.Partition = "a b"
	var fe *FlagError
	if err := j.Validate(); !errors.As(err, &fe) || fe.Flag != "partition" {
		t.Fatalf("%v: want a *FlagError for partition", err)
	}
}

// The test's reader agrees with sbatch on the cases the encoding relies on.
func TestSbatchOptionsReader(t *testing.T) {
	cases := map[string][]string{
		"#SBATCH --a=1 --b":                {"--a=1", "--b"},
		`#SBATCH --a=x\ y --b`:             {"--a=x", "y", "--b"}, // a backslash does not protect a space
		`#SBATCH --a="x\"y\\" --b`:         {`--a=x"y\`, "--b"},
		`#SBATCH --a="x y" #c`:             {"--a=x y"},
		`#SBATCH --a=x\#y`:                 {"--a=x#y"},
		"#SBATCH --a\nset -e\n#SBATCH --b": {"--a"},
	}
	for in, want := range cases {
		if got := sbatchOptions(in); !reflect.DeepEqual(got, want) {
			t.Errorf("%q: %q, want %q", in, got, want)
		}
	}
}
