package experiment

import (
	"path/filepath"
	"testing"

	"mimlab/framework/store"
)

func TestAttemptsLine(t *testing.T) {
	a := func(n, from, end int, outcome, commit string, dirty bool) store.Attempt {
		return store.Attempt{Attempt: n, FromStep: from, EndStep: end, Outcome: outcome, Owner: "vm:1/w0",
			Provenance: store.Provenance{GitCommit: commit, GitDirty: dirty, Host: "vm"}}
	}
	tests := []struct {
		name string
		in   []store.Attempt
		want string
	}{
		{"one attempt says nothing", []store.Attempt{a(1, 0, 100, "done", "7734506abc", false)}, ""},
		{"interrupted then done under two commits",
			[]store.Attempt{a(1, 0, 3837, "interrupted", "7734506abc", false), a(2, 3837, 10000, "done", "f7e13e8abc", true)},
			"#1 steps 0-3837 at 7734506 on vm, interrupted; #2 steps 3837-10000 at f7e13e8+dirty on vm, done"},
		{"killed, then running; a migrated attempt has no start step",
			[]store.Attempt{a(1, -1, -1, "", "", false), a(2, 600, -1, "", "015d6d2", false)},
			"#1 steps ?-? at unknown commit on vm, ended unrecorded; #2 steps 600-? at 015d6d2 on vm, running, or ended unrecorded"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := AttemptsLine(tc.in); got != tc.want {
				t.Errorf("AttemptsLine:\n got %q\nwant %q", got, tc.want)
			}
		})
	}
}

// Status counts the linear readings that stopped unconverged (at L-BFGS's iteration limit, or by a
// failure), along training and final.
func TestStatusCountsUnconvergedLinearProbes(t *testing.T) {
	st, err := store.Open(filepath.Join(t.TempDir(), "r.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := st.AddSweep("sw", "x.toml", []store.NewTrial{{Hash: "0000000000000001", Name: "sw[seed=1]", Spec: "{}"}}); err != nil {
		t.Fatal(err)
	}
	for _, e := range []struct {
		step     int
		protocol string
		conv     float64
	}{
		{600, "linear", 0}, {600, "linear_mean", 1}, {store.Final, "linear", 0}, {store.Final, "linear_mean", -1},
	} {
		if err := st.SetEvalAt(1, e.step, e.protocol, "lbfgs_converged", e.conv); err != nil {
			t.Fatal(err)
		}
		if err := st.SetEvalAt(1, e.step, e.protocol, "top1", 0.5); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.SetEvalAt(1, 600, "knn", "top1", 0.5); err != nil { // not a linear reading
		t.Fatal(err)
	}
	r, err := Status(st, "sw")
	if err != nil {
		t.Fatal(err)
	}
	if r.LinearFits != 4 || r.LinearAtLimit != 2 || r.LinearFailed != 1 {
		t.Errorf("%d linear fits, %d at the limit, %d failed; want 4, 2 and 1", r.LinearFits, r.LinearAtLimit, r.LinearFailed)
	}
}
