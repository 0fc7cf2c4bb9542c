package store

import (
	"crypto/sha256"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// raw opens a database with the back end's own driver, as another application would.
func raw(t *testing.T, db string) *sql.DB {
	t.Helper()
	driver, dsn := "sqlite3", db
	if IsURL(db) {
		driver = "pgx"
	}
	d, err := sql.Open(driver, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// what a database holds, to compare before and after: its tables, its schema version rows and, for a SQLite
// file, the file's bytes (the journal mode lives in its header).
func snapshot(t *testing.T, db string) string {
	t.Helper()
	d := raw(t, db)
	out := strings.Join(tableNames(t, d, db), ",")
	var versions string
	d.QueryRow(`SELECT COUNT(*) || '/' || COALESCE(MAX(version), 0) FROM schema_version`).Scan(&versions)
	out += " versions " + versions
	if !IsURL(db) {
		d.Close()
		b, err := os.ReadFile(db)
		if err != nil {
			t.Fatal(err)
		}
		out += fmt.Sprintf(" file of %d bytes, sha256 %x", len(b), sha256.Sum256(b))
	}
	return out
}

// tableNames lists a database's tables with its own driver (SQLite's internal ones left out).
func tableNames(t *testing.T, d *sql.DB, db string) []string {
	t.Helper()
	q := `SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite%' ORDER BY name`
	if IsURL(db) {
		q = `SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() ORDER BY table_name`
	}
	rows, err := d.Query(q)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var names []string
	for rows.Next() {
		var n string
		rows.Scan(&n)
		names = append(names, n)
	}
	return names
}

func TestAdoptAndRead(t *testing.T) {
	tests := []struct {
		name string
		run  func(t *testing.T, db string)
	}{
		{"another application's database is refused and left as it was", testForeignRefused},
		{"reading never writes nor migrates", testReadingNeverWrites},
	}
	for _, b := range backends() {
		for _, tc := range tests {
			t.Run(b.name+"/"+tc.name, func(t *testing.T) { tc.run(t, b.fresh(t)) })
		}
	}
}

// A database holding tables of its own (another application's) is neither migrated by a writing command
// nor read by a reading one: both say what it holds, and it is byte for byte as it was.
func testForeignRefused(t *testing.T, db string) {
	d := raw(t, db)
	for _, q := range []string{`CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)`, `INSERT INTO users (id, name) VALUES (1, 'ada')`,
		`CREATE TABLE orders (id INTEGER PRIMARY KEY)`} {
		if _, err := d.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	d.Close()
	before := snapshot(t, db)
	for name, open := range map[string]func(string) (*Store, error){"Open": Open, "OpenForReading": OpenForReading} {
		s, err := open(db)
		if err == nil {
			s.Close()
			t.Fatalf("%s adopted another application's database", name)
		}
		for _, w := range []string{"not a mimlab results database", `"orders"`, `"users"`} {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: %q does not say %s", name, err, w)
			}
		}
	}
	if after := snapshot(t, db); after != before {
		t.Errorf("the refused database changed:\nbefore %q\nafter  %q", before, after)
	}
}

// status, report and export open a database with OpenForReading: an up-to-date one is read and not changed
// (a write through it fails), an older one is refused with the command that upgrades it, unmigrated.
func testReadingNeverWrites(t *testing.T, db string) {
	s := openT(t, db)
	sweepOf(t, s, 2)
	s.Close()
	before := snapshot(t, db)
	r, err := OpenForReading(db)
	if err != nil {
		t.Fatal(err)
	}
	if trials, err := r.Trials(""); err != nil || len(trials) != 2 {
		t.Errorf("read %d trials (%v), want 2", len(trials), err)
	}
	if _, err := r.AddSweep("sneaky", "x.toml", []NewTrial{{Hash: "ff", Name: "x", Spec: "{}"}}); err == nil {
		t.Error("a write through a reading store succeeded")
	}
	r.Close()
	if after := snapshot(t, db); after != before {
		t.Errorf("reading changed the database:\nbefore %q\nafter  %q", before, after)
	}
	// The same database one schema version behind: refused, and still behind afterwards.
	for _, q := range []string{`DROP TABLE attempts`, `DELETE FROM schema_version WHERE version = 6`} { // schema 5
		if _, err := raw(t, db).Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	before = snapshot(t, db)
	if r, err := OpenForReading(db); err == nil {
		r.Close()
		t.Fatal("an older schema was opened for reading")
	} else if !strings.Contains(err.Error(), "sweep migrate") {
		t.Errorf("%v: want the command that upgrades it", err)
	}
	if after := snapshot(t, db); after != before {
		t.Errorf("the refused read changed the database:\nbefore %q\nafter  %q", before, after)
	}
}

// An empty database is adopted; a SQLite one is switched to WAL only then.
func TestEmptyIsAdopted(t *testing.T) {
	db := filepath.Join(t.TempDir(), "empty.db")
	raw(t, db).Exec(`PRAGMA user_version = 0`) // creates the empty file
	s := openT(t, db)
	if tables := tableNames(t, s.db, db); len(tables) < 2 || !reflect.DeepEqual(tables[:2], []string{"artifacts", "attempts"}) {
		t.Errorf("tables %v", tables)
	}
	var mode string
	s.db.QueryRow(`PRAGMA journal_mode`).Scan(&mode)
	if mode != "wal" {
		t.Errorf("journal mode %q, want wal", mode)
	}
}
