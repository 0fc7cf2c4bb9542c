package experiment_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"mimlab/experiment"
)

// [sweep] labels: a list names the zip positions, a template takes resolved values; bad ones are refused
// at plan time naming the key.
func TestSweepLabels(t *testing.T) {
	base := `name = "l"
[data]
name = "synthetic"
image_size = 12
patch_size = 4
[masking]
num_masked = 4
min_block = 2
[sweep]
seeds = [1, 2]
[sweep.zip]
"method.name" = ["cae", "beit"]
"regressor.name" = ["cae", "none"]
"decoder.name" = ["transformer", "linear"]
`
	cases := []struct {
		name, labels string
		want         []string // per trial, in plan order
		err          string
	}{
		{"list", `labels = ["CAE", "BEiT"]`, []string{"CAE", "BEiT", "CAE", "BEiT"}, ""},
		{"template", `labels = "{method.name}/{decoder.name} d{encoder.dim}"`, []string{"cae/transformer d64", "beit/linear d64", "cae/transformer d64", "beit/linear d64"}, ""},
		{"none", ``, []string{"", "", "", ""}, ""},
		{"wrong length", `labels = ["CAE"]`, nil, "labels has 1 entries, [sweep.zip] 2 positions"},
		{"duplicates", `labels = ["X", "X"]`, nil, "distinct"},
		{"unknown key", `labels = "{method.nme}"`, nil, "{method.nme} is not a key"},
		{"not a string", `labels = 3`, nil, "labels: want a list"},
		{"control character", `labels = ["a\u0007", "b"]`, nil, "control character"},
	}
	hashes := map[string]string{}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "l.toml")
			text := strings.Replace(base, "[sweep]\n", "[sweep]\n"+c.labels+"\n", 1)
			if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
				t.Fatal(err)
			}
			ps, err := experiment.Plan([]string{p}, nil)
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) || !strings.Contains(err.Error(), p) {
					t.Fatalf("error %v, want one naming %s and %q", err, p, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got, hs []string
			for _, tr := range ps[0].Trials {
				got = append(got, tr.Label)
				hs = append(hs, tr.Hash)
			}
			hashes[c.name] = strings.Join(hs, ",")
			if strings.Join(got, "|") != strings.Join(c.want, "|") {
				t.Fatalf("labels %q, want %q", got, c.want)
			}
		})
	}
	if hashes["list"] != hashes["none"] || hashes["template"] != hashes["none"] {
		t.Fatalf("labels changed trial identities: %v", hashes)
	}
}
