package spec

import "testing"

// TestValueString: one format for sweep values in trial names, `sweep status` and reports, so a
// configuration's short name is the same in all three.
func TestValueString(t *testing.T) {
	for _, c := range []struct {
		v    any
		want string
	}{
		{0.1 + 0.2, "0.3"}, {1.5e-4, "0.00015"}, {5e-4, "0.0005"}, {2.0, "2"}, {1e-7, "1e-07"},
		{int64(24), "24"}, {"cae", "cae"}, {true, "true"},
	} {
		if got := ValueString(c.v); got != c.want {
			t.Errorf("ValueString(%#v) = %q, want %q", c.v, got, c.want)
		}
	}
	if got := PointString(map[string]any{"train.lr": 0.1 + 0.2, "method.name": "cae"}); got != "method.name=cae,train.lr=0.3" {
		t.Errorf("PointString = %q", got)
	}
}
