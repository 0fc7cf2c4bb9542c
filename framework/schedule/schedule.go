// Package schedule decides, from probe readings taken at rungs of pretraining steps, which configurations of
// a sweep go on training and which stop: successive halving (synchronous, "halving") and asynchronous
// successive halving ("asha", Li et al. 2020), registered by name like every component, with "none" for a
// sweep that runs every configuration to its last step.
//
// A scheduler is a pure function of the readings and of the decisions already recorded: it never re-decides
// a recorded decision, so a sweep killed and resumed goes on from the decisions its store holds, and two
// workers asking at once get the same answer. A configuration's seeds move together: it has reached a rung
// when every one of its seeds has a reading there, and it is ranked by their mean. The package knows nothing
// of trials, stores or models; it sees configuration names, rungs and numbers.
package schedule

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"sort"

	"mimlab/framework/registry"
)

// Config is [sweep.schedule].
type Config struct {
	Name   string `toml:"name" allowed:"none,halving,asha"`
	Metric string `toml:"metric" doc:"the reading that ranks configurations at a rung (knn, linear_mean, ...)"`
	Mode   string `toml:"mode" allowed:"max,min" doc:"max: higher readings are better"`
	Rungs  []int  `toml:"rungs" doc:"pretraining steps at which configurations are read and ranked, increasing; the last is train.steps"`
	Eta    int    `toml:"eta" doc:"the top 1/eta of the configurations at a rung go on"`
}

// Validate checks what the section alone can (the rungs against train.steps and the metric against the
// spec's readings are checked by the plan, which knows them).
func (c *Config) Validate() error {
	if c.Name == "none" {
		return nil
	}
	switch {
	case c.Metric == "":
		return fmt.Errorf("sweep.schedule.metric: %s needs the reading to rank by (knn, linear, linear_mean, ...)", c.Name)
	case c.Mode != "max" && c.Mode != "min":
		return fmt.Errorf("sweep.schedule.mode = %q: allowed values are max, min", c.Mode)
	case c.Eta < 2:
		return fmt.Errorf("sweep.schedule.eta = %d: must be >= 2", c.Eta)
	case len(c.Rungs) < 2:
		return fmt.Errorf("sweep.schedule.rungs = %v: at least two rungs (the last is train.steps)", c.Rungs)
	}
	for i, r := range c.Rungs {
		if r < 1 || (i > 0 && r <= c.Rungs[i-1]) {
			return fmt.Errorf("sweep.schedule.rungs = %v: steps must be >= 1 and increasing", c.Rungs)
		}
	}
	return nil
}

// CheckAgainst checks the rungs against the run's length and the metric against the readings a trial gives.
func (c *Config) CheckAgainst(steps int, readings []string) error {
	if c.Name == "none" {
		return nil
	}
	if last := c.Rungs[len(c.Rungs)-1]; last != steps {
		return fmt.Errorf("sweep.schedule.rungs = %v: the last rung must be train.steps = %d", c.Rungs, steps)
	}
	if !slices.Contains(readings, c.Metric) {
		return fmt.Errorf("sweep.schedule.metric = %q: not one of the spec's readings; allowed: %v", c.Metric, readings)
	}
	return nil
}

// Action is what a decision does to a configuration at a rung.
type Action string

const (
	Promote Action = "promote" // goes on to the next rung
	Stop    Action = "stop"    // trains no more
)

// Decision is one recorded outcome, with the inputs it was made from.
type Decision struct {
	Config string
	Rung   int // index into Config.Rungs
	Action Action
	Value  float64 // the configuration's mean reading at the rung
	Rank   int     // 1 = best among those ranked
	Of     int     // how many had reached the rung when it was decided
	Top    int     // how many of them go on (the top 1/eta)
	Reason string
}

// State is what a scheduler decides from.
type State struct {
	// Configs are the sweep's configurations in sweep order (ties break by it).
	Configs []string
	// Seeds is how many seeds each configuration has.
	Seeds map[string]int
	// Readings are per configuration, per rung index, the metric of each seed that has reached it.
	Readings map[string]map[int][]float64
	// Decided are the decisions already recorded; never re-decided.
	Decided []Decision
	// Final says no reading will arrive any more (every configuration is promoted to the last rung, stopped,
	// or waiting): an undecided configuration is then stopped at its rung.
	Final bool
}

// Scheduler decides what the readings so far allow.
type Scheduler interface {
	// Decide returns the new decisions, in the order they were made.
	Decide(c *Config, st State) []Decision
}

// Registry is the kind "schedule".
var Registry = registry.NewKind[Scheduler]("schedule", "mimlab/framework/schedule")

func init() {
	for _, e := range []struct {
		name, doc string
		s         Scheduler
		def       bool
	}{
		{"none", "every configuration runs to its last step", none{}, true},
		{"halving", "synchronous successive halving: a rung is decided once every configuration promoted into it has reached it; the outcome is a pure function of the readings", halving{}, false},
		{"asha", "asynchronous successive halving (Li et al. 2020): promote as soon as a configuration is in the top 1/eta of those at its rung so far", asha{}, false},
	} {
		s := e.s
		name := e.name
		Registry.Register(registry.Entry[Scheduler]{Name: name, Doc: e.doc, Default: e.def,
			NewConfig: func() registry.Config { return &Config{Name: name, Mode: "max", Eta: 3} },
			Build:     func(registry.Config) (Scheduler, error) { return s, nil }})
	}
}

type none struct{}

