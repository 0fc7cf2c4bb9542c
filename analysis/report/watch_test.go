package report

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"mimlab/framework/store"
)

type syncBuf struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// report --watch renders a page that reloads itself, and renders it again when a trial finishes.
func TestWatchRerendersWhenATrialFinishes(t *testing.T) {
	dir := t.TempDir()
	tinyReport(t, dir)
	db := filepath.Join(dir, "results.db")
	var log syncBuf
	opt := Options{DB: db, Out: filepath.Join(dir, "watched"), Backend: "go", Runs: filepath.Join(dir, "runs"), Log: &log}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- Watch(ctx, opt, 100*time.Millisecond) }()
	waitFor := func(n int) {
		t.Helper()
		for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			if strings.Count(log.String(), "rendered") >= n {
				return
			}
		}
		t.Fatalf("%d renders expected, log:\n%s", n, log.String())
	}
	waitFor(1)
	page, err := os.ReadFile(filepath.Join(dir, "watched", "index.html"))
	if err != nil || !strings.Contains(string(page), `<meta http-equiv="refresh" content="1">`) {
		t.Fatalf("the watched page does not reload itself (%v)", err)
	}
	time.Sleep(300 * time.Millisecond)
	if n := strings.Count(log.String(), "rendered"); n != 1 {
		t.Fatalf("rendered %d times with nothing new", n)
	}
	st, err := store.Open(db)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Raw().Exec(`UPDATE trials SET finished_at = finished_at + 1 WHERE id = (SELECT MAX(id) FROM trials)`); err != nil {
		t.Fatal(err)
	}
	st.Close()
	waitFor(2)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
