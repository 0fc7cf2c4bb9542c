package report

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"mimlab/experiment"
	"mimlab/framework/store"
)

// Status and the report name a configuration from one typed point: the same short name for every trial,
// a float axis printed the same way (0.1+0.2 reads 0.3 in both), seeds pooled under one name.
func TestStatusAndReportNameConfigurationsAlike(t *testing.T) {
	dir := t.TempDir()
	sp := filepath.Join(dir, "names.toml")
	body := strings.Replace(tinySweep, `name = "tiny"`, `name = "names"`, 1)
	body = strings.Replace(body, `"masking.num_masked" = [3, 4]`, `"masking.num_masked" = [3, 4]
"train.lr" = [0.30000000000000004, 0.1]`, 1)
	if err := os.WriteFile(sp, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	ps, err := experiment.Plan([]string{sp}, nil)
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(filepath.Join(dir, "r.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := st.AddSweep(ps[0].Raw.Name, sp, ps[0].NewTrials()); err != nil {
		t.Fatal(err)
	}
	rep, err := experiment.Status(st, "names")
	if err != nil {
		t.Fatal(err)
	}
	all, err := st.Trials("names")
	if err != nil || len(all) != 8 {
		t.Fatalf("%d trials (%v), want 8", len(all), err)
	}
	short := shortNames(all, labeler("names"))
	byConfig := map[string]map[string]bool{}
	for _, ts := range rep.Trials {
		name, seed, ok := strings.Cut(ts.Short, " seed=")
		if !ok || (seed != "1" && seed != "2") {
			t.Errorf("status %q: no seed", ts.Short)
		}
		if got := short(ts.Trial); got != name {
			t.Errorf("trial %s: status names it %q, the report %q", ts.Name, name, got)
		}
		if strings.Contains(ts.Short, "0.30000000000000004") || strings.Contains(ts.ConfigName(), "0.30000000000000004") {
			t.Errorf("trial %s (%s): the float axis is not printed as names print it", ts.Name, ts.Short)
		}
		if byConfig[ts.ConfigName()] == nil {
			byConfig[ts.ConfigName()] = map[string]bool{}
		}
		byConfig[ts.ConfigName()][seed] = true
		if key := experiment.StoredConfig(ts.Spec).Key; strings.Contains(key, `"seed"`) {
			t.Errorf("trial %s: configuration key holds the seed: %s", ts.Name, key)
		}
	}
	if len(byConfig) != 4 {
		t.Errorf("%d configurations, want 4: %v", len(byConfig), byConfig)
	}
	for c, seeds := range byConfig {
		if len(seeds) != 2 {
			t.Errorf("configuration %s has seeds %v, want both", c, seeds)
		}
	}
	// Seeds of one configuration share its key; different configurations do not.
	keys := map[string]string{}
	for _, tr := range all {
		k := experiment.StoredConfig(tr.Spec).Key
		if prev, ok := keys[tr.ConfigName()]; ok && prev != k {
			t.Errorf("%s: two seeds with different configuration keys", tr.ConfigName())
		}
		keys[tr.ConfigName()] = k
	}
	seen := map[string]bool{}
	for _, k := range keys {
		if seen[k] {
			t.Errorf("two configurations share a key")
		}
		seen[k] = true
	}
}