func (none) Decide(*Config, State) []Decision { return nil }

// mean is a configuration's value at rung r when every seed has reached it.
func (st State) mean(cfg string, r int) (float64, bool) {
	v := st.Readings[cfg][r]
	if len(v) == 0 || len(v) < st.Seeds[cfg] {
		return 0, false
	}
	s := 0.0
	for _, x := range v {
		s += x
	}
	return s / float64(len(v)), true
}

// decisions indexes the recorded decisions by (config, rung).
func decisions(ds []Decision) map[string]map[int]Decision {
	out := map[string]map[int]Decision{}
	for _, d := range ds {
		if out[d.Config] == nil {
			out[d.Config] = map[int]Decision{}
		}
		out[d.Config][d.Rung] = d
	}
	return out
}

// entered says whether cfg trains to rung r: every configuration enters rung 0; rung r+1 takes those promoted
// at rung r.
func entered(dec map[string]map[int]Decision, cfg string, r int) bool {
	return r == 0 || dec[cfg][r-1].Action == Promote
}

type ranked struct {
	cfg   string
	value float64
	order int
}

// rank sorts the configurations that reached rung r, best first (ties by sweep order).
func rank(c *Config, st State, r int, cfgs []string) []ranked {
	order := map[string]int{}
	for i, x := range st.Configs {
		order[x] = i
	}
	var out []ranked
	for _, x := range cfgs {
		if v, ok := st.mean(x, r); ok {
			out = append(out, ranked{x, v, order[x]})
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.value != b.value && !math.IsNaN(a.value) && !math.IsNaN(b.value) {
			if c.Mode == "min" {
				return a.value < b.value
			}
			return a.value > b.value
		}
		if math.IsNaN(a.value) != math.IsNaN(b.value) {
			return !math.IsNaN(a.value) // a NaN reading ranks last
		}
		return cmp.Less(a.order, b.order)
	})
	return out
}

// top is how many of n go on: floor(n / eta), at least one.
func top(n, eta int) int { return max(n/eta, 1) }

func decision(c *Config, cfg string, r int, a Action, x ranked, rankIdx, of, topN int) Decision {
	d := Decision{Config: cfg, Rung: r, Action: a, Value: x.value, Rank: rankIdx + 1, Of: of, Top: topN}
	verb := "promoted"
	if a == Stop {
		verb = "stopped"
	}
	d.Reason = fmt.Sprintf("%s at step %d: %s %.4g, rank %d of %d at this rung, top %d promoted", verb, c.Rungs[r], c.Metric, x.value, d.Rank, of, topN)
	return d
}

// halving decides a rung once every configuration that entered it has reached it: the top 1/eta go on, the
// others stop. Arrival order and the number of workers do not matter.
type halving struct{}

func (halving) Decide(c *Config, st State) []Decision {
	dec := decisions(st.Decided)
	var out []Decision
	for r := 0; r < len(c.Rungs)-1; r++ {
		var in []string
		for _, x := range st.Configs {
			if entered(dec, x, r) {
				in = append(in, x)
			}
		}
		if len(in) == 0 {
			break
		}
		rk := rank(c, st, r, in)
		if len(rk) < len(in) { // someone has not reached the rung yet
			break
		}
		n := top(len(rk), c.Eta)
		for i, x := range rk {
			if _, done := dec[x.cfg][r]; done {
				continue
			}
			a := Stop
			if i < n {
				a = Promote
			}
			d := decision(c, x.cfg, r, a, x, i, len(rk), n)
			out = append(out, d)
			if dec[x.cfg] == nil {
				dec[x.cfg] = map[int]Decision{}
			}
			dec[x.cfg][r] = d
		}
	}
	return out
}

// asha promotes a configuration from rung r as soon as it is in the top 1/eta of those that have reached r
// so far (Li et al. 2020, Algorithm 2, get_job: the highest rung first); a configuration not in it waits,
// and is stopped when the sweep has nothing left to run (State.Final).
type asha struct{}

func (asha) Decide(c *Config, st State) []Decision {
	dec := decisions(st.Decided)
	var out []Decision
	record := func(d Decision) {
		out = append(out, d)
		if dec[d.Config] == nil {
			dec[d.Config] = map[int]Decision{}
		}
		dec[d.Config][d.Rung] = d
	}
	for changed := true; changed; {
		changed = false
		for r := len(c.Rungs) - 2; r >= 0 && !changed; r-- {
			var in []string
			for _, x := range st.Configs {
				if entered(dec, x, r) {
					in = append(in, x)
				}
			}
			rk := rank(c, st, r, in)
			n := len(rk) / c.Eta // ASHA promotes only from the top floor(|rung| / eta): none while the rung is small
			for i := 0; i < n; i++ {
				x := rk[i]
				if _, done := dec[x.cfg][r]; !done {
					record(decision(c, x.cfg, r, Promote, x, i, len(rk), n))
					changed = true
					break // one promotion per pass, from the highest rung that has one, as get_job does
				}
			}
		}
	}
	if st.Final {
		for r := len(c.Rungs) - 2; r >= 0; r-- {
			var in []string
			for _, x := range st.Configs {
				if entered(dec, x, r) {
					in = append(in, x)
				}
			}
			rk := rank(c, st, r, in)
			for i, x := range rk {
				if _, done := dec[x.cfg][r]; !done {
					record(decision(c, x.cfg, r, Stop, x, i, len(rk), len(rk)/c.Eta))
				}
			}
		}
	}
	return out
}
