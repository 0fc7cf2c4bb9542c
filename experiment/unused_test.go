package experiment

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A method that leaves sections unread (I-JEPA: no targets, no regressor) keeps them out of its trials'
// identity and refuses them beside its name; keys from a base spec or from a zip over methods are dropped.
func TestUnusedSectionsLeaveTheIdentityAndAreRefusedBesideTheMethod(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	write("base.toml", `name = "b"
[data]
name = "synthetic"
image_size = 12
patch_size = 4
batch_size = 8
num_train = 32
num_test = 16
[masking]
num_masked = 4
min_block = 2
[targets]
name = "pixel"
normalize = %s
[regressor]
name = "cae"
depth = 2
[train]
steps = 4
`)
	base := func(norm string) {
		b, _ := os.ReadFile(filepath.Join(dir, "base.toml"))
		write("base_"+norm+".toml", strings.Replace(string(b), "%s", norm, 1))
	}
	base("true")
	base("false")
	ijepa := func(baseFile, extra string) string {
		return "name = \"u\"\nbase = \"" + baseFile + "\"\n[method]\nname = \"ijepa\"\n[decoder]\nname = \"mae\"\n" + extra
	}
	hash := func(t *testing.T, file string, overrides ...string) (string, string, error) {
		t.Helper()
		ps, err := Plan([]string{file}, overrides)
		if err != nil {
			return "", "", err
		}
		return ps[0].Trials[0].Hash, ps[0].Trials[0].Full(), nil
	}
	h1, full, err := hash(t, write("a.toml", ijepa("base_true.toml", "")))
	if err != nil {
		t.Fatal(err)
	}
	h2, _, err := hash(t, write("b.toml", ijepa("base_false.toml", "")))
	if err != nil {
		t.Fatal(err)
	}
	if h1 != h2 {
		t.Errorf("targets.normalize from the base changed an ijepa trial's identity: %s vs %s", h1, h2)
	}
	if strings.Contains(full, `"targets"`) || strings.Contains(full, `"regressor"`) {
		t.Errorf("the stored spec holds an unused section:\n%s", full)
	}
	res, err := ResolveStored(full)
	if err != nil {
		t.Fatal(err)
	}
	if res.Hash() != h1 {
		t.Errorf("the stored spec resolves to %s, planned %s", res.Hash(), h1)
	}
	if got := Impl(res, "regressor"); got != "none" {
		t.Errorf("the unused regressor resolves to %q, want none", got)
	}
	for _, c := range []struct {
		name, file string
		set        []string
		want       string
	}{
		{"-set", "a.toml", []string{"targets.name=dvae"}, `targets.name: method.name "ijepa" does not use [targets]`},
		{"same file", write("c.toml", ijepa("base_true.toml", "[targets]\nnormalize = false\n")), nil, `targets.normalize: method.name "ijepa" does not use [targets]`},
		{"regressor beside", write("d.toml", ijepa("base_true.toml", "[regressor]\ndepth = 3\n")), nil, `regressor.depth: method.name "ijepa" does not use [regressor]`},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := c.file
			if !filepath.IsAbs(f) {
				f = filepath.Join(dir, f)
			}
			_, _, err := hash(t, f, c.set...)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want %q", err, c.want)
			}
		})
	}
	// A zip over methods sets targets and regressor for every position: the ijepa position drops them, the
	// CAE position keeps them.
	zip := write("z.toml", `name = "z"
base = "base_true.toml"
[sweep.zip]
"method.name" = ["cae", "ijepa"]
"regressor.name" = ["cae", "none"]
"decoder.name" = ["transformer", "mae"]
"targets.normalize" = [true, false]
`)
	ps, err := Plan([]string{zip}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(ps[0].Trials); n != 2 {
		t.Fatalf("%d trials", n)
	}
	if !strings.Contains(ps[0].Trials[0].Full(), `"targets"`) || strings.Contains(ps[0].Trials[1].Full(), `"targets"`) {
		t.Errorf("CAE must keep [targets] and I-JEPA drop it")
	}
}
