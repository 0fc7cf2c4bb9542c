package experiment

import (
	"runtime/debug"
	"testing"
)

// A binary's provenance is the commit it was built from when go build stamped one.
func TestVCSOf(t *testing.T) {
	cases := []struct {
		name      string
		bi        *debug.BuildInfo
		rev       string
		dirty, ok bool
	}{
		{"stamped clean", &debug.BuildInfo{Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "abc"}, {Key: "vcs.modified", Value: "false"}}}, "abc", false, true},
		{"stamped dirty", &debug.BuildInfo{Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "abc"}, {Key: "vcs.modified", Value: "true"}}}, "abc", true, true},
		{"go run (no stamp)", &debug.BuildInfo{Settings: []debug.BuildSetting{{Key: "-compiler", Value: "gc"}}}, "", false, false},
		{"no build info", nil, "", false, false},
	}
	for _, c := range cases {
		rev, dirty, ok := vcsOf(c.bi, c.bi != nil)
		if rev != c.rev || dirty != c.dirty || ok != c.ok {
			t.Errorf("%s: got (%q, %v, %v), want (%q, %v, %v)", c.name, rev, dirty, ok, c.rev, c.dirty, c.ok)
		}
	}
}
