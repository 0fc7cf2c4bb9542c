package experiment_test

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"mimlab/analysis/report"
	"mimlab/experiment"
	"mimlab/framework/runner"
	"mimlab/framework/store"
)

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// A database written before trial identity moved to TOML-key space (testdata/legacy, made by commit
// 8b2b77b with its specs and a results document filled from it): today's code plans the same trials, finds
// every one of them done under the new identity, runs nothing again, and the document's tables still check.
func TestLegacyDatabaseMigrates(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"legacy.db", "legacy.toml", "legacy_dvae.toml", "RESULTS.md"} {
		copyFile(t, filepath.Join("testdata", "legacy", f), filepath.Join(dir, f))
	}
	db := filepath.Join(dir, "legacy.db")
	st, err := store.Open(db)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	before, err := st.Trials("")
	if err != nil {
		t.Fatal(err)
	}
	ps, err := experiment.Plan([]string{filepath.Join(dir, "legacy.toml"), filepath.Join(dir, "legacy_dvae.toml")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	planned := map[string]string{}
	for _, p := range ps {
		for _, tr := range p.Trials {
			planned[tr.Hash] = tr.Name
		}
	}
	if len(planned) != len(before) || len(before) != 8 {
		t.Fatalf("planned %d trials, the fixture holds %d (want 8 each)", len(planned), len(before))
	}
	for _, tr := range before {
		if _, ok := planned[tr.Hash]; ok {
			t.Fatalf("trial %d already has a new-style hash %s: the fixture is not a legacy database", tr.ID, tr.Hash)
		}
	}
	var log strings.Builder
	if err := experiment.Reidentify(st, filepath.Join(dir, "runs"), &log); err != nil {
		t.Fatal(err)
	}
	after, err := st.Trials("")
	if err != nil {
		t.Fatal(err)
	}
	for i, tr := range after {
		label, ok := planned[tr.Hash]
		if !ok {
			t.Errorf("trial %d (%s) has hash %s, which today's specs do not plan", tr.ID, tr.Name, tr.Hash)
			continue
		}
		if label != tr.Name || tr.State != store.Done || tr.ID != before[i].ID {
			t.Errorf("trial %d: name %q state %s; planned as %q", tr.ID, tr.Name, tr.State, label)
		}
		var legacy string
		if err := st.Raw().QueryRow(`SELECT legacy_hash FROM trials WHERE id = ?`, tr.ID).Scan(&legacy); err != nil || legacy != before[i].Hash {
			t.Errorf("trial %d: legacy_hash %q (%v), want %q", tr.ID, legacy, err, before[i].Hash)
		}
		if len(tr.Point) == 0 {
			t.Errorf("trial %d: no sweep point stored", tr.ID)
		}
	}
	// Resuming registers the same trials and runs none of them.
	res, err := experiment.RunSpecs(context.Background(), st, ps, experiment.RunOptions{Runs: filepath.Join(dir, "runs"), Log: io.Discard,
		Runner: runner.Options{Workers: 1, Log: io.Discard}})
	if err != nil {
		t.Fatal(err)
	}
	if res.Done+res.Failed+res.Interrupted != 0 {
		t.Fatalf("resuming the legacy sweeps ran trials again: %+v", res)
	}
	n := 0
	if err := st.Raw().QueryRow(`SELECT COUNT(*) FROM trials`).Scan(&n); err != nil || n != 8 {
		t.Fatalf("%d trials after resuming (%v), want 8", n, err)
	}
	st.Close()
	// The results document filled by the old code gives the same numbers from the migrated database (the
	// names of configurations are shorter now, and a key table follows; the numbers must not move).
	doc := filepath.Join(dir, "RESULTS.md")
	docBefore, err := os.ReadFile(doc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := report.ResultsDoc(db, doc, false); err != nil {
		t.Fatalf("report --fill on the migrated database: %v", err)
	}
	docAfter, _ := os.ReadFile(doc)
	// The old document also had an accuracy-against-method.align_weight table: that key is zipped with
	// method.name, so the report no longer draws it (its line meant nothing); compare the other tables.
	var kept []string
	for _, tab := range strings.Split(string(docBefore), "\n\n") {
		if !strings.HasPrefix(tab, "| method.align_weight |") {
			kept = append(kept, tab)
		}
	}
	docBefore = []byte(strings.Join(kept, "\n\n"))
	if strings.Contains(string(docAfter), "| method.align_weight |") {
		t.Error("the report still plots method.align_weight, a key zipped with method.name")
	}
	num := regexp.MustCompile(`[+-]?\d\.\d{4}(?: ± \d\.\d{4})? \((?:n=\d+|[^)]*sd|n<2|no spread)\)`)
	if b, a := num.FindAllString(string(docBefore), -1), num.FindAllString(string(docAfter), -1); len(b) == 0 || strings.Join(b, "|") != strings.Join(a, "|") {
		t.Fatalf("the migrated database gives other numbers:\nbefore %v\nafter  %v", b, a)
	}
	if _, err := report.ResultsDoc(db, doc, true); err != nil {
		t.Fatalf("report --check after the fill: %v", err)
	}
}

// Execution-only keys never enter a trial's identity, and a stored spec resolves back to the same identity
// (numbers through JSON, -0.0, integers in float keys).
func TestIdentityOfRealSpecs(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	base := "name = \"x\"\n[data]\nname = \"synthetic\"\nimage_size = 12\n[masking]\nnum_masked = 4\nmin_block = 2\n[train]\nweight_decay = %s\nbackend = %q\ndevice = %q\n"
	hash := func(wd, backend, device string) string {
		ps, err := experiment.Plan([]string{write("x.toml", fmt.Sprintf(base, wd, backend, device))}, nil)
		if err != nil {
			t.Fatal(err)
		}
		tr := ps[0].Trials[0]
		res, err := experiment.ResolveStored(tr.Full())
		if err != nil {
			t.Fatal(err)
		}
		if res.Hash() != tr.Hash {
			t.Fatalf("weight_decay %s: the stored spec resolves to %s, the spec to %s", wd, res.Hash(), tr.Hash)
		}
		return tr.Hash
	}
	a := hash("0.0", "go", "cpu")
	if b := hash("0.0", "ort", "cuda"); b != a {
		t.Errorf("train.backend/device changed the identity: %s -> %s", a, b)
	}
	if b := hash("-0.0", "go", "cpu"); b != a {
		t.Errorf("-0.0 and 0.0 differ: %s, %s", b, a)
	}
	if b := hash("2", "go", "cpu"); b == a {
		t.Errorf("weight_decay 2 has the identity of 0")
	}
}

// A spec stored by an older mimlab in TOML keys, holding a key today's implementation no longer has (here
// synthetic's num_train under mnist, as the shared data config wrote it), is re-identified without it.
func TestStoredSpecWithRetiredKeys(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "x.toml")
	if err := os.WriteFile(p, []byte("name = \"x\"\n[data]\nname = \"mnist\"\n[train]\nsteps = 3\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ps, err := experiment.Plan([]string{p}, nil)
	if err != nil {
		t.Fatal(err)
	}
	tr := ps[0].Trials[0]
	old := strings.Replace(tr.Full(), `"data": {`, `"data": {"num_train": 0, "test_fraction": 0.2,`, 1)
	if old == tr.Full() {
		t.Fatal("could not plant the retired keys")
	}
	res, err := experiment.ResolveStored(old)
	if err != nil {
		t.Fatal(err)
	}
	if res.Hash() != tr.Hash {
		t.Fatalf("stored spec with retired keys resolves to %s, the spec to %s", res.Hash(), tr.Hash)
	}
}
