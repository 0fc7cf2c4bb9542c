package report

import "testing"

// A swept axis is plotted only when two configurations differ in that key alone.
func TestIndependentAxes(t *testing.T) {
	ti := func(kv ...string) trialInfo {
		p := map[string]string{}
		for i := 0; i < len(kv); i += 2 {
			p[kv[i]] = kv[i+1]
		}
		return trialInfo{Point: p}
	}
	zip := []trialInfo{ // the quickstart: align_weight moves with method.name
		ti("method.name", "cae", "method.align_weight", "2", "train.seed", "1"),
		ti("method.name", "beit", "method.align_weight", "0", "train.seed", "1"),
		ti("method.name", "cae", "method.align_weight", "2", "train.seed", "2"),
	}
	grid := []trialInfo{ // num_masked x method
		ti("method.name", "cae", "masking.num_masked", "16"),
		ti("method.name", "cae", "masking.num_masked", "24"),
		ti("method.name", "beit", "masking.num_masked", "16"),
	}
	cases := []struct {
		name   string
		trials []trialInfo
		key    string
		want   bool
	}{
		{"zipped key", zip, "method.align_weight", false},
		{"grid key", grid, "masking.num_masked", true},
		{"the other grid key", grid, "method.name", true},
		{"seeds alone are no axis", zip[:1], "method.align_weight", false},
	}
	for _, c := range cases {
		if got := independent(c.trials, c.key); got != c.want {
			t.Errorf("%s: independent(%s) = %v, want %v", c.name, c.key, got, c.want)
		}
	}
	if s := axisSection(zip, ""); s != nil {
		t.Errorf("the quickstart's zip got an axis section: %+v", s.tables)
	}
	if s := axisSection(grid, ""); s == nil || len(s.tables) != 1 || s.tables[0].head[0] != "held" {
		t.Errorf("a grid with another key held: %+v", s)
	}
}
