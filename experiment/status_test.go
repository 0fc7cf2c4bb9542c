package experiment

import (
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
			"#1 steps ?-? at unknown commit on vm, killed; #2 steps 600-? at 015d6d2 on vm, running or killed"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := AttemptsLine(tc.in); got != tc.want {
				t.Errorf("AttemptsLine:\n got %q\nwant %q", got, tc.want)
			}
		})
	}
}
