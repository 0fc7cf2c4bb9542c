package report

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"mimlab/framework/spec"
)

// The repository's RESULTS.md: every generated block is filled (a table with numbers and seed counts) and names sweeps
// that shipped specs define, so `report --fill` / `--check` on a database built from them can regenerate it.
func TestRepositoryResultsDocument(t *testing.T) {
	src, err := os.ReadFile("../../RESULTS.md")
	if err != nil {
		t.Fatal(err)
	}
	specs, _ := filepath.Glob("../../experiments/*.toml")
	names := map[string]bool{}
	for _, p := range specs {
		r, err := spec.Load(p, nil)
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		names[r.Name] = true
	}
	blocks := blockRE.FindAllStringSubmatch(string(src), -1)
	if len(blocks) == 0 {
		t.Fatal("RESULTS.md has no generated table blocks")
	}
	for _, b := range blocks {
		for _, sw := range strings.Split(b[2], ",") {
			if !names[sw] {
				t.Errorf("RESULTS.md block names sweep %q, which no experiments/*.toml defines", sw)
			}
		}
		// filled: a table with at least one number and its seed count (a block of single-seed readings, such
		// as a budget sweep stopped part-way, has no ±)
		if !strings.Contains(b[3], "| configuration |") || !regexp.MustCompile(`\d\.\d{4}(?: ± \d\.\d{4})? \(n=`).MatchString(b[3]) {
			t.Errorf("RESULTS.md block sweep=%s is not filled (run `go run ./cmd/report --fill RESULTS.md`)", b[2])
		}
	}
}
