package report

import (
	"context"
	"image/png"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"mimlab/experiment"
	"mimlab/framework/runner"
	"mimlab/framework/spec"
	"mimlab/framework/store"
	"mimlab/framework/sweep"
	"mimlab/nn/nntest"
)

const tinySweep = `name = "tiny"
[data]
name = "synthetic"
image_size = 12
patch_size = 4
batch_size = 16
num_train = 64
num_test = 48
classes = 4
[masking]
num_masked = 4
min_block = 2
[targets]
normalize = true
[encoder]
dim = 16
depth = 1
heads = 2
[regressor]
depth = 1
[decoder]
depth = 1
[train]
steps = 8
warmup_steps = 2
checkpoint_every = 4
log_every = 2
backend = "go"
[eval]
protocols = ["linear", "knn"]
[sweep]
seeds = [1, 2]
[sweep.grid]
"masking.num_masked" = [3, 4]
`

// After a sweep, the report writes index.html whose every image exists and is a valid PNG, with the
// figures of each kind; a second run reuses the cached model figures.
func TestReportImagesAreValidPNGs(t *testing.T) {
	dir := t.TempDir()
	sp := filepath.Join(dir, "tiny.toml")
	os.WriteFile(sp, []byte(tinySweep), 0o644)
	raw, err := spec.Load(sp, nil)
	if err != nil {
		t.Fatal(err)
	}
	trials, err := sweep.Expand(raw, experiment.Sections())
	if err != nil {
		t.Fatal(err)
	}
	db := filepath.Join(dir, "results.db")
	st, err := store.Open(db)
	if err != nil {
		t.Fatal(err)
	}
	env := experiment.NewEnv(nntest.Go(t), "go", filepath.Join(dir, "runs"), io.Discard)
	for _, tr := range trials {
		env.AddSpec(tr.Hash, tr.Resolved)
	}
	nts := experiment.Planned{Raw: raw, Trials: trials}.NewTrials() // the rows sweep run registers
	sid, err := st.AddSweep(raw.Name, sp, nts)
	if err != nil {
		t.Fatal(err)
	}
	sum := runner.Run(context.Background(), st, sid, runner.Options{Workers: 1, Log: io.Discard}, env.Job)
	st.Close()
	if sum.Done != 4 {
		t.Fatalf("%+v", sum)
	}
	out := filepath.Join(dir, "report")
	opt := Options{DB: db, Out: out, Markdown: true, Backend: "go", Runs: filepath.Join(dir, "runs"), Figures: true, TSNEImages: 6, Log: io.Discard}
	if err := Generate(opt); err != nil {
		t.Fatal(err)
	}
	html, err := os.ReadFile(filepath.Join(out, "index.html"))
	if err != nil {
		t.Fatal(err)
	}
	srcs := regexp.MustCompile(`<img src="([^"]+)"`).FindAllStringSubmatch(string(html), -1)
	kinds := map[string]int{}
	for _, m := range srcs {
		p := filepath.Join(out, m[1])
		f, err := os.Open(p)
		if err != nil {
			t.Fatalf("index.html references %s: %v", m[1], err)
		}
		if _, err := png.Decode(f); err != nil {
			t.Fatalf("%s is not a valid PNG: %v", m[1], err)
		}
		f.Close()
		for _, k := range []string{"probes", "curves", "axis", "tsne_class", "tsne_fg", "attention", "recon"} {
			if strings.Contains(m[1], k) {
				kinds[k]++
			}
		}
	}
	for _, k := range []string{"probes", "curves", "axis", "tsne_class", "tsne_fg", "attention", "recon"} {
		if kinds[k] == 0 {
			t.Errorf("no %s figure in index.html", k)
		}
	}
	if md, err := os.ReadFile(filepath.Join(out, "REPORT.md")); err != nil || !strings.Contains(string(md), "± ") {
		t.Errorf("REPORT.md lacks mean ± std: %v", err)
	}
	// Re-run: model figures come from the cache (their files are not rewritten).
	cached := filepath.Join(out, srcs[len(srcs)-1][1])
	before, _ := os.Stat(cached)
	if err := Generate(opt); err != nil {
		t.Fatal(err)
	}
	after, _ := os.Stat(cached)
	if !after.ModTime().Equal(before.ModTime()) {
		t.Error("a second report recomputed a cached model figure")
	}
	checkResultsDoc(t, db, dir)
	checkAttentionDoc(t, db, dir)
	// The report's attention section carries Fig. 6 in numbers: a row per configuration over its 2 seeds, and
	// the uniform reference of the 3x3 grid (1 central patch of 9).
	md, _ := os.ReadFile(filepath.Join(out, "REPORT.md"))
	for _, want := range []string{"| configuration | central mass | image spread | entropy / log N | image spread |", "| reference: uniform map, 3x3 grid | 0.1111 | 0 | 1.0000 | 0 |"} {
		if !strings.Contains(string(md), want) {
			t.Errorf("REPORT.md lacks %q", want)
		}
	}
	if n := len(regexp.MustCompile(`(?m)^\| num_masked=[34] \| 0\.\d{4} ± \d\.\d{4} \(n=2\) \| 0\.\d{4} \| 0\.\d{4} ± \d\.\d{4} \(n=2\) \| 0\.\d{4} \|$`).FindAllString(string(md), -1)); n != 2 {
		t.Errorf("REPORT.md has %d attention concentration rows over 2 seeds, want 2:\n%s", n, md)
	}
}

