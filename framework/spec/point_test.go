package spec

import (
	"strings"
	"testing"
)

func TestPoint(t *testing.T) {
	cases := []struct {
		name     string
		js       string
		key      string // Key of the point read back
		seedless string // Seedless().Key()
		str      string // String()
		nameOf   string // Name("sw")
		seed     any
	}{
		{"empty", "", "{}", "{}", "", "sw", nil},
		{"null", "null", "{}", "{}", "", "sw", nil},
		{"seed only", `{"train.seed":3}`, `{"train.seed":3}`, "{}", "train.seed=3", "sw[train.seed=3]", int64(3)},
		{"float axis keeps its exact value in the key, rounds in names", `{"train.lr":0.30000000000000004,"train.seed":1}`,
			`{"train.lr":0.30000000000000004,"train.seed":1}`, `{"train.lr":0.30000000000000004}`, "train.lr=0.3,train.seed=1", "sw[train.lr=0.3,train.seed=1]", int64(1)},
		{"sorted keys", `{"method.name":"cae","decoder.depth":2}`, `{"decoder.depth":2,"method.name":"cae"}`, `{"decoder.depth":2,"method.name":"cae"}`,
			"decoder.depth=2,method.name=cae", "sw[decoder.depth=2,method.name=cae]", nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var p Point
			if err := p.Scan(c.js); err != nil {
				t.Fatal(err)
			}
			if got := p.Key(); got != c.key {
				t.Errorf("Key %s, want %s", got, c.key)
			}
			if got := p.Seedless().Key(); got != c.seedless {
				t.Errorf("Seedless %s, want %s", got, c.seedless)
			}
			if got := p.String(); got != c.str {
				t.Errorf("String %q, want %q", got, c.str)
			}
			if got := p.Name("sw"); got != c.nameOf {
				t.Errorf("Name %q, want %q", got, c.nameOf)
			}
			sd, ok := p.Seed()
			if ok != (c.seed != nil) || (ok && sd != c.seed) {
				t.Errorf("Seed %v %v, want %v", sd, ok, c.seed)
			}
			v, err := p.Value()
			if err != nil || v != c.key {
				t.Errorf("Value %v (%v), want %s", v, err, c.key)
			}
			var back Point
			if err := back.Scan([]byte(v.(string))); err != nil || back.Key() != c.key {
				t.Errorf("round trip %s (%v), want %s", back.Key(), err, c.key)
			}
		})
	}
	for _, bad := range []string{"[1,2]", `"x"`, "{", "3"} {
		var p Point
		if err := p.Scan(bad); err == nil {
			t.Errorf("Scan(%q) accepted", bad)
		}
	}
	var p Point
	if err := p.Scan(42); err == nil || !strings.Contains(err.Error(), "int") {
		t.Errorf("Scan(int) = %v", err)
	}
}

type seedCfg struct {
	Seed  uint64 `toml:"seed" identity:"seed"`
	Other int    `toml:"other"`
}

func (seedCfg) Validate() error { return nil }

type wrongSeedCfg struct {
	Other int `toml:"other" identity:"seed"`
}

func (wrongSeedCfg) Validate() error { return nil }

func TestSeedTagOnlyOnSeedKey(t *testing.T) {
	if err := checkSeedTag("train", "x", &seedCfg{}); err != nil {
		t.Errorf("train.seed refused: %v", err)
	}
	if err := checkSeedTag("train", "x", &wrongSeedCfg{}); err == nil || !strings.Contains(err.Error(), "train.other") {
		t.Errorf("a seed tag on train.other: %v", err)
	}
	if err := checkSeedTag("data", "x", &seedCfg{}); err == nil || !strings.Contains(err.Error(), "data.seed") {
		t.Errorf("a seed tag on data.seed: %v", err)
	}
	// ConfigTree leaves the seed out, Tree keeps it.
	vs := values(&seedCfg{Seed: 3, Other: 1}, false, false)
	if _, ok := vs["seed"]; ok || vs["other"] != int64(1) {
		t.Errorf("values without the seed: %v", vs)
	}
	if vs := Values(&seedCfg{Seed: 3}, false); vs["seed"] != uint64(3) {
		t.Errorf("Values: %v", vs)
	}
}
