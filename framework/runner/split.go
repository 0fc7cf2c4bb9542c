package runner

import (
	"fmt"
	"runtime"
	"strconv"
	"strings"
)

// Split is how a sweep shares the machine: trials in parallel (workers) and compute threads per trial.
type Split struct {
	Workers, Threads int
	// Why says what was picked and from what, for the log.
	Why string
}

// Cores is the number of CPUs this process may use (its affinity mask and cgroup quota, as GOMAXPROCS
// reads them).
func Cores() int { return runtime.GOMAXPROCS(0) }

// ParseJobs reads -j: "auto" (or "") is 0, else an integer >= 1.
func ParseJobs(s string) (int, error) {
	if s == "" || strings.EqualFold(s, "auto") {
		return 0, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		return 0, fmt.Errorf("-j %q: allowed values are auto or an integer >= 1", s)
	}
	return n, nil
}

// Choose picks the split for left trials on cores CPUs. jobs (-j) and threads (--threads) of 0 mean
// auto. Auto workers: one per core, at most one per trial left (one on a GPU, which the trials would
// share). Auto threads: the cores divided among the workers (at least 1), so the threads of all trials
// together never exceed the cores (ONNX Runtime's own default is one thread per core for every trial,
// which oversubscribes a machine running several). BENCHMARKS.md "Whole sweeps" has the measurements.
func Choose(cores, jobs, threads, left int, gpu bool) Split {
	cores = max(cores, 1)
	left = max(left, 1)
	w, how := jobs, fmt.Sprintf("-j %d", jobs)
	if jobs == 0 {
		how = "-j auto"
		w = min(cores, left)
		if gpu {
			w = 1
		}
	}
	if w > left {
		w = left
	}
	t := threads
	if t == 0 {
		t = max(1, cores/w)
	}
	s := Split{Workers: w, Threads: t}
	s.Why = fmt.Sprintf("%s: %d %s x %d %s each (%d cores, %d %s left)", how, w, plural(w, "worker", "workers"),
		t, plural(t, "thread", "threads"), cores, left, plural(left, "trial", "trials"))
	if gpu {
		s.Why = fmt.Sprintf("%s: %d %s on the GPU (%d %s left)", how, w, plural(w, "worker", "workers"), left, plural(left, "trial", "trials"))
	}
	if w*t > cores && !gpu {
		s.Why += fmt.Sprintf("; %d threads in all on %d cores: trials will compete for them", w*t, cores)
	}
	return s
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