// checkAttentionDoc: an attention block is filled from the checkpoints and then checks clean; without them
// (ResultsDoc, no models) it is an error saying what to give, not a silently kept stale block.
func checkAttentionDoc(t *testing.T, db, dir string) {
	doc := filepath.Join(dir, "ATTENTION.md")
	os.WriteFile(doc, []byte("<!-- mimlab:attention sweep=tiny -->\nstale\n<!-- mimlab:end -->\n"), 0o644)
	if _, err := ResultsDoc(db, doc, true); err == nil || !strings.Contains(err.Error(), "block attention sweep=tiny") || !strings.Contains(err.Error(), "--runs") {
		t.Fatalf("an attention block without checkpoints: %v", err)
	}
	models := &Models{Backend: "go", Runs: filepath.Join(dir, "runs"), Log: io.Discard}
	if _, err := ResultsDocWith(db, doc, true, models); err == nil || !strings.Contains(err.Error(), "attention sweep=tiny differs") {
		t.Fatalf("check of a stale attention block: %v", err)
	}
	if _, err := ResultsDocWith(db, doc, false, models); err != nil {
		t.Fatal(err)
	}
	filled, _ := os.ReadFile(doc)
	if !strings.Contains(string(filled), "| num_masked=3 | 0.") || !strings.Contains(string(filled), "(n=2)") {
		t.Errorf("filled attention block:\n%s", filled)
	}
	if _, err := ResultsDocWith(db, doc, true, models); err != nil {
		t.Fatalf("check right after fill: %v", err)
	}
}

// checkResultsDoc: --fill writes the sweep's tables into a results document, --check accepts it, and a number
// edited by hand (or a block left stale) is caught with the line named, without the file being rewritten.
func checkResultsDoc(t *testing.T, db, dir string) {
	doc := filepath.Join(dir, "RESULTS.md")
	os.WriteFile(doc, []byte("# r\n\n<!-- mimlab:tables sweep=tiny -->\nstale\n<!-- mimlab:end -->\n\nreading\n"), 0o644)
	if _, err := ResultsDoc(db, doc, true); err == nil || !strings.Contains(err.Error(), "sweep=tiny differs") {
		t.Fatalf("check of a stale block: %v", err)
	}
	if sw, err := ResultsDoc(db, doc, false); err != nil || len(sw) != 1 {
		t.Fatalf("fill: %v %v", sw, err)
	}
	filled, _ := os.ReadFile(doc)
	for _, want := range []string{"| num_masked=3 | ", " ± ", "(n=2)", "num_masked=3 − num_masked=4", "| num_masked=3 | masking.num_masked=3 |", " sd)", "reference: synthetic, raw_pixels", "\nreading\n"} {
		if !strings.Contains(string(filled), want) {
			t.Errorf("filled document lacks %q:\n%s", want, filled)
		}
	}
	if _, err := ResultsDoc(db, doc, true); err != nil {
		t.Fatalf("check right after fill: %v", err)
	}
	m := regexp.MustCompile(`0\.\d{4} ± `).FindString(string(filled))
	tampered := strings.Replace(string(filled), m, "0.9999 ± ", 1)
	os.WriteFile(doc, []byte(tampered), 0o644)
	if _, err := ResultsDoc(db, doc, true); err == nil || !strings.Contains(err.Error(), "0.9999") {
		t.Fatalf("check of a hand-edited number: %v", err)
	}
	if now, _ := os.ReadFile(doc); string(now) != tampered {
		t.Error("--check rewrote the document")
	}
}

// The difference table: mean differences and their size in pooled standard deviations, for every pair.
func TestDifferences(t *testing.T) {
	mk := func(vals ...float64) []trialInfo {
		var out []trialInfo
		for _, v := range vals {
			out = append(out, trialInfo{Evals: map[string]map[string]float64{"linear": {"top1": v}}})
		}
		return out
	}
	cases := []struct {
		name string
		a, b []trialInfo
		want string
	}{
		{"two sd apart", mk(0.8, 0.9), mk(0.6, 0.7), "+0.2000 (2.8 sd)"}, // sd of each: 0.0707
		{"negative", mk(0.6, 0.7), mk(0.8, 0.9), "-0.2000 (-2.8 sd)"},
		{"one seed", mk(0.8), mk(0.6, 0.7), "+0.1500 (n<2)"},
		{"no spread", mk(0.5, 0.5), mk(0.4, 0.4), "+0.1000 (no spread)"},
		{"missing", mk(), mk(0.4, 0.4), ""},
	}
	for _, c := range cases {
		tab := differences([]string{"A", "B"}, map[string][]trialInfo{"A": c.a, "B": c.b}, []string{"linear"})
		got := ""
		if len(tab.rows) == 1 {
			got = tab.rows[0][1]
		}
		if got != c.want {
			t.Errorf("%s: got %q, want %q", c.name, got, c.want)
		}
	}
}

// --sweep selects a results block whose sweep list is wholly among the names asked for: a block pooling two
// sweeps is filled by `--sweep a,b` (and by a list that also names others), not by one of its sweeps alone.
func TestBlockSelection(t *testing.T) {
	for _, c := range []struct {
		block string
		only  []string
		want  bool
	}{
		{"mask_ratio", []string{"mask_ratio"}, true},
		{"mask_ratio,mask_ratio_random", []string{"mask_ratio", "mask_ratio_random"}, true},
		{"mask_ratio,mask_ratio_random", []string{"cae_vs_beit_mnist", "mask_ratio_random", "mask_ratio"}, true},
		{"mask_ratio,mask_ratio_random", []string{"mask_ratio"}, false},
		{"cae_vs_beit_mnist", []string{"mask_ratio"}, false},
	} {
		if got := blockIn(c.block, c.only); got != c.want {
			t.Errorf("block sweep=%s, --sweep %v: selected %v, want %v", c.block, c.only, got, c.want)
		}
	}
}
