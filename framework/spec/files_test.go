package spec_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"mimlab/framework/spec"
)

// paddedSpec is a valid spec of exactly n bytes: a name and a comment filling the rest.
func paddedSpec(n int) string {
	head := "name = \"big\"\n#"
	return head + strings.Repeat("x", n-len(head)-1) + "\n"
}

// A spec or a base must be a regular file of at most spec.MaxSpecBytes: a FIFO (which blocked forever), /dev/zero
// (read until out of memory), a directory or a 2 MiB file is a spec error naming the path, returned at once.
func TestLoadRefusesNonRegularAndHugeFiles(t *testing.T) {
	type setup func(t *testing.T, dir string) (load, errFile string)
	write := func(t *testing.T, p, text string) {
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	fifo := func(t *testing.T, p string) {
		if err := syscall.Mkfifo(p, 0o644); err != nil {
			t.Skipf("mkfifo: %v", err)
		}
	}
	withBase := func(t *testing.T, dir, base string) string {
		p := filepath.Join(dir, "s.toml")
		write(t, p, fmt.Sprintf("name = \"s\"\nbase = %q\n", base))
		return p
	}
	cases := []struct {
		name string
		make setup
		want []string // in the message; nil: loads
	}{
		{"spec is a FIFO", func(t *testing.T, dir string) (string, string) {
			p := filepath.Join(dir, "pipe.toml")
			fifo(t, p)
			return p, p
		}, []string{"not a regular file"}},
		{"base is a FIFO", func(t *testing.T, dir string) (string, string) {
			b := filepath.Join(dir, "pipe.toml")
			fifo(t, b)
			p := withBase(t, dir, b)
			return p, p
		}, []string{`base = "` + "%DIR%/pipe.toml" + `"`, "not a regular file"}},
		{"base is /dev/zero", func(t *testing.T, dir string) (string, string) {
			if _, err := os.Stat("/dev/zero"); err != nil {
				t.Skip(err)
			}
			p := withBase(t, dir, "/dev/zero")
			return p, p
		}, []string{`base = "/dev/zero"`, "not a regular file"}},
		{"spec is a directory", func(t *testing.T, dir string) (string, string) {
			return dir, dir
		}, []string{"not a regular file"}},
		{"base is a directory", func(t *testing.T, dir string) (string, string) {
			os.Mkdir(filepath.Join(dir, "sub"), 0o755)
			p := withBase(t, dir, "sub")
			return p, p
		}, []string{"sub", "not a regular file"}},
		{"spec of 2 MiB", func(t *testing.T, dir string) (string, string) {
			p := filepath.Join(dir, "big.toml")
			write(t, p, paddedSpec(2<<20))
			return p, p
		}, []string{"2097152 bytes; a spec is at most 1048576 bytes"}},
		{"base of 2 MiB", func(t *testing.T, dir string) (string, string) {
			write(t, filepath.Join(dir, "big.toml"), paddedSpec(2<<20))
			p := withBase(t, dir, "big.toml")
			return p, p
		}, []string{`base = "` + "%DIR%/big.toml" + `"`, "2097152 bytes"}},
		{"spec of exactly MaxSpecBytes loads", func(t *testing.T, dir string) (string, string) {
			p := filepath.Join(dir, "edge.toml")
			write(t, p, paddedSpec(spec.MaxSpecBytes))
			return p, ""
		}, nil},
		{"base through a symlink loads", func(t *testing.T, dir string) (string, string) {
			write(t, filepath.Join(dir, "real.toml"), "name = \"b\"\n")
			if err := os.Symlink("real.toml", filepath.Join(dir, "link.toml")); err != nil {
				t.Skip(err)
			}
			return withBase(t, dir, "link.toml"), ""
		}, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			p, errFile := c.make(t, dir)
			done := make(chan error, 1)
			go func() { _, err := spec.Load(p, nil); done <- err }()
			var err error
			select {
			case err = <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("spec.Load still blocked after 10s")
			}
			if c.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			var se *spec.Error
			if !errors.As(err, &se) {
				t.Fatalf("got %v (%T), want a *spec.Error", err, err)
			}
			if se.File != errFile {
				t.Errorf("error names file %q, want %q (%v)", se.File, errFile, err)
			}
			for _, w := range c.want {
				if w = strings.ReplaceAll(w, "%DIR%", dir); !strings.Contains(se.Msg, w) {
					t.Errorf("message %q does not contain %q", se.Msg, w)
				}
			}
		})
	}
}
