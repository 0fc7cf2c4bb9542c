package report

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	"mimlab/eval"
	"mimlab/framework/spec"
	"mimlab/framework/store"
)

// readingsOf are the columns of a table of readings: linear, k-NN and attentive always (as every report has
// had them), then every other reading name (evals.protocol with a top1 metric) the trials have, in column
// order.
func readingsOf(evals ...map[string]map[string]float64) []string {
	return readings(true, evals...)
}

// readingsPresent are the reading names the trials have, and only those, in column order.
func readingsPresent(evals ...map[string]map[string]float64) []string {
	return readings(false, evals...)
}

func readings(base bool, evals ...map[string]map[string]float64) []string {
	seen := map[string]bool{}
	var out []string
	if base {
		seen = map[string]bool{"linear": true, "knn": true, "attentive": true}
		out = []string{"linear", "knn", "attentive"}
	}
	for _, ev := range evals {
		for p, m := range ev {
			if _, ok := m["top1"]; ok && !seen[p] {
				seen[p] = true
				out = append(out, p)
			}
		}
	}
	return eval.SortReadings(out)
}

// alongTrial is a trial (in any state) with the evaluations it stored along training and, when done, its
// final evaluation at its last step.
type alongTrial struct {
	store.Trial
	Config string
	ByStep map[int]map[string]map[string]float64
}

// finalStep is the pretraining step of a trial's final evaluation: train.steps from its spec, else the
// step it reached.
func finalStep(t store.Trial) int {
	tree, err := spec.FromJSON(t.Spec)
	if err == nil {
		if tr, ok := tree["train"].(map[string]any); ok {
			switch s := tr["steps"].(type) {
			case int64:
				if s > 0 {
					return int(s)
				}
			case float64:
				if s > 0 {
					return int(s)
				}
			}
		}
	}
	return t.Step
}

