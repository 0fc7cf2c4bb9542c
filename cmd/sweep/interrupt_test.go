package main

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// syncBuffer is a bytes.Buffer the test reads while the command writes it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// Ctrl-C in a loop that would run for many minutes (the dVAE tokenizer's training, an attentive probe of many
// epochs) stops `sweep run` within seconds, with exit status 130 and the trial pending for the next run.
func TestInterruptStopsLongLoops(t *testing.T) {
	cases := []struct {
		name  string
		edit  func(spec string) string
		ready func(out string) bool // the long loop is running
	}{
		{"dvae tokenizer", func(s string) string {
			return strings.Replace(s, "[encoder]", "[targets]\nname = \"dvae\"\nsteps = 10000000\n[encoder]", 1)
		}, func(out string) bool { return strings.Contains(out, "dvae tokenizer: step 100/") }},
		{"attentive probe", func(s string) string {
			return strings.Replace(s, `protocols = ["linear", "knn"]`, "protocols = [\"attentive\"]\nattentive_epochs = 1000000", 1)
		}, func(out string) bool { return strings.Count(out, "features:") >= 2 }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			db := filepath.Join(dir, "results.db")
			p := writeSpec(t, dir, "tiny.toml", c.edit(fmt.Sprintf(tiny, 4, "[1]")))
			cmd := sweepCmd(context.Background(), dir, "run", "--plain", "--db", db, "--backend", "go", "--heartbeat", "200ms", p)
			var out syncBuffer
			cmd.Stdout, cmd.Stderr = &out, &out
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer cmd.Process.Kill()
			for deadline := time.Now().Add(2 * time.Minute); !c.ready(out.String()); time.Sleep(20 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatalf("the long loop never started:\n%s", out.String())
				}
			}
			time.Sleep(300 * time.Millisecond)
			cmd.Process.Signal(syscall.SIGINT)
			sent := time.Now()
			waited := make(chan error, 1)
			go func() { waited <- cmd.Wait() }()
			var err error
			select {
			case err = <-waited:
			case <-time.After(15 * time.Second):
				t.Fatalf("still running 15 s after SIGINT:\n%s", out.String())
			}
			took := time.Since(sent)
			if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 130 || took > 10*time.Second {
				t.Errorf("exit %v after %s, want 130 within 10 s:\n%s", err, took.Round(time.Millisecond), out.String())
			}
			var state string
			openDB(t, db).QueryRow(`SELECT state FROM trials`).Scan(&state)
			if state != "pending" {
				t.Errorf("trial left %s, want pending (the next run resumes it)", state)
			}
		})
	}
}
