// Package report turns a results database into report/index.html (self-contained: relative PNG links,
// opens from the file system) and, on request, the same tables as Markdown: training curves per
// configuration (mean and spread over seeds), probe accuracies with error bars beside the raw-pixel and
// random-init reference rows, accuracy against each swept numeric axis, and from the trained models the
// paper's figures: patch-level t-SNE (Fig. 5), cls attention maps (Fig. 6) and reconstructions with the
// regressor skipped (Fig. 4). Figures computed from a model are cached by trial hash and step, so a second
// run only computes what changed.
package report

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"mimlab/experiment"
	"mimlab/framework/labels"
	"mimlab/framework/spec"
	"mimlab/framework/store"
)

// Options configure a report.
type Options struct {
	DB, Sweep, Out string
	Markdown       bool   // also write REPORT.md with the tables
	Backend        string // for the model figures
	Runs           string // where the trials' checkpoints are
	Figures        bool   // compute t-SNE / attention / reconstructions
	TSNEImages     int    // test images whose patches go into each t-SNE map
	Log            io.Writer
	// Refresh, when > 0, makes the page reload itself every Refresh seconds (report --watch).
	Refresh int
	// Ctx, when set, stops the model figures' long loops (feature extraction, t-SNE) within a step of its
	// cancellation (Ctrl-C under --watch).
	Ctx context.Context
}

func (o Options) ctx() context.Context {
	if o.Ctx == nil {
		return context.Background()
	}
	return o.Ctx
}

// State is a fingerprint of what a report shows: the trials finished and the time of the last one. Watch
// re-renders when it changes.
func State(db string) (string, error) {
	st, err := store.OpenForReading(db)
	if err != nil {
		return "", err
	}
	defer st.Close()
	var n int
	var last sql.NullFloat64
	if err := st.Scan(`SELECT COUNT(*), MAX(finished_at) FROM trials WHERE state = 'done'`, nil, &n, &last); err != nil {
		return "", fmt.Errorf("%s: %w", st.Path, err)
	}
	return fmt.Sprintf("%d/%v", n, last.Float64), nil
}

// Watch renders the report now and again whenever a trial finishes (polling every interval) until ctx
// ends; the page reloads itself, so a browser tab shows a running sweep. A database with no finished trial
// yet is waited for.
func Watch(ctx context.Context, opt Options, interval time.Duration) error {
	opt.Refresh = max(int(interval.Seconds()), 1)
	opt.Ctx = ctx
	last := ""
	for {
		cur, err := State(opt.DB)
		if err != nil {
			return err
		}
		if cur != last && !strings.HasPrefix(cur, "0/") {
			if err := Generate(opt); err != nil {
				return err
			}
			fmt.Fprintf(opt.Log, "report: %s rendered (%s trials done)\n", filepath.Join(opt.Out, "index.html"), strings.Split(cur, "/")[0])
			last = cur
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(interval):
		}
	}
}

// trialInfo is a done trial with what the report needs.
type trialInfo struct {
	store.Trial
	Config string            // the configuration's short name (labels.Short): trials of one configuration across seeds
	Full   string            // its full name: the spec name and every swept key but the seed
	Point  map[string]string // sweep point
	Evals  map[string]map[string]float64
}

// identityOf is a trial's configuration without its seed, from its stored spec: two trials pool as seeds
// only when these are equal.
func identityOf(t store.Trial) string { return experiment.StoredConfig(t.Spec).Key }

// stats is mean, standard deviation (n-1) and count.
type stats struct {
	Mean, Std float64
	N         int
}

func summarize(v []float64) stats {
	if len(v) == 0 {
		return stats{}
	}
	m := 0.0
	for _, x := range v {
		m += x
	}
	m /= float64(len(v))
	s := 0.0
	for _, x := range v {
		s += (x - m) * (x - m)
	}
	if len(v) > 1 {
		s = math.Sqrt(s / float64(len(v)-1))
	}
	return stats{m, s, len(v)}
}

