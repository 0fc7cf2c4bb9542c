package spec_test

import (
	"os"
	"path/filepath"
	"testing"

	"mimlab/experiment"
	"mimlab/framework/spec"
	"mimlab/framework/sweep"
)

// FuzzSpec feeds arbitrary text to the spec loader, resolver and sweep expansion: every input must give
// trials or an error, never a panic. The seed corpus (below and testdata/fuzz) runs with `go test`.
func FuzzSpec(f *testing.F) {
	seeds := []string{
		"name = \"x\"\n",
		"name = \"x\"\n[masking]\nnum_masked = 3\n",
		"name = \"x\"\n[data]\nname = \"synthetic\"\nimage_size = 12\n[sweep]\nseeds = [1, 2]\n[sweep.grid]\n\"masking.num_masked\" = [2, 4]\n",
		"name = \"x\"\n[sweep.random]\nn = 2\n[sweep.random.params]\n\"train.lr\" = { dist = \"loguniform\", low = 1e-4, high = 1e-2 }\n",
		"name = \"x\"\n[sweep.zip]\n\"method.name\" = [\"cae\", \"beit\"]\n\"regressor.name\" = [\"cae\"]\n",
		"name = 3\n",
		"[data\n",
		"name = \"x\"\n[encoder]\ndim = -4\nheads = 0\n",
		"name = \"x\"\nbase = \"x.toml\"\n",
		"name = \"x\"\n[train]\nsteps = 1e400\n",
		"name = \"x\"\n[eval]\nprotocols = [1, 2]\n",
		"name = \"x\"\n[sweep.random]\nn = 3\n[sweep.random.params]\n\"a.b\" = { dist = \"choice\", values = [] }\n",
	}
	for _, s := range seeds {
		f.Add(s)
	}
	sections := experiment.Sections()
	f.Fuzz(func(t *testing.T, text string) {
		dir := t.TempDir()
		p := filepath.Join(dir, "x.toml")
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		raw, err := spec.Load(p, nil)
		if err != nil {
			return
		}
		ts, err := sweep.Expand(raw, sections)
		if err != nil {
			return
		}
		if len(ts) > 10000 {
			t.Skip("huge sweep")
		}
		for _, tr := range ts {
			if tr.Hash == "" {
				t.Fatal("trial without identity")
			}
			_ = experiment.CheckCross(tr.Resolved)
		}
	})
}
