package runner

import (
	"strings"
	"testing"
)

func TestChoose(t *testing.T) {
	for _, c := range []struct {
		name                       string
		cores, jobs, threads, left int
		gpu                        bool
		workers, wantThreads       int
		why                        string
	}{
		{"auto, many trials, 2 cores", 2, 0, 0, 18, false, 2, 1, "-j auto: 2 workers x 1 thread each (2 cores, 18 trials left)"},
		{"auto, one trial gets every core", 2, 0, 0, 1, false, 1, 2, "-j auto: 1 worker x 2 threads each (2 cores, 1 trial left)"},
		{"auto, 16 cores, 6 trials", 16, 0, 0, 6, false, 6, 2, "6 workers x 2 threads"},
		{"auto on a GPU: one worker", 16, 0, 0, 6, true, 1, 16, "1 worker on the GPU"},
		{"explicit -j capped at the trials left", 8, 4, 0, 3, false, 3, 2, "-j 4: 3 workers x 2 threads"},
		{"explicit -j and threads", 2, 1, 2, 9, false, 1, 2, "-j 1: 1 worker x 2 threads"},
		{"oversubscribed says so", 2, 2, 2, 9, false, 2, 2, "4 threads in all on 2 cores"},
		{"no cores reported", 0, 0, 0, 5, false, 1, 1, "1 worker x 1 thread"},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := Choose(c.cores, c.jobs, c.threads, c.left, c.gpu)
			if s.Workers != c.workers || s.Threads != c.wantThreads {
				t.Errorf("Choose(%d cores, -j %d, threads %d, %d left) = %d workers x %d threads, want %d x %d",
					c.cores, c.jobs, c.threads, c.left, s.Workers, s.Threads, c.workers, c.wantThreads)
			}
			if !strings.Contains(s.Why, c.why) {
				t.Errorf("Why = %q, want it to contain %q", s.Why, c.why)
			}
		})
	}
}

func TestParseJobs(t *testing.T) {
	for _, c := range []struct {
		in   string
		want int
		err  bool
	}{{"auto", 0, false}, {"", 0, false}, {"AUTO", 0, false}, {"3", 3, false}, {"0", 0, true}, {"-1", 0, true}, {"two", 0, true}} {
		got, err := ParseJobs(c.in)
		if (err != nil) != c.err || got != c.want {
			t.Errorf("ParseJobs(%q) = %d, %v; want %d, error %v", c.in, got, err, c.want, c.err)
		}
		if err != nil && !strings.Contains(err.Error(), "auto") {
			t.Errorf("ParseJobs(%q) error %q does not list the allowed values", c.in, err)
		}
	}
}
