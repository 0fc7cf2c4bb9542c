package store

import (
	"context"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"mimlab/framework/store/pgtest"
)

// A database URL that cannot be used fails fast with a message that says why, naming the host.
func TestPostgresConnectErrors(t *testing.T) {
	srv := pgtest.Require(t)
	good := srv.NewDB(t)
	// A host that accepts the connection and never answers (a hung server, a firewall that holds it).
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	go func() {
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	cases := []struct {
		name, url string
		want      []string
	}{
		{"no server answers (packets dropped)", "postgres://postgres@10.255.255.1:5432/x?sslmode=disable", []string{"cannot reach PostgreSQL at 10.255.255.1:5432"}},
		{"server never answers", "postgres://postgres@" + silent.Addr().String() + "/x?sslmode=disable", []string{"cannot reach PostgreSQL at 127.0.0.1"}},
		{"connection refused", "postgres://postgres@127.0.0.1:1/x?sslmode=disable", []string{"cannot reach PostgreSQL at 127.0.0.1:1"}},
		{"wrong password", pgtest.WithPassword(good, "not-the-password"), []string{"wrong password", `user "postgres"`}},
		{"missing database", srv.WithDB("no_such_db"), []string{`no database "no_such_db"`, "createdb"}},
		{"not a URL", "postgres://[::1", []string{"not a valid PostgreSQL URL"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			start := time.Now()
			s, err := Open(c.url)
			took := time.Since(start)
			t.Logf("failed in %s: %v", took.Round(time.Millisecond), err)
			if err == nil {
				s.Close()
				t.Fatal("opened")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "not-the-password") {
				t.Errorf("the error shows the password: %v", err)
			}
			if took > 10*time.Second {
				t.Errorf("took %s to fail (want < 10 s)", took)
			}
		})
	}
}

// The server going away for a few seconds (a restart) does not fail a worker's statements: they are retried
// with backoff and succeed once it is back, and claims stay exclusive across the gap.
func TestPostgresRestartIsRetried(t *testing.T) {
	srv := pgtest.Private(t)
	db := srv.NewDB(t)
	s := openT(t, db)
	sw := sweepOf(t, s, 30)
	var mu sync.Mutex
	got := map[int64]int{}
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for w := 0; w < 2; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			ws := openT(t, db)
			owner := "h:" + string(rune('0'+w)) + "/w0"
			for {
				tr, err := ws.Claim(context.Background(), sw, owner, time.Hour)
				if err != nil {
					errs <- err
					return
				}
				if tr == nil {
					return
				}
				mu.Lock()
				got[tr.ID]++
				mu.Unlock()
				for step := 1; step <= 3; step++ {
					if err := ws.AddMetrics(tr.ID, []Metric{{step, "loss", 1}}); err != nil {
						errs <- err
						return
					}
					if err := ws.Heartbeat(tr.ID, owner, step); err != nil {
						errs <- err
						return
					}
					time.Sleep(30 * time.Millisecond)
				}
				if err := ws.Finish(tr.ID, owner, Done, "", -1); err != nil {
					errs <- err
					return
				}
			}
		}(w)
	}
	time.Sleep(300 * time.Millisecond)
	srv.StopFor(t, 3*time.Second)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("a worker's statement failed across the restart: %v", err)
	}
	var done, metrics int
	s.Scan(`SELECT COUNT(*) FROM trials WHERE state = 'done'`, nil, &done)
	s.Scan(`SELECT COUNT(*) FROM metrics`, nil, &metrics)
	if done != 30 || len(got) != 30 || metrics != 90 {
		t.Fatalf("%d done, %d claimed, %d metrics; want 30, 30, 90", done, len(got), metrics)
	}
	for id, n := range got {
		if n != 1 {
			t.Errorf("trial %d claimed %d times", id, n)
		}
	}
}
