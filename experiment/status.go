package experiment

import (
	"fmt"
	"sort"
	"strings"

	"mimlab/eval"
	"mimlab/framework/spec"
	"mimlab/framework/store"
)

// TrialStatus is one trial as `sweep status` shows it.
type TrialStatus struct {
	store.Trial
	Step  int                           // the last logged step (the heartbeat's step while it runs)
	Loss  float64                       // the loss at that step; NaN-free: Has says whether there is one
	Has   bool                          // a loss was logged
	Top1  map[string]float64            // protocol -> top-1 accuracy
	Evals map[string]map[string]float64 // everything evaluated
	// Short is its configuration's short name (framework/labels: the spec's [sweep] labels, else the keys
	// that differ among the trials shown) with its seed.
	Short string
	// AlongSteps are the pretraining steps it was evaluated at along training (eval.at_steps), sorted.
	AlongSteps []int
	// Attempts are its claims, first to last: a trial resumed after an interruption has several, each
	// with the commit and host it ran under and the steps it covered.
	Attempts []store.Attempt
}

// Reference is one reference row (raw pixels or a random-init encoder on the same splits).
type Reference struct {
	Dataset, Arch, Protocol string
	Value                   float64
}

// StatusReport is what `sweep status` prints: the trials, their states counted, the reference rows.
type StatusReport struct {
	Trials     []TrialStatus
	Leases     []store.Lease // the running trials' owners and heartbeats
	Counts     map[string]int
	References []Reference
	// LinearFits counts the trials' linear-probe readings (every step) that recorded how their L-BFGS
	// ended; LinearAtLimit those that stopped at the iteration limit, LinearFailed those stopped by a
	// failure (both unconverged).
	LinearFits, LinearAtLimit, LinearFailed int
}

// Readings are the reading names (linear, knn_mean, finetune_100, ...) any trial has a top-1 for, in column
// order; linear, knn and attentive when none has any yet.
func (r *StatusReport) Readings() []string {
	seen := map[string]bool{}
	var out []string
	for _, t := range r.Trials {
		for p := range t.Top1 {
			if !seen[p] {
				seen[p] = true
				out = append(out, p)
			}
		}
	}
	if len(out) == 0 {
		return []string{"linear", "knn", "attentive"}
	}
	return eval.SortReadings(out)
}

// Summary is "N trials: a done, b pending, ...".
func (r *StatusReport) Summary() string {
	var states []string
	for s, n := range r.Counts {
		states = append(states, fmt.Sprintf("%d %s", n, s))
	}
	sort.Strings(states)
	return fmt.Sprintf("%d trials: %s", len(r.Trials), strings.Join(states, ", "))
}

// countLinear counts the linear readings among one evaluation's protocols that say whether they converged.
func (r *StatusReport) countLinear(byProto map[string]map[string]float64) {
	for _, m := range byProto {
		if c, ok := m["lbfgs_converged"]; ok {
			r.LinearFits++
			switch {
			case c == 0:
				r.LinearAtLimit++
			case c < 0:
				r.LinearFailed++
			}
		}
	}
}

// Status gathers the trials of a sweep ("" for all), their last losses and evals, and the reference rows.
func Status(st *store.Store, sweep string) (*StatusReport, error) {
	trials, err := st.Trials(sweep)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", st.Path, err)
	}
	if sweep != "" && len(trials) == 0 {
		return nil, fmt.Errorf("%s has no sweep named %q", st.Path, sweep)
	}
	r := &StatusReport{Counts: map[string]int{}}
	for _, t := range trials {
		r.Counts[t.State]++
		step, last, err := st.LastMetrics(t.ID)
		if err != nil {
			return nil, fmt.Errorf("%s: trial %d: %w", st.Path, t.ID, err)
		}
		ev, err := st.Evals(t.ID)
		if err != nil {
			return nil, fmt.Errorf("%s: trial %d: %w", st.Path, t.ID, err)
		}
		along, err := st.EvalsAlong(t.ID)
		if err != nil {
			return nil, fmt.Errorf("%s: trial %d: %w", st.Path, t.ID, err)
		}
		for _, byProto := range along {
			r.countLinear(byProto)
		}
		r.countLinear(ev)
		ts := TrialStatus{Trial: t, Step: max(step, t.Step), Evals: ev, Top1: map[string]float64{}}
		if ts.Attempts, err = st.Attempts(t.ID); err != nil {
			return nil, fmt.Errorf("%s: trial %d: attempts: %w", st.Path, t.ID, err)
		}
		for s := range along {
			ts.AlongSteps = append(ts.AlongSteps, s)
		}
		sort.Ints(ts.AlongSteps)
		ts.Loss, ts.Has = last["loss"]
		for p, m := range ev {
			if v, ok := m["top1"]; ok {
				ts.Top1[p] = v
			}
		}
		r.Trials = append(r.Trials, ts)
	}
	shortNames(r.Trials)
	if r.Leases, err = st.Running(sweep); err != nil {
		return nil, fmt.Errorf("%s: %w", st.Path, err)
	}
	rows, err := st.Query(`SELECT dataset, arch, protocol, value FROM baselines WHERE metric = 'top1' ORDER BY dataset, arch, protocol`)
	if err != nil {
		return nil, fmt.Errorf("%s: reference rows: %w", st.Path, err)
	}
	defer rows.Close()
	for rows.Next() {
		var ref Reference
		if err := rows.Scan(&ref.Dataset, &ref.Arch, &ref.Protocol, &ref.Value); err != nil {
			return nil, fmt.Errorf("%s: reference rows: %w", st.Path, err)
		}
		r.References = append(r.References, ref)
	}
	return r, rows.Err()
}

// Printable replaces what would break a one-line display of a stored name (control characters,
// bidirectional overrides): names in databases written before names were checked may hold them.
func Printable(s string) string {
	return strings.Map(func(r rune) rune {
		if spec.Hidden(r) {
			return '?'
		}
		return r
	}, s)
}

// shortNames fills each trial's Short: its configuration's short name among the trials shown, and its seed.
func shortNames(ts []TrialStatus) {
	trials := make([]store.Trial, len(ts))
	for i, t := range ts {
		trials[i] = t.Trial
	}
	short := ShortNames(trials, store.Trial.ConfigName)
	for i, t := range ts {
		ts[i].Short = short(t.Trial)
		if sd, ok := t.Point.Seed(); ok {
			ts[i].Short += " seed=" + spec.ValueString(sd)
		}
	}
}

// AttemptsLine describes a trial's attempts on one line ("" for a trial run in one attempt): for each, the
// steps it covered, the commit (with "+dirty" for uncommitted changes), the host and how it ended.
func AttemptsLine(as []store.Attempt) string {
	if len(as) < 2 {
		return ""
	}
	parts := make([]string, len(as))
	for i, a := range as {
		from, to := "?", "?"
		if a.FromStep >= 0 {
			from = fmt.Sprint(a.FromStep)
		}
		if a.EndStep >= 0 {
			to = fmt.Sprint(a.EndStep)
		}
		commit := a.GitCommit[:min(7, len(a.GitCommit))]
		if commit == "" {
			commit = "unknown commit"
		}
		if a.GitDirty {
			commit += "+dirty"
		}
		outcome := a.Outcome
		switch {
		case outcome != "":
		case i+1 < len(as):
			outcome = "ended unrecorded" // killed, its lease lost, or the database away when it ended
		default:
			outcome = "running, or ended unrecorded"
		}
		parts[i] = fmt.Sprintf("#%d steps %s-%s at %s on %s, %s", a.Attempt, from, to, commit, a.Host, outcome)
	}
	return strings.Join(parts, "; ")
}
