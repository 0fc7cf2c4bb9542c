package main

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"mimlab/framework/store"
)

func fileSum(t *testing.T, p string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

// Databases that are not mimlab's, or not at its schema, are refused by every command that would touch them,
// with a message that says what they are, and are left byte for byte as they were; `sweep migrate` is the
// one reading-side command that upgrades a database.
func TestDatabasesNotMimlabs(t *testing.T) {
	dir := t.TempDir()
	app := filepath.Join(dir, "app.db")
	d, err := sql.Open("sqlite3", app)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{`CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)`, `INSERT INTO users VALUES (1, 'ada')`} {
		if _, err := d.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	d.Close()
	old := filepath.Join(dir, "old.db")
	st, err := store.Open(old)
	if err != nil {
		t.Fatal(err)
	}
	// Schema 5: before migration 6 added the attempts table.
	for _, q := range []string{`DROP TABLE attempts`, `DELETE FROM schema_version WHERE version = 6`} {
		if _, err := st.Raw().Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	st.Close()
	p := writeSpec(t, dir, "tiny.toml", strings.Replace(strings.Replace(tiny, "%d", "4", 1), "%s", "[1]", 1))
	cases := []struct {
		name string
		db   string
		args []string
		want string
	}{
		{"status of another application's file", app, []string{"status"}, `not a mimlab results database: it holds 1 table of its own ("users")`},
		{"export of it", app, []string{"export", "--table", "trials"}, "not a mimlab results database"},
		{"run on it", app, []string{"run", "--register-only", p}, "mimlab adopts only an empty database or its own"},
		{"worker on it", app, []string{"worker"}, "not a mimlab results database"},
		{"status of an older schema", old, []string{"status"}, "sweep migrate --db"},
		{"export of an older schema", old, []string{"export", "--table", "trials"}, "never write to a database"},
		{"a directory", dir, []string{"status"}, "is a directory, not a results database"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var before [32]byte
			if c.db != dir {
				before = fileSum(t, c.db)
			}
			out, err := sweepCmd(context.Background(), dir, append(append([]string{}, c.args[0], "--db", c.db), c.args[1:]...)...).CombinedOutput()
			if _, ok := err.(*exec.ExitError); !ok || !strings.Contains(string(out), c.want) {
				t.Fatalf("exit %v, want a failure saying %q:\n%s", err, c.want, out)
			}
			if c.db != dir && fileSum(t, c.db) != before {
				t.Errorf("%s changed", c.db)
			}
		})
	}
	// migrate upgrades the older database; status then reads it.
	if out, err := sweepCmd(context.Background(), dir, "migrate", "--db", old).CombinedOutput(); err != nil {
		t.Fatalf("migrate: %v\n%s", err, out)
	}
	if out, err := sweepCmd(context.Background(), dir, "status", "--db", old).CombinedOutput(); err != nil {
		t.Fatalf("status after migrate: %v\n%s", err, out)
	}
	// An up-to-date database read by status and export is not changed (no WAL switch, no migration).
	before := fileSum(t, old)
	for _, args := range [][]string{{"status"}, {"export", "--table", "trials"}} {
		if out, err := sweepCmd(context.Background(), dir, append([]string{args[0], "--db", old}, args[1:]...)...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
	}
	if fileSum(t, old) != before {
		t.Error("status or export changed the database")
	}
	// An export into a folder that cannot be written names its target.
	target := "/proc/trials.csv"
	if os.Geteuid() != 0 {
		ro := filepath.Join(dir, "ro")
		os.Mkdir(ro, 0o555)
		target = filepath.Join(ro, "trials.csv")
	}
	out, err := sweepCmd(context.Background(), dir, "export", "--db", old, "--table", "trials", "-o", target).CombinedOutput()
	if err == nil || !strings.Contains(string(out), target) || strings.Contains(string(out), ".tmp-") || strings.Contains(string(out), ".export-") {
		t.Errorf("export into an unwritable folder: %v\n%s", err, out)
	}
}
