package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// On a terminal (a tmux pane), `sweep run` draws one live line per running trial and a sweep line; read
// back with tmux capture-pane while it runs and after it ends.
func TestLiveProgressInTmux(t *testing.T) {
	if _, err := exec.LookPath("tmux"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("tmux is missing (.ci/run installs it)")
		}
		t.Skip("tmux is missing")
	}
	dir := t.TempDir()
	spec := writeSpec(t, dir, "tiny.toml", strings.Replace(fmt.Sprintf(tiny, 300, "[1, 2]"), "log_every = 1", "log_every = 10", 1))
	session := fmt.Sprintf("mimlab-test-%d", os.Getpid())
	bin, _ := filepath.Abs(binary)
	script := fmt.Sprintf("cd %q && MIMLAB_NO_FETCH=1 %q run -j 2 --db r.db %q; echo EXITED $?; sleep 120", dir, bin, spec)
	if out, err := exec.Command("tmux", "new-session", "-d", "-s", session, "-x", "160", "-y", "30", script).CombinedOutput(); err != nil {
		t.Fatalf("tmux: %v\n%s", err, out)
	}
	defer exec.Command("tmux", "kill-session", "-t", session).Run()
	capture := func() string {
		out, _ := exec.Command("tmux", "capture-pane", "-p", "-t", session).Output()
		return string(out)
	}
	trialLine := regexp.MustCompile(`trial \d+ tiny seed=\d .*step \d+/300 loss \d+\.\d+ \d+ img/s ETA`)
	sweepLine := regexp.MustCompile(`sweep tiny: \d done, 0 failed, \d left \(\d running\)`)
	var live, screen string
	for deadline := time.Now().Add(3 * time.Minute); time.Now().Before(deadline); time.Sleep(300 * time.Millisecond) {
		screen = capture()
		if live == "" && trialLine.MatchString(screen) && sweepLine.MatchString(screen) {
			live = screen
		}
		if strings.Contains(screen, "EXITED") {
			break
		}
	}
	if live == "" {
		t.Fatalf("no live trial line and sweep line seen; last screen:\n%s", screen)
	}
	if !strings.Contains(screen, "EXITED 0") || !strings.Contains(screen, "sweep tiny: 2 done, 0 failed, 0 left (0 running)") {
		t.Fatalf("final screen:\n%s", screen)
	}
	if n := strings.Count(screen, "step 300/300"); n > 0 {
		t.Fatalf("finished trials left %d progress lines on the screen:\n%s", n, screen)
	}
	t.Logf("while running:\n%s", strings.TrimSpace(live))
}