func (s stats) String() string {
	if s.N == 0 {
		return "-"
	}
	if s.N == 1 {
		return fmt.Sprintf("%.4f (n=1)", s.Mean)
	}
	return fmt.Sprintf("%.4f ± %.4f (n=%d)", s.Mean, s.Std, s.N)
}

// load reads the done trials of a sweep (every sweep when empty; several separated by commas) with their
// evals, grouped by configuration (the trial name without its seed) in first-seen order.
func load(st *store.Store, sweep string) ([]trialInfo, []string, map[string][]trialInfo, error) {
	var all []store.Trial
	for _, sw := range strings.Split(sweep, ",") {
		ts, err := st.Trials(sw)
		if err != nil {
			return nil, nil, nil, err
		}
		if sw != "" && len(ts) == 0 {
			return nil, nil, nil, fmt.Errorf("%s has no sweep named %q (sweep status lists them)", st.Path, sw)
		}
		all = append(all, ts...)
	}
	var trials []trialInfo
	for _, t := range all {
		if t.State != store.Done {
			continue
		}
		ev, err := st.Evals(t.ID)
		if err != nil {
			return nil, nil, nil, err
		}
		c := labeler(sweep)(t)
		trials = append(trials, trialInfo{Trial: t, Config: c, Point: t.Point.Strings(), Evals: ev})
	}
	// Never pool different configurations as seeds: a label shared by trials whose specs differ (a spec
	// edited under the same name) gets each configuration's own suffix.
	ids := map[string]map[string]bool{}
	for _, t := range trials {
		if ids[t.Config] == nil {
			ids[t.Config] = map[string]bool{}
		}
		ids[t.Config][identityOf(t.Trial)] = true
	}
	for i, t := range trials {
		if len(ids[t.Config]) > 1 {
			h := sha256.Sum256([]byte(identityOf(t.Trial)))
			trials[i].Config = fmt.Sprintf("%s (config %s)", t.Config, hex.EncodeToString(h[:])[:6])
		}
	}
	if len(trials) == 0 {
		return nil, nil, nil, fmt.Errorf("%s has no finished trials%s: %w", st.Path, map[bool]string{true: " in sweep " + sweep, false: ""}[sweep != ""], errNoFinished)
	}
	// Short names: the keys that differ among the sweep's configurations (all its trials, so that a running
	// sweep's names do not change as trials finish), or the spec's [sweep] labels.
	shortOf := shortNames(all, labeler(sweep))
	short := map[string]string{}
	for _, t := range trials {
		if t.Config == labeler(sweep)(t.Trial) {
			short[t.Config] = shortOf(t.Trial)
		} else {
			short[t.Config] = t.Config // a spec edited under one name: its configurations keep their hashes
		}
	}
	var configs []string
	byConfig := map[string][]trialInfo{}
	for i := range trials {
		trials[i].Full = trials[i].Config
		trials[i].Config = short[trials[i].Config]
		t := trials[i]
		if _, ok := byConfig[t.Config]; !ok {
			configs = append(configs, t.Config)
		}
		byConfig[t.Config] = append(byConfig[t.Config], t)
	}
	return trials, configs, byConfig, nil
}

// shortNames names every configuration of a sweep's trials (any state) as load does for the done ones.
func shortNames(trials []store.Trial, full func(store.Trial) string) func(store.Trial) string {
	return experiment.ShortNames(trials, full)
}

// shortened says whether a key table says more than its names (some name is not its full swept keys).
func shortened(t table) bool {
	for _, r := range t.rows {
		if r[0] != r[1] {
			return true
		}
	}
	return false
}

// keyTable lists what each short name stands for: the full swept keys of its configuration.
func keyTable(configs []string, by map[string][]trialInfo) table {
	tab := table{head: []string{"name", "swept keys (seed excluded)"}}
	for _, c := range configs {
		keys := by[c][0].Trial.Point.Seedless().String()
		if keys == "" {
			keys = by[c][0].Full
		}
		tab.rows = append(tab.rows, []string{c, keys})
	}
	return tab
}

// errNoFinished: a sweep has no done trial yet (its probes along training may still be reported).
var errNoFinished = errors.New("nothing to report yet")

