package spec

import (
	"strings"
	"testing"

	"mimlab/framework/registry"
)

type alpha struct {
	Name  string  `toml:"name"`
	Width int     `toml:"width"`
	Rate  float64 `toml:"rate"`
}

func (alpha) Validate() error { return nil }

// alphaPlus is alpha with one more key, as after a release that adds an option to alpha.
type alphaPlus struct {
	Name  string  `toml:"name"`
	Width int     `toml:"width"`
	Rate  float64 `toml:"rate"`
	Extra bool    `toml:"extra"`
}

func (alphaPlus) Validate() error { return nil }

// alphaRenamed is alpha with its Go fields renamed (same TOML keys).
type alphaRenamed struct {
	Impl string  `toml:"name"`
	W    int     `toml:"width"`
	LR   float64 `toml:"rate"`
}

func (alphaRenamed) Validate() error { return nil }

type beta struct {
	Name  string `toml:"name"`
	Depth int    `toml:"depth"`
}

func (beta) Validate() error { return nil }

type run struct {
	Seed    uint64 `toml:"seed"`
	Backend string `toml:"backend" exec:"true"`
}

func (run) Validate() error { return nil }

type fixedSection struct {
	name string
	fn   func() registry.Config
}

func (f fixedSection) Name() string                        { return f.name }
func (f fixedSection) Default() string                     { return "" }
func (f fixedSection) Names() []string                     { return nil }
func (f fixedSection) New(string) (registry.Config, error) { return f.fn(), nil }

// kind builds a registry with the given alpha config and beta.
func kind(newAlpha func() registry.Config) []Section {
	k := registry.NewKind[int]("comp", "test").WithDefault("alpha")
	k.Register(registry.Entry[int]{Name: "alpha", NewConfig: newAlpha})
	k.Register(registry.Entry[int]{Name: "beta", NewConfig: func() registry.Config { return &beta{Name: "beta", Depth: 2} }})
	return []Section{k, fixedSection{"run", func() registry.Config { return &run{Seed: 1, Backend: "auto"} }}}
}

func hashOf(t *testing.T, sections []Section, tree map[string]any) string {
	t.Helper()
	res, err := ResolveTree("x.toml", tree, sections)
	if err != nil {
		t.Fatal(err)
	}
	return res.Hash()
}

func TestIdentityIsInTOMLKeySpace(t *testing.T) {
	base := kind(func() registry.Config { return &alpha{Name: "alpha", Width: 4, Rate: 0.5} })
	plus := kind(func() registry.Config { return &alphaPlus{Name: "alpha", Width: 4, Rate: 0.5} })
	renamed := kind(func() registry.Config { return &alphaRenamed{Impl: "alpha", W: 4, LR: 0.5} })
	betaTree := func() map[string]any {
		return map[string]any{"name": "s", "comp": map[string]any{"name": "beta", "depth": int64(3)}}
	}
	alphaTree := func() map[string]any {
		return map[string]any{"name": "s", "comp": map[string]any{"width": int64(8)}, "run": map[string]any{"backend": "go"}}
	}
	if a, b := hashOf(t, base, betaTree()), hashOf(t, plus, betaTree()); a != b {
		t.Errorf("adding a key to alpha changed beta's identity: %s -> %s", a, b)
	}
	if a, b := hashOf(t, base, alphaTree()), hashOf(t, renamed, alphaTree()); a != b {
		t.Errorf("renaming alpha's Go fields changed its identity: %s -> %s", a, b)
	}
	if a, b := hashOf(t, base, alphaTree()), hashOf(t, plus, alphaTree()); a == b {
		t.Errorf("adding a key to alpha did not change alpha's identity (the check could not fail)")
	}
	other := alphaTree()
	other["run"] = map[string]any{"backend": "ort"}
	if a, b := hashOf(t, base, alphaTree()), hashOf(t, base, other); a != b {
		t.Errorf("an execution-only key changed the identity: %s -> %s", a, b)
	}
	seeded := alphaTree()
	seeded["run"] = map[string]any{"seed": int64(2)}
	if a, b := hashOf(t, base, alphaTree()), hashOf(t, base, seeded); a == b {
		t.Errorf("the seed did not change the identity")
	}
}

// Values TOML accepts but no config means are rejected before anything is hashed: nan and inf would give
// every such spec one identity, a negative seed would wrap to 2^64-1.
func TestNonFiniteAndNegativeUnsignedRejected(t *testing.T) {
	sections := kind(func() registry.Config { return &alpha{Name: "alpha", Width: 4, Rate: 0.5} })
	cases := []struct {
		name string
		tree map[string]any
		want string
	}{
		{"nan", map[string]any{"name": "s", "comp": map[string]any{"rate": nan()}}, "comp.rate = NaN: must be a finite number"},
		{"inf", map[string]any{"name": "s", "comp": map[string]any{"rate": inf()}}, "comp.rate = +Inf: must be a finite number"},
		{"negative seed", map[string]any{"name": "s", "run": map[string]any{"seed": int64(-1)}}, "run.seed = -1: must be >= 0"},
		{"control character in name", map[string]any{"name": "a\nb"}, "control character"},
		{"bidi in name", map[string]any{"name": "a\u202eb"}, "bidirectional"},
		{"foreign key beside the name", map[string]any{"name": "s", "comp": map[string]any{"name": "beta", "width": int64(3)}}, `comp.width: not a key of comp "beta" (it belongs to "alpha")`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := ResolveTree("x.toml", c.tree, sections)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want %q", err, c.want)
			}
		})
	}
}

func nan() float64 { z := 0.0; return z / z }
func inf() float64 { z := 0.0; return 1 / z }

// A sweep axis over a key the (fixed) implementation lacks is an error, not a silently collapsed sweep;
// the same key zipped with the implementation's name is dropped where it does not apply.
func TestForeignKeysFromSweeps(t *testing.T) {
	sections := kind(func() registry.Config { return &alpha{Name: "alpha", Width: 4, Rate: 0.5} })
	r := &Raw{File: "x.toml", Name: "s", Origin: map[string]string{"comp.name": "x.toml"}, texts: map[string]string{}}
	tree := map[string]any{"name": "s", "comp": map[string]any{"name": "beta", "width": int64(8)}}
	if _, err := r.Resolve(tree, map[string]any{"comp.width": int64(8)}, sections); err == nil || !strings.Contains(err.Error(), `not a key of comp "beta"`) {
		t.Fatalf("grid over a foreign key: %v", err)
	}
	zipped := map[string]any{"name": "s", "comp": map[string]any{"name": "beta", "width": int64(8)}}
	if _, err := r.Resolve(zipped, map[string]any{"comp.width": int64(8), "comp.name": "beta"}, sections); err != nil {
		t.Fatalf("zip of name and a key of another implementation: %v", err)
	}
}