// alongSection is the budget curve of a sweep whose trials evaluate along training (eval.at_steps): a table
// of every reading at every step per configuration (mean ± std over the seeds that have it, "missing" where
// none has it yet, running trials included), the reference rows, and one figure per reading: top-1 against
// pretraining steps per configuration with the reference rows as dashed horizontal lines. nil when no trial
// of the sweep evaluated along training.
func alongSection(st *store.Store, sweep string, label func(store.Trial) string, out string) (*section, error) {
	var all []store.Trial
	for _, sw := range strings.Split(sweep, ",") {
		ts, err := st.Trials(sw)
		if err != nil {
			return nil, err
		}
		all = append(all, ts...)
	}
	label = shortNames(all, label)
	var trials []alongTrial
	var configs []string
	seeds := map[string]int{}
	any := false
	var evs []map[string]map[string]float64
	for _, t := range all {
		by, err := st.EvalsAlong(t.ID)
		if err != nil {
			return nil, err
		}
		any = any || len(by) > 0
		if t.State == store.Done {
			fin, err := st.Evals(t.ID)
			if err != nil {
				return nil, err
			}
			by[finalStep(t)] = fin
		}
		c := label(t)
		if seeds[c] == 0 {
			configs = append(configs, c)
		}
		seeds[c]++
		trials = append(trials, alongTrial{Trial: t, Config: c, ByStep: by})
		for _, e := range by {
			evs = append(evs, e)
		}
	}
	if !any {
		return nil, nil
	}
	readings := readingsPresent(evs...)
	stepSet := map[int]bool{}
	for _, t := range trials {
		for s := range t.ByStep {
			stepSet[s] = true
		}
		for _, s := range stepsAsked(t.Trial) {
			stepSet[s] = true
		}
	}
	var steps []int
	for s := range stepSet {
		steps = append(steps, s)
	}
	slices.Sort(steps)
	sec := &section{title: "Probes along pretraining", text: "Each reading of the encoder at each pretraining step (eval.at_steps, and the end of training): " +
		"mean ± standard deviation over the seeds that have reached that step (n of the configuration's seeds); \"missing\" where no seed has it yet. " +
		"One point of a figure is that mean, its band ±1 std; the dashed lines are the reference rows (raw pixels, the same ViT at random initialisation)."}
	tab := table{head: append([]string{"configuration", "step"}, readings...)}
	type key struct {
		c    string
		r    string
		step int
	}
	vals := map[key][]float64{}
	for _, t := range trials {
		for s, ev := range t.ByStep {
			for _, r := range readings {
				if v, ok := ev[r]["top1"]; ok {
					vals[key{t.Config, r, s}] = append(vals[key{t.Config, r, s}], v)
				}
			}
		}
	}
	for _, c := range configs {
		for _, s := range steps {
			row := []string{c, fmt.Sprint(s)}
			for _, r := range readings {
				sm := summarize(vals[key{c, r, s}])
				switch {
				case sm.N == 0:
					row = append(row, "missing")
				case sm.N < seeds[c]:
					row = append(row, strings.TrimSuffix(sm.String(), ")")+fmt.Sprintf(" of %d)", seeds[c]))
				default:
					row = append(row, sm.String())
				}
			}
			tab.rows = append(tab.rows, row)
		}
	}
	refs, err := referenceRows(st, trials)
	if err != nil {
		return nil, err
	}
	for _, rf := range refs {
		row := []string{"reference: " + rf.name, "-"}
		for _, r := range readings {
			if v, ok := rf.vals[r]; ok {
				row = append(row, fmt.Sprintf("%.4f", v))
			} else {
				row = append(row, "-")
			}
		}
		tab.rows = append(tab.rows, row)
	}
	sec.tables = append(sec.tables, tab)
	if out == "" {
		return sec, nil
	}
	for i, r := range readings {
		var cs []curve
		for _, c := range configs {
			cv := curve{name: c}
			for _, s := range steps {
				if sm := summarize(vals[key{c, r, s}]); sm.N > 0 {
					cv.x, cv.mean, cv.std = append(cv.x, float64(s)), append(cv.mean, sm.Mean), append(cv.std, sm.Std)
				}
			}
			if len(cv.x) > 0 {
				cs = append(cs, cv)
			}
		}
		if len(cs) == 0 {
			continue
		}
		for _, rf := range refs {
			if v, ok := rf.vals[r]; ok {
				cs = append(cs, curve{name: rf.name, x: []float64{float64(steps[0]), float64(steps[len(steps)-1])}, mean: []float64{v, v}, std: []float64{0, 0}, dashed: true})
			}
		}
		img := filepath.Join("figs", fmt.Sprintf("along_%d.png", i))
		if err := lineChart(filepath.Join(out, img), r+": top-1 against pretraining steps", "pretraining step", "top-1", cs); err != nil {
			return nil, err
		}
		sec.images = append(sec.images, figure{img, r + ": one point is the mean over seeds at that step, the band ±1 std; dashed: reference rows"})
	}
	return sec, nil
}

// stepsAsked are the steps a trial's spec asks to be evaluated at (eval.at_steps below train.steps, and the
// final step), so steps no seed has reached yet still get rows.
func stepsAsked(t store.Trial) []int {
	total := finalStep(t)
	out := []int{total}
	tree, err := spec.FromJSON(t.Spec)
	if err != nil {
		return out
	}
	ev, _ := tree["eval"].(map[string]any)
	if xs, ok := ev["at_steps"].([]any); ok {
		for _, x := range xs {
			if s, ok := x.(int64); ok && int(s) < total {
				out = append(out, int(s))
			}
		}
	}
	if e, ok := ev["every"].(int64); ok && e > 0 {
		for s := int(e); s < total; s += int(e) {
			out = append(out, s)
		}
	}
	return out
}

type reference struct {
	name string
	vals map[string]float64
}

// referenceRows are the baselines of the trials' datasets, one row per (dataset, arch).
func referenceRows(st *store.Store, trials []alongTrial) ([]reference, error) {
	datasets := map[string]bool{}
	for _, t := range trials {
		datasets[datasetOf(t.Spec)] = true
	}
	rows, err := st.Query(`SELECT dataset, arch, protocol, value FROM baselines WHERE metric = 'top1' ORDER BY dataset, arch`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []reference
	idx := map[string]int{}
	for rows.Next() {
		var d, a, p string
		var v float64
		if err := rows.Scan(&d, &a, &p, &v); err != nil {
			return nil, err
		}
		if !datasets[d] {
			continue
		}
		name := d + ", " + a
		i, ok := idx[name]
		if !ok {
			i = len(out)
			idx[name] = i
			out = append(out, reference{name: name, vals: map[string]float64{}})
		}
		out[i].vals[p] = v
	}
	return out, rows.Err()
}