// labeler names a trial's configuration in a report of sweep: its label without the seed, without the
// sweep's name when the report is of one sweep.
func labeler(sweep string) func(store.Trial) string {
	return func(t store.Trial) string {
		p := t.Point.Seedless()
		if sweep != "" && !strings.Contains(sweep, ",") && t.Base == sweep && len(p) > 0 {
			return p.String() // one sweep: its name adds nothing to the labels
		}
		return p.Name(t.Base)
	}
}

// Generate writes the report.
func Generate(opt Options) error {
	if err := store.CheckExists(opt.DB); err != nil {
		return err
	}
	st, err := store.OpenForReading(opt.DB)
	if err != nil {
		return err
	}
	defer st.Close()
	trials, configs, byConfig, err := load(st, opt.Sweep)
	if err := os.MkdirAll(filepath.Join(opt.Out, "figs"), 0o755); err != nil {
		return err
	}
	along, alongErr := alongSection(st, opt.Sweep, labeler(opt.Sweep), opt.Out)
	if alongErr != nil {
		return alongErr
	}
	if err != nil {
		if !errors.Is(err, errNoFinished) || along == nil {
			return err
		}
		// only probes along training so far (a long sweep still running)
		p := &page{title: "mimlab report", db: st.Path, refresh: opt.Refresh}
		p.add(along)
		if err := p.write(filepath.Join(opt.Out, "index.html")); err != nil {
			return err
		}
		if opt.Markdown {
			if err := os.WriteFile(filepath.Join(opt.Out, "REPORT.md"), []byte(p.markdown()), 0o644); err != nil {
				return err
			}
		}
		fmt.Fprintf(opt.Log, "report: wrote %s (no trial finished yet: probes along training only)\n", filepath.Join(opt.Out, "index.html"))
		return nil
	}
	p := &page{title: "mimlab report", db: st.Path, refresh: opt.Refresh}
	step := 0
	total := 3 + len(configs)
	progress := func(what string) {
		step++
		fmt.Fprintf(opt.Log, "report: [%d/%d] %s\n", step, total, what)
	}
	progress("probe accuracies")
	probes, err := probeSection(st, configs, byConfig, opt.Out)
	if err != nil {
		return err
	}
	p.add(probes)
	if along != nil {
		p.add(along)
	}
	progress("training curves")
	curves, err := curveSection(st, configs, byConfig, opt.Out)
	if err != nil {
		return err
	}
	p.add(curves)
	progress("swept axes")
	if axes := axisSection(trials, opt.Out); axes != nil && !strings.Contains(opt.Sweep, ",") {
		p.add(axes)
	}
	if opt.Figures {
		figs, err := modelFigures(opt, configs, byConfig, func(what string) { progress(what) })
		if err != nil {
			return err
		}
		p.add(figs...)
	}
	if err := p.write(filepath.Join(opt.Out, "index.html")); err != nil {
		return err
	}
	if opt.Markdown {
		if err := os.WriteFile(filepath.Join(opt.Out, "REPORT.md"), []byte(p.markdown()), 0o644); err != nil {
			return err
		}
	}
	fmt.Fprintf(opt.Log, "report: wrote %s\n", filepath.Join(opt.Out, "index.html"))
	return nil
}

