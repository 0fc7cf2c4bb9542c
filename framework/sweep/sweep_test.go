package sweep_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"mimlab/experiment"
	"mimlab/framework/spec"
	"mimlab/framework/sweep"
)

// A key swept by two axes is an error naming both: the later axis would overwrite the earlier one's values
// at every point and drop that axis without a word.
func TestOneAxisPerKey(t *testing.T) {
	cases := []struct {
		name, sweep string
		trials      int    // when accepted
		err         string // when refused
	}{
		{"seeds and a grid of other keys", "[sweep]\nseeds = [1, 2]\n[sweep.grid]\n\"train.lr\" = [1e-3, 2e-3, 3e-3]\n", 6, ""},
		{"seeds and a grid of train.seed", "[sweep]\nseeds = [1, 2]\n[sweep.grid]\n\"train.seed\" = [3, 4, 5]\n", 0,
			`"train.seed" is swept by both [sweep.grid] and [sweep] seeds`},
		{"seeds and a zip of train.seed", "[sweep]\nseeds = [1]\n[sweep.zip]\n\"train.seed\" = [3, 4]\n", 0,
			`"train.seed" is swept by both [sweep.zip] and [sweep] seeds`},
		{"a grid and a zip of one key", "[sweep.grid]\n\"train.lr\" = [1e-3]\n[sweep.zip]\n\"train.lr\" = [2e-3]\n", 0,
			`"train.lr" is swept by both [sweep.grid] and [sweep.zip]`},
		{"a grid and a random draw of one key", "[sweep.grid]\n\"train.lr\" = [1e-3]\n[sweep.random]\nn = 2\nseed = 1\n[sweep.random.params]\n\"train.lr\" = { dist = \"uniform\", low = 1e-4, high = 1e-3 }\n", 0,
			`"train.lr" is swept by both [sweep.grid] and [sweep.random.params]`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "s.toml")
			if err := os.WriteFile(p, []byte("name = \"s\"\n"+c.sweep), 0o644); err != nil {
				t.Fatal(err)
			}
			raw, err := spec.Load(p, nil)
			if err != nil {
				t.Fatal(err)
			}
			trials, err := sweep.Expand(raw, experiment.Sections())
			switch {
			case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
				t.Fatalf("%d trials, error %v; want an error saying %s", len(trials), err, c.err)
			case c.err == "" && (err != nil || len(trials) != c.trials):
				t.Fatalf("%d trials (%v), want %d", len(trials), err, c.trials)
			}
		})
	}
}
