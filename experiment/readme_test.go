package experiment_test

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"mimlab/experiment"
)

// The README's spec table is checked against the registry: every section has a row, the row names every
// registered implementation (the default first) and every key an implementation or fixed section has, so
// the table cannot drift from the code.
func TestREADMESpecTableMatchesRegistry(t *testing.T) {
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string][2]string{} // section -> names cell, keys cell
	re := regexp.MustCompile("(?m)^\\| `\\[([a-z]+)\\]` \\|\\s*([^|]*?)\\s*\\|\\s*(.*) \\|$")
	for _, m := range re.FindAllStringSubmatch(string(b), -1) {
		rows[m[1]] = [2]string{m[2], m[3]}
	}
	names := regexp.MustCompile("`([a-z0-9-]+)`")
	byKind := map[string][]experiment.Component{}
	var kinds []string
	for _, c := range experiment.Registered() {
		if _, ok := byKind[c.Kind]; !ok {
			kinds = append(kinds, c.Kind)
		}
		byKind[c.Kind] = append(byKind[c.Kind], c)
	}
	for _, kind := range kinds {
		row, ok := rows[kind]
		if !ok {
			t.Errorf("README has no row for [%s]", kind)
			continue
		}
		var listed []string
		for _, m := range names.FindAllStringSubmatch(row[0], -1) {
			listed = append(listed, m[1])
		}
		want := map[string]bool{}
		for _, c := range byKind[kind] {
			if c.Name == "" {
				continue
			}
			want[c.Name] = true
			if c.Default && (len(listed) == 0 || listed[0] != c.Name) {
				t.Errorf("[%s]: the default %q is not listed first (%v)", kind, c.Name, listed)
			}
		}
		for _, n := range listed {
			if !want[n] {
				t.Errorf("[%s]: README lists %q, which is not registered", kind, n)
			}
			delete(want, n)
		}
		for n := range want {
			t.Errorf("[%s]: %q is registered but not in README", kind, n)
		}
		for _, c := range byKind[kind] {
			for _, k := range c.Keys {
				if !strings.Contains(row[1], "`"+k.Key+"`") {
					t.Errorf("[%s]: key %q of %q is not in README's row", kind, k.Key, c.Name)
				}
			}
		}
	}
}
