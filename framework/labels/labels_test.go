package labels

import "testing"

func TestShort(t *testing.T) {
	pt := func(kv ...string) map[string]string {
		m := map[string]string{}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	cases := []struct {
		name string
		cs   []Config
		want map[string]string
	}{
		{"a zip that moves four keys together is named by the method", []Config{
			{Key: "a", Sweep: "q", Point: pt("method.name", "cae", "method.align_weight", "2", "regressor.name", "cae", "decoder.name", "transformer")},
			{Key: "b", Sweep: "q", Point: pt("method.name", "beit", "method.align_weight", "0", "regressor.name", "none", "decoder.name", "linear")},
		}, map[string]string{"a": "cae", "b": "beit"}},
		{"method x target", []Config{
			{Key: "a", Point: pt("method.name", "cae", "targets.name", "pixel", "decoder.name", "transformer")},
			{Key: "b", Point: pt("method.name", "cae", "targets.name", "hog", "decoder.name", "transformer")},
			{Key: "c", Point: pt("method.name", "beit", "targets.name", "pixel", "decoder.name", "linear")},
			{Key: "d", Point: pt("method.name", "beit", "targets.name", "hog", "decoder.name", "linear")},
		}, map[string]string{"a": "cae pixel", "b": "cae hog", "c": "beit pixel", "d": "beit hog"}},
		{"a numeric axis shows its key", []Config{
			{Key: "a", Point: pt("masking.num_masked", "16")},
			{Key: "b", Point: pt("masking.num_masked", "24")},
		}, map[string]string{"a": "num_masked=16", "b": "num_masked=24"}},
		{"shared last parts keep the full key", []Config{
			{Key: "a", Point: pt("decoder.depth", "1", "encoder.depth", "4")},
			{Key: "b", Point: pt("decoder.depth", "2", "encoder.depth", "4")},
			{Key: "c", Point: pt("decoder.depth", "2", "encoder.depth", "8")},
		}, map[string]string{"a": "decoder.depth=1 encoder.depth=4", "b": "decoder.depth=2 encoder.depth=4", "c": "decoder.depth=2 encoder.depth=8"}},
		{"labels from the spec lead, and a grid beside them is added", []Config{
			{Key: "a", Label: "CAE", Point: pt("method.name", "cae", "train.lr", "0.001")},
			{Key: "b", Label: "CAE", Point: pt("method.name", "cae", "train.lr", "0.0005")},
			{Key: "c", Label: "BEiT", Point: pt("method.name", "beit", "train.lr", "0.001")},
		}, map[string]string{"a": "CAE lr=0.001", "b": "CAE lr=0.0005", "c": "BEiT lr=0.001"}},
		{"one configuration is named by its sweep", []Config{{Key: "a", Sweep: "quick", Point: pt("method.name", "cae")}}, map[string]string{"a": "quick"}},
		{"two sweeps", []Config{{Key: "a", Sweep: "s1"}, {Key: "b", Sweep: "s2"}}, map[string]string{"a": "s1", "b": "s2"}},
		{"indistinguishable keeps the keys", []Config{{Key: "x (config 1)", Sweep: "s"}, {Key: "x (config 2)", Sweep: "s"}}, map[string]string{"x (config 1)": "x (config 1)", "x (config 2)": "x (config 2)"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := Short(c.cs)
			for k, w := range c.want {
				if got[k] != w {
					t.Errorf("%s: %q, want %q", k, got[k], w)
				}
			}
		})
	}
}
