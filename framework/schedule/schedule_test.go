package schedule

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

func cfg(name string) *Config {
	return &Config{Name: name, Metric: "knn", Mode: "max", Rungs: []int{100, 300, 900}, Eta: 3}
}

func build(t *testing.T, name string) Scheduler {
	t.Helper()
	s, err := Registry.Build(name, nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// arrive adds one configuration's reading (all its seeds) at rung r and returns what the scheduler decides.
type sim struct {
	c  *Config
	s  Scheduler
	st State
}

func newSim(t *testing.T, name string, configs []string, seeds int) *sim {
	st := State{Configs: configs, Seeds: map[string]int{}, Readings: map[string]map[int][]float64{}}
	for _, x := range configs {
		st.Seeds[x] = seeds
		st.Readings[x] = map[int][]float64{}
	}
	return &sim{c: cfg(name), s: build(t, name), st: st}
}

func (m *sim) read(cfg string, r int, v ...float64) []Decision {
	m.st.Readings[cfg][r] = append(m.st.Readings[cfg][r], v...)
	ds := m.s.Decide(m.c, m.st)
	m.st.Decided = append(m.st.Decided, ds...)
	return ds
}

func (m *sim) final() []Decision {
	m.st.Final = true
	ds := m.s.Decide(m.c, m.st)
	m.st.Decided = append(m.st.Decided, ds...)
	return ds
}

func short(ds []Decision) string {
	var out []string
	for _, d := range ds {
		out = append(out, fmt.Sprintf("%s@%d:%s", d.Config, d.Rung, d.Action))
	}
	return strings.Join(out, " ")
}

// ASHA at each arrival (eta 3, 9 configurations, one seed): nothing is promoted until three have reached a
// rung; then the best of those three goes on; the sixth arrival allows a second promotion; ties go to the
// configuration first in the sweep; at the end the rest are stopped with the reason.
func TestASHAArrivals(t *testing.T) {
	configs := []string{"a", "b", "c", "d", "e", "f", "g", "h", "i"}
	m := newSim(t, "asha", configs, 1)
	steps := []struct {
		cfg  string
		rung int
		v    float64
		want string
	}{
		{"a", 0, 0.5, ""},
		{"b", 0, 0.7, ""},
		{"c", 0, 0.6, "b@0:promote"}, // 3 at rung 0: floor(3/3) = 1, the best is b
		{"d", 0, 0.9, "d@0:promote"}, // 4: the top one is now d
		{"e", 0, 0.1, ""},            // 5: still d
		{"f", 0, 0.65, ""},           // 6: the top two, d and b, are promoted already
		{"b", 1, 0.8, ""},            // rung 1 holds one: floor(1/3) = 0
		{"d", 1, 0.85, ""},
		{"g", 0, 0.7, ""},             // 7: top two d, b (g ties b at 0.7; b is first in the sweep)
		{"h", 0, 0.95, "h@0:promote"}, // 8: top two h, d: h is new
		{"h", 1, 0.9, "h@1:promote"},  // rung 1 holds b, d, h: the best, h, goes to the last rung
		{"i", 0, 0.2, ""},             // 9: top three h, d, b, all promoted
	}
	for i, s := range steps {
		got := short(m.read(s.cfg, s.rung, s.v))
		if got != s.want {
			t.Fatalf("step %d (%s at rung %d = %v): decisions %q, want %q", i, s.cfg, s.rung, s.v, got, s.want)
		}
	}
	fin := m.final()
	var stopped []string
	for _, d := range fin {
		if d.Action != Stop {
			t.Fatalf("final decision %+v is not a stop", d)
		}
		stopped = append(stopped, fmt.Sprintf("%s@%d", d.Config, d.Rung))
	}
	slices.Sort(stopped)
	if want := []string{"a@0", "b@1", "c@0", "d@1", "e@0", "f@0", "g@0", "i@0"}; !slices.Equal(stopped, want) {
		t.Fatalf("stopped %v, want %v", stopped, want)
	}
	for _, d := range fin {
		if d.Config == "e" && d.Reason != "stopped at step 100: knn 0.1, rank 9 of 9 at this rung, top 3 promoted" {
			t.Fatalf("reason %q", d.Reason)
		}
	}
}

// getJob is a direct transcription of ASHA's get_job (Li et al. 2020, Algorithm 2) for promotions: from the
// highest rung down, the first configuration in top_k(rung k, floor(|rung k| / eta)) not yet promoted.
func getJob(c *Config, rungs []map[string]float64, order map[string]int, promoted []map[string]bool) (string, int, bool) {
	for k := len(c.Rungs) - 2; k >= 0; k-- {
		var names []string
		for n := range rungs[k] {
			names = append(names, n)
		}
		slices.SortFunc(names, func(a, b string) int {
			if rungs[k][a] != rungs[k][b] {
				if rungs[k][a] > rungs[k][b] {
					return -1
				}
				return 1
			}
			return order[a] - order[b]
		})
		for _, n := range names[:len(names)/c.Eta] {
			if !promoted[k][n] {
				return n, k, true
			}
		}
	}
	return "", 0, false
}

// For random readings arriving in random orders (ties included, two seeds per configuration), the
// scheduler's promotions are the transcription's, in the same order.
func TestASHAMatchesTheTranscription(t *testing.T) {
	for trial := 0; trial < 200; trial++ {
		r := rand.New(rand.NewPCG(uint64(trial), 7))
		nc := 3 + r.IntN(25)
		var configs []string
		order := map[string]int{}
		for i := 0; i < nc; i++ {
			configs = append(configs, fmt.Sprintf("c%02d", i))
			order[configs[i]] = i
		}
		m := newSim(t, "asha", configs, 2)
		value := func() float64 { return float64(r.IntN(6)) / 5 } // few values: ties
		rungs := []map[string]float64{{}, {}, {}}
		promoted := []map[string]bool{{}, {}, {}}
		// pending arrivals: (config, rung, seed values)
		type arrival struct {
			cfg  string
			rung int
			vals []float64
		}
		var pending []arrival
		for _, x := range configs {
			pending = append(pending, arrival{x, 0, []float64{value(), value()}})
		}
		var got, want []string
		for len(pending) > 0 {
			i := r.IntN(len(pending))
			a := pending[i]
			pending = append(pending[:i], pending[i+1:]...)
			// the two seeds arrive one after the other: only the second completes the configuration
			m.read(a.cfg, a.rung, a.vals[0])
			ds := m.read(a.cfg, a.rung, a.vals[1])
			rungs[a.rung][a.cfg] = (a.vals[0] + a.vals[1]) / 2
			for _, d := range ds {
				got = append(got, fmt.Sprintf("%s@%d", d.Config, d.Rung))
				if d.Rung+1 < 3 {
					pending = append(pending, arrival{d.Config, d.Rung + 1, []float64{value(), value()}})
				}
			}
			for {
				n, k, ok := getJob(m.c, rungs, order, promoted)
				if !ok {
					break
				}
				promoted[k][n] = true
				want = append(want, fmt.Sprintf("%s@%d", n, k))
			}
		}
		if !slices.Equal(got, want) {
			t.Fatalf("trial %d (%d configurations): promotions\n %v\nwant\n %v", trial, nc, got, want)
		}
	}
}

// Synchronous halving decides a rung only when every configuration in it has reached it, and its outcome
// is the same whatever the order of arrival.
func TestHalvingIsOrderIndependent(t *testing.T) {
	configs := []string{"a", "b", "c", "d", "e", "f", "g", "h", "i"}
	vals := map[string][3]float64{"a": {.1, .5, .9}, "b": {.9, .2, .1}, "c": {.5, .6, .7}, "d": {.8, .9, .2}, "e": {.3, .1, .1},
		"f": {.85, .3, .3}, "g": {.2, .2, .2}, "h": {.7, .7, .7}, "i": {.6, .1, .1}}
	var ref string
	for perm := 0; perm < 50; perm++ {
		r := rand.New(rand.NewPCG(uint64(perm), 3))
		m := newSim(t, "halving", configs, 1)
		type arrival struct {
			cfg  string
			rung int
		}
		var pending []arrival
		for _, x := range configs {
			pending = append(pending, arrival{x, 0})
		}
		var all []Decision
		for len(pending) > 0 {
			i := r.IntN(len(pending))
			a := pending[i]
			pending = append(pending[:i], pending[i+1:]...)
			ds := m.read(a.cfg, a.rung, vals[a.cfg][a.rung])
			if a.rung == 0 && len(ds) > 0 && len(m.st.Decided) != len(ds) {
				t.Fatal("a rung was decided twice")
			}
			for _, d := range ds {
				if d.Action == Promote && d.Rung+1 < 3 {
					pending = append(pending, arrival{d.Config, d.Rung + 1})
				}
			}
			all = append(all, ds...)
		}
		var out []string
		for _, d := range all {
			out = append(out, fmt.Sprintf("%s@%d:%s", d.Config, d.Rung, d.Action))
		}
		slices.Sort(out)
		s := strings.Join(out, " ")
		if perm == 0 {
			ref = s
			// rung 0: top 3 of 9 are b (.9), f (.85), d (.8); rung 1: top 1 of 3 is d (.9)
			for _, w := range []string{"b@0:promote", "f@0:promote", "d@0:promote", "d@1:promote", "b@1:stop", "f@1:stop", "a@0:stop"} {
				if !strings.Contains(s, w) {
					t.Fatalf("outcome %q lacks %s", s, w)
				}
			}
		} else if s != ref {
			t.Fatalf("order %d gives\n %s\nwant\n %s", perm, s, ref)
		}
	}
}

// A configuration whose seeds have not all reported has not reached the rung; recorded decisions are never
// made again; a NaN reading ranks last.
func TestSeedsTogetherAndRecordedDecisionsStand(t *testing.T) {
	m := newSim(t, "halving", []string{"a", "b", "c"}, 2)
	if ds := m.read("a", 0, 0.9, 0.9); len(ds) != 0 {
		t.Fatal(short(ds))
	}
	m.read("b", 0, 0.1, 0.1)
	if ds := m.read("c", 0, 1.0); len(ds) != 0 {
		t.Fatalf("decided with c's second seed missing: %s", short(ds))
	}
	ds := m.read("c", 0, 0.0) // c's mean 0.5
	if got := short(ds); got != "a@0:promote c@0:stop b@0:stop" {
		t.Fatalf("decisions %q", got)
	}
	if again := m.s.Decide(m.c, m.st); len(again) != 0 {
		t.Fatalf("re-decided: %s", short(again))
	}
	n := newSim(t, "halving", []string{"a", "b", "c"}, 1)
	n.read("a", 0, nanValue())
	n.read("b", 0, 0.1)
	if got := short(n.read("c", 0, 0.2)); got != "c@0:promote b@0:stop a@0:stop" {
		t.Fatalf("with a NaN: %q", got)
	}
}

func nanValue() float64 { z := 0.0; return z / z }

func TestConfigValidation(t *testing.T) {
	for _, c := range []struct {
		c    Config
		want string
	}{
		{Config{Name: "asha", Metric: "knn", Mode: "max", Rungs: []int{300, 200}, Eta: 3}, "increasing"},
		{Config{Name: "asha", Metric: "", Mode: "max", Rungs: []int{1, 2}, Eta: 3}, "sweep.schedule.metric"},
		{Config{Name: "asha", Metric: "knn", Mode: "up", Rungs: []int{1, 2}, Eta: 3}, "sweep.schedule.mode"},
		{Config{Name: "asha", Metric: "knn", Mode: "max", Rungs: []int{1, 2}, Eta: 1}, "sweep.schedule.eta"},
	} {
		if err := c.c.Validate(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want %q", c.c, err, c.want)
		}
	}
	c := cfg("asha")
	if err := c.CheckAgainst(600, []string{"knn"}); err == nil || !strings.Contains(err.Error(), "train.steps = 600") {
		t.Error(err)
	}
	if err := c.CheckAgainst(900, []string{"linear"}); err == nil || !strings.Contains(err.Error(), "not one of the spec's readings") {
		t.Error(err)
	}
}
