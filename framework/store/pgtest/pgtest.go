// Package pgtest gives tests a real PostgreSQL server: the one .ci/run started (MIMLAB_TEST_PG_URL, and
// MIMLAB_TEST_PG_DIR for tests that restart it), or else one it starts itself with .ci/pg in a temporary
// folder when a PostgreSQL server is installed. Each test gets a database of its own. Without a server the
// test is skipped, except under CI=true, where it fails: CI must run what these tests check.
package pgtest

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" driver
)

// Server is a running PostgreSQL.
type Server struct {
	URL    string // to its "postgres" database, with the password
	Dir    string // the folder .ci/pg keeps it in
	script string
	own    bool
}

var (
	once    sync.Once
	shared  *Server
	failure error
	counter atomic.Int64
)

// Require returns the shared server, skipping the test (failing it under CI=true) when none can be had.
func Require(t testing.TB) *Server {
	t.Helper()
	once.Do(func() { shared, failure = start() })
	if failure != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("PostgreSQL is required under CI=true: %v", failure)
		}
		t.Skipf("no PostgreSQL server: %v", failure)
	}
	return shared
}

// Stop stops a server this process started (call it from TestMain after m.Run).
func Stop() {
	if shared != nil && shared.own {
		exec.Command(shared.script, "stop", shared.Dir).Run()
		os.RemoveAll(shared.Dir)
	}
}

func repoScript() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		p := filepath.Join(dir, ".ci", "pg")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf(".ci/pg not found above the test's folder")
		}
		dir = parent
	}
}

func start() (*Server, error) {
	script, err := repoScript()
	if err != nil {
		return nil, err
	}
	if u := os.Getenv("MIMLAB_TEST_PG_URL"); u != "" {
		return &Server{URL: u, Dir: os.Getenv("MIMLAB_TEST_PG_DIR"), script: script}, nil
	}
	dir, err := os.MkdirTemp("", "mimlab-pg-")
	if err != nil {
		return nil, err
	}
	os.Chmod(dir, 0o755) // the server may run as the postgres user
	out, err := exec.Command(script, "start", dir).Output()
	if err != nil {
		msg := ""
		if ee, ok := err.(*exec.ExitError); ok {
			msg = string(ee.Stderr)
		}
		os.RemoveAll(dir)
		return nil, fmt.Errorf(".ci/pg start: %v %s", err, strings.TrimSpace(msg))
	}
	return &Server{URL: strings.TrimSpace(string(out)), Dir: dir, script: script, own: true}, nil
}

// Private starts a server of the test's own (stopped when it ends), for tests that stop or restart it while
// other packages' tests use the shared one.
func Private(t testing.TB) *Server {
	t.Helper()
	Require(t) // the same skip-or-fail rule
	script, err := repoScript()
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "mimlab-pg-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o755)
	out, err := exec.Command(script, "start", dir).Output()
	if err != nil {
		os.RemoveAll(dir)
		t.Fatalf(".ci/pg start: %v", err)
	}
	s := &Server{URL: strings.TrimSpace(string(out)), Dir: dir, script: script, own: true}
	t.Cleanup(func() {
		exec.Command(script, "stop", dir).Run()
		os.RemoveAll(dir)
	})
	return s
}

// NewDB creates an empty database for this test and returns its URL (dropped when the test ends).
func (s *Server) NewDB(t testing.TB) string {
	t.Helper()
	name := fmt.Sprintf("mimlab_test_%d_%d", os.Getpid(), counter.Add(1))
	admin, err := sql.Open("pgx", s.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := admin.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("creating database %s: %v", name, err)
	}
	t.Cleanup(func() {
		a, err := sql.Open("pgx", s.URL)
		if err != nil {
			return
		}
		defer a.Close()
		a.Exec("DROP DATABASE IF EXISTS " + name + " WITH (FORCE)")
	})
	return s.WithDB(name)
}

// WithDB is the server's URL for database name.
func (s *Server) WithDB(name string) string {
	u, _ := url.Parse(s.URL)
	u.Path = "/" + name
	return u.String()
}

// WithPassword is u with another password.
func WithPassword(u, password string) string {
	p, _ := url.Parse(u)
	p.User = url.UserPassword(p.User.Username(), password)
	return p.String()
}

// Restart restarts the server (fast shutdown: connections are dropped), as an administrator's restart.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	if s.Dir == "" {
		t.Fatal("this PostgreSQL was given by MIMLAB_TEST_PG_URL without MIMLAB_TEST_PG_DIR: it cannot be restarted")
	}
	if out, err := exec.Command(s.script, "restart", s.Dir).CombinedOutput(); err != nil {
		t.Fatalf(".ci/pg restart: %v\n%s", err, out)
	}
}

// StopFor stops the server, waits d, and starts it again: a database away for a while.
func (s *Server) StopFor(t testing.TB, d time.Duration) {
	t.Helper()
	if out, err := exec.Command(s.script, "stop", s.Dir).CombinedOutput(); err != nil {
		t.Fatalf(".ci/pg stop: %v\n%s", err, out)
	}
	time.Sleep(d)
	if out, err := exec.Command(s.script, "start", s.Dir).CombinedOutput(); err != nil {
		t.Fatalf(".ci/pg start: %v\n%s", err, out)
	}
}
