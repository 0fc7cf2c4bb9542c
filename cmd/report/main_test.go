package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// report --runs naming a file is an error (exit 2) that says so; a folder, or none yet, is fine.
func TestRunsMustBeAFolder(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "results.db")
	os.WriteFile(file, []byte("x"), 0o644)
	cases := []struct {
		name, runs, want string
	}{
		{"a file", file, "is a file, not the folder"},
		{"a folder", dir, ""},
		{"no folder yet", filepath.Join(dir, "runs"), ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := checkRuns(c.runs)
			if (c.want == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), c.want) {
				t.Fatalf("checkRuns(%s) = %v, want %q", c.runs, err, c.want)
			}
		})
	}
}