// probeSection: the table of every probe number (mean ± std over seeds) beside the reference rows, the
// pairwise differences, and (out not empty) a bar chart with error bars.
func probeSection(st *store.Store, configs []string, by map[string][]trialInfo, out string) (*section, error) {
	var evs []map[string]map[string]float64
	for _, c := range configs {
		for _, t := range by[c] {
			evs = append(evs, t.Evals)
		}
	}
	protocols := readingsOf(evs...)
	sec := &section{title: "Probe accuracies (top-1 on the test split)", text: "Mean ± standard deviation over seeds (n = number of seeds). " +
		"The reference rows are computed on the same splits: raw pixels, and the same encoder architecture at random initialisation."}
	tab := table{head: append([]string{"configuration"}, protocols...)}
	var bars []barGroup
	for _, c := range configs {
		row := []string{c}
		g := barGroup{name: c}
		for _, p := range protocols {
			s := top1Stats(by[c], p)
			row = append(row, s.String())
			g.vals = append(g.vals, s)
		}
		tab.rows = append(tab.rows, row)
		bars = append(bars, g)
	}
	rows, err := st.Query(`SELECT DISTINCT dataset, arch FROM baselines ORDER BY dataset, arch`)
	if err != nil {
		return nil, err
	}
	datasets := map[string]bool{} // reference rows only for the datasets of these trials
	for _, c := range configs {
		for _, t := range by[c] {
			datasets[datasetOf(t.Spec)] = true
		}
	}
	type ref struct{ d, a string }
	var refs []ref
	for rows.Next() {
		var r ref
		rows.Scan(&r.d, &r.a)
		if datasets[r.d] {
			refs = append(refs, r)
		}
	}
	rows.Close()
	for _, r := range refs {
		row := []string{"reference: " + r.d + ", " + r.a}
		g := barGroup{name: r.a}
		for _, p := range protocols {
			var v []float64
			rs, err := st.Query(`SELECT value FROM baselines WHERE dataset = ? AND arch = ? AND protocol = ? AND metric = 'top1'`, r.d, r.a, p)
			if err != nil {
				return nil, err
			}
			for rs.Next() {
				var x float64
				rs.Scan(&x)
				v = append(v, x)
			}
			rs.Close()
			s := summarize(v)
			row = append(row, s.String())
			g.vals = append(g.vals, s)
		}
		tab.rows = append(tab.rows, row)
		bars = append(bars, g)
	}
	sec.tables = append(sec.tables, tab)
	if diff := differences(configs, by, protocols); len(diff.rows) > 0 {
		sec.tables = append(sec.tables, diff)
	}
	if short := keyTable(configs, by); shortened(short) {
		sec.tables = append(sec.tables, short)
	}
	if out == "" {
		return sec, nil
	}
	img := filepath.Join("figs", "probes.png")
	if err := barChart(filepath.Join(out, img), "probe accuracy (error bars: ±1 std over seeds)", protocols, bars); err != nil {
		return nil, err
	}
	sec.images = append(sec.images, figure{img, "Probe accuracies: one bar is a configuration's mean over its seeds (error bar ±1 std), or a reference row"})
	return sec, nil
}

// trainerMetrics are the metrics the trainer logs beside a method's own (loss and MetricNames): they are on
// other scales and are not drawn with the loss terms.
var trainerMetrics = map[string]bool{"grad_norm": true, "lr": true}

