package store

import (
	"context"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

func TestClaimIsExclusiveAndStaleIsReclaimed(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "r.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var ts []NewTrial
	for i := 0; i < 20; i++ {
		ts = append(ts, NewTrial{Hash: string(rune('a' + i)), Name: "t", Spec: "{}"})
	}
	sw, err := s.AddSweep("sw", "x.toml", ts)
	if err != nil {
		t.Fatal(err)
	}
	// Registering again keeps states and adds nothing.
	if _, err := s.AddSweep("sw", "x.toml", ts); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	got := map[int64]int{}
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for {
				tr, err := s.Claim(context.Background(), sw, "w"+string(rune('0'+w)), time.Hour)
				if err != nil {
					t.Error(err)
					return
				}
				if tr == nil {
					return
				}
				mu.Lock()
				got[tr.ID]++
				mu.Unlock()
				s.Finish(tr.ID, "w"+string(rune('0'+w)), Done, "")
			}
		}(w)
	}
	wg.Wait()
	if len(got) != 20 {
		t.Fatalf("%d trials claimed, want 20", len(got))
	}
	for id, n := range got {
		if n != 1 {
			t.Fatalf("trial %d claimed %d times", id, n)
		}
	}
	// A running trial with an old heartbeat is claimed again; a fresh one is not.
	s.Raw().Exec(`UPDATE trials SET state = 'running', owner = 'dead', heartbeat_at = 1 WHERE id = 1`)
	s.Raw().Exec(`UPDATE trials SET state = 'running', owner = 'alive', heartbeat_at = ? WHERE id = 2`, now())
	tr, _ := s.Claim(context.Background(), sw, "me", time.Minute)
	if tr == nil || tr.ID != 1 || tr.Attempts != 2 {
		t.Fatalf("stale trial not reclaimed: %+v", tr)
	}
	if tr, _ := s.Claim(context.Background(), sw, "me", time.Minute); tr != nil {
		t.Fatalf("claimed a live trial: %+v", tr)
	}
}

// Many processes' worth of connections opening one new database at once migrate it exactly once.
func TestConcurrentOpenMigratesOnce(t *testing.T) {
	path := filepath.Join(t.TempDir(), "r.db")
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := Open(path)
			if err != nil {
				errs <- err
				return
			}
			s.Close()
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	s, _ := Open(path)
	defer s.Close()
	var n int
	s.Raw().QueryRow(`SELECT COUNT(*) FROM schema_version`).Scan(&n)
	if n != len(migrations) {
		t.Fatalf("%d schema_version rows, want %d", n, len(migrations))
	}
}