// curveMetricNames are the metrics a configuration's trials logged: "loss", then every metric its method
// declares (MetricNames), whatever they are called; nothing here names a method's metrics.
func curveMetricNames(st *store.Store, trials []trialInfo) ([]string, error) {
	seen := map[string]bool{}
	for _, t := range trials {
		_, last, err := st.LastMetrics(t.ID)
		if err != nil {
			return nil, err
		}
		for name := range last {
			if !trainerMetrics[name] {
				seen[name] = true
			}
		}
	}
	var out []string
	for name := range seen {
		if name != "loss" {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	if seen["loss"] {
		out = append([]string{"loss"}, out...)
	}
	return out, nil
}

func curveSection(st *store.Store, configs []string, by map[string][]trialInfo, out string) (*section, error) {
	sec := &section{title: "Training curves", text: "Each loss term and metric a configuration's method reports: the mean over seeds, the band ±1 standard deviation."}
	for i, c := range configs {
		var series []curve
		names, err := curveMetricNames(st, by[c])
		if err != nil {
			return nil, err
		}
		for _, m := range names {
			perStep := map[int][]float64{}
			for _, t := range by[c] {
				steps, vals, err := st.Series(t.ID, m)
				if err != nil {
					return nil, err
				}
				for j, s := range steps {
					perStep[s] = append(perStep[s], vals[j])
				}
			}
			if len(perStep) == 0 {
				continue
			}
			var steps []int
			for s := range perStep {
				steps = append(steps, s)
			}
			sort.Ints(steps)
			cv := curve{name: m}
			for _, s := range steps {
				sm := summarize(perStep[s])
				cv.x = append(cv.x, float64(s))
				cv.mean = append(cv.mean, sm.Mean)
				cv.std = append(cv.std, sm.Std)
			}
			series = append(series, cv)
		}
		if len(series) == 0 {
			continue
		}
		img := filepath.Join("figs", fmt.Sprintf("curves_%d.png", i))
		if err := lineChart(filepath.Join(out, img), c, "step", "value", series); err != nil {
			return nil, err
		}
		sec.images = append(sec.images, figure{img, c + ": each loss term, mean over seeds at each logged step, band ±1 std"})
	}
	return sec, nil
}

// othersKey is a trial's sweep point without key k and its seed, as one comparable string.
func othersKey(t trialInfo, k string) string {
	var keys []string
	for kk := range t.Point {
		if kk != k && kk != spec.SeedKey {
			keys = append(keys, kk)
		}
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, kk := range keys {
		fmt.Fprintf(&b, "%s=%s\x00", kk, t.Point[kk])
	}
	return b.String()
}

// independent says whether key k was swept independently of the other swept keys (a grid or random axis):
// two trials differ in k alone (seed aside). A key zipped with others (method.align_weight beside
// method.name) never does, and a line along it would mean nothing.
func independent(trials []trialInfo, k string) bool {
	rest := func(t trialInfo) string { return othersKey(t, k) }
	vals := map[string]string{}
	for _, t := range trials {
		r := rest(t)
		if v, ok := vals[r]; ok && v != t.Point[k] {
			return true
		}
		vals[r] = t.Point[k]
	}
	return false
}

// axisSection plots accuracy against every numeric swept key with at least two values that was swept
// independently (see independent); the other swept keys are held: one line (and table rows) per combination
// of them.
func axisSection(trials []trialInfo, out string) *section {
	keys := map[string]map[float64]bool{}
	for _, t := range trials {
		for k, v := range t.Point {
			if k == spec.SeedKey {
				continue
			}
			if f, err := strconv.ParseFloat(v, 64); err == nil {
				if keys[k] == nil {
					keys[k] = map[float64]bool{}
				}
				keys[k][f] = true
			}
		}
	}
	sec := &section{title: "Accuracy against swept axes", text: "Only keys swept on their own (a grid or random axis, where two configurations differ in that key alone) are plotted; " +
		"keys zipped with others are not. The other swept keys are held: one line (and one block of rows) per combination of them. One point is the mean over seeds at that value, the band ±1 std."}
	var names []string
	for k, vals := range keys {
		if len(vals) >= 2 && independent(trials, k) {
			names = append(names, k)
		}
	}
	sort.Strings(names)
	var evs []map[string]map[string]float64
	for _, t := range trials {
		evs = append(evs, t.Evals)
	}
	readings := readingsOf(evs...)
	for i, k := range names {
		// groups: the combinations of the other varying swept keys, named the short way
		var lcs []labels.Config
		groupKey := func(t trialInfo) string { return othersKey(t, k) }
		seen := map[string]bool{}
		var groups []string
		for _, t := range trials {
			g := groupKey(t)
			if !seen[g] {
				seen[g] = true
				groups = append(groups, g)
				p := map[string]string{}
				for kk, v := range t.Point {
					if kk != k && kk != spec.SeedKey {
						p[kk] = v
					}
				}
				lcs = append(lcs, labels.Config{Key: g, Point: p})
			}
		}
		gname := labels.Short(lcs)
		var xs []float64
		for v := range keys[k] {
			xs = append(xs, v)
		}
		sort.Float64s(xs)
		head := append([]string{k}, readings...)
		if len(groups) > 1 {
			head = append([]string{"held"}, head...)
		}
		tab := table{head: head}
		cell := func(g, p string, x float64) stats {
			var v []float64
			for _, t := range trials {
				if f, err := strconv.ParseFloat(t.Point[k], 64); err == nil && f == x && groupKey(t) == g {
					if a, ok := t.Evals[p]["top1"]; ok {
						v = append(v, a)
					}
				}
			}
			return summarize(v)
		}
		for _, g := range groups {
			for _, x := range xs {
				row := []string{strconv.FormatFloat(x, 'g', 6, 64)}
				if len(groups) > 1 {
					row = append([]string{gname[g]}, row...)
				}
				any := false
				for _, p := range readings {
					st := cell(g, p, x)
					any = any || st.N > 0
					row = append(row, st.String())
				}
				if any {
					tab.rows = append(tab.rows, row)
				}
			}
		}
		sec.tables = append(sec.tables, tab)
		if out == "" {
			continue
		}
		plot := func(img, title string, series []curve, caption string) {
			if len(series) == 0 {
				return
			}
			if err := lineChart(filepath.Join(out, img), title, k, "top-1", series); err == nil {
				sec.images = append(sec.images, figure{img, caption})
			}
		}
		line := func(name, g, p string) curve {
			cv := curve{name: name}
			for _, x := range xs {
				if st := cell(g, p, x); st.N > 0 {
					cv.x, cv.mean, cv.std = append(cv.x, x), append(cv.mean, st.Mean), append(cv.std, st.Std)
				}
			}
			return cv
		}
		if len(groups) == 1 {
			var series []curve
			for _, p := range readings {
				if cv := line(p, groups[0], p); len(cv.x) > 0 {
					series = append(series, cv)
				}
			}
			plot(filepath.Join("figs", fmt.Sprintf("axis_%d.png", i)), "top-1 against "+k, series,
				k+": one line per reading; one point is the mean over seeds at that value, the band ±1 std")
			continue
		}
		for j, p := range readings {
			var series []curve
			for _, g := range groups {
				if cv := line(gname[g], g, p); len(cv.x) > 0 {
					series = append(series, cv)
				}
			}
			plot(filepath.Join("figs", fmt.Sprintf("axis_%d_%d.png", i, j)), p+" against "+k, series,
				p+" against "+k+": one line per combination of the other swept keys; one point is the mean over seeds, the band ±1 std")
		}
	}
	if len(names) == 0 {
		return nil
	}
	return sec
}

// datasetOf reads data.name from a trial's stored spec.
func datasetOf(specJSON string) string {
	var sp struct {
		Data struct{ Name string }
	}
	json.Unmarshal([]byte(specJSON), &sp)
	return sp.Data.Name
}

// top1Stats summarises a protocol's top-1 over a configuration's trials (its seeds).
func top1Stats(ts []trialInfo, protocol string) stats {
	var v []float64
	for _, t := range ts {
		if x, ok := t.Evals[protocol]["top1"]; ok {
			v = append(v, x)
		}
	}
	return summarize(v)
}

// differences compares every pair of configurations on every protocol: the difference of the means and that
// difference in units of the pooled seed-to-seed standard deviation, sqrt((sA² + sB²) / 2), the yardstick
// for "larger than the spread across seeds".
func differences(configs []string, by map[string][]trialInfo, protocols []string) table {
	tab := table{head: append([]string{"difference (first − second)"}, protocols...)}
	for i, a := range configs {
		for _, b := range configs[i+1:] {
			row := []string{a + " − " + b}
			any := false
			for _, p := range protocols {
				sa, sb := top1Stats(by[a], p), top1Stats(by[b], p)
				switch {
				case sa.N == 0 || sb.N == 0:
					row = append(row, "-")
				case sa.N < 2 || sb.N < 2:
					row = append(row, fmt.Sprintf("%+.4f (n<2)", sa.Mean-sb.Mean))
					any = true
				default:
					sd := math.Sqrt((sa.Std*sa.Std + sb.Std*sb.Std) / 2)
					if sd == 0 {
						row = append(row, fmt.Sprintf("%+.4f (no spread)", sa.Mean-sb.Mean))
					} else {
						r := (sa.Mean - sb.Mean) / sd
						if math.Abs(r) < 0.05 {
							r = 0 // no "-0.0"
						}
						row = append(row, fmt.Sprintf("%+.4f (%.1f sd)", sa.Mean-sb.Mean, r))
					}
					any = true
				}
			}
			if any {
				tab.rows = append(tab.rows, row)
			}
		}
	}
	return tab
}
