// Package store is mimlab's results database: SQLite through mattn/go-sqlite3 (results.db by default: WAL
// mode with a busy timeout and one connection per process), or PostgreSQL through jackc/pgx (a
// postgres:// URL, for workers on many hosts). Both have the same schema, versioned migrations and
// semantics: the trial lifecycle (pending -> running -> done | failed), metrics, evals, artifacts and the
// reference (baseline) rows.
//
// Trials are rows that workers claim with one atomic UPDATE (on PostgreSQL its row is picked FOR UPDATE SKIP
// LOCKED), so two processes never run the same trial. A claim is a lease that the worker's heartbeats renew;
// a trial whose lease expired (its process died) is claimed again and resumes from its checkpoint, at most
// MaxReclaims times (Optuna's storage model). On PostgreSQL every statement is retried with backoff while
// the server is away (a restart), so workers continue.
package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	_ "github.com/mattn/go-sqlite3"

	"mimlab/framework/spec"
)

// Trial states.
const (
	Pending = "pending"
	Running = "running"
	Done    = "done"
	Failed  = "failed"
)

var migrations = []string{
	// 1: the schema documented in README.md ("Results database").
	`CREATE TABLE sweeps (
		id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, spec_file TEXT, created_at REAL);
	CREATE TABLE trials (
		id INTEGER PRIMARY KEY, hash TEXT NOT NULL UNIQUE, sweep_id INTEGER REFERENCES sweeps(id),
		name TEXT NOT NULL, spec TEXT NOT NULL,
		state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending','running','done','failed')),
		attempts INTEGER NOT NULL DEFAULT 0, error TEXT, step INTEGER NOT NULL DEFAULT 0, owner TEXT,
		heartbeat_at REAL, started_at REAL, finished_at REAL, created_at REAL,
		git_commit TEXT, git_dirty INTEGER, go_version TEXT, modules TEXT, host TEXT, cpu TEXT, gpu TEXT, backend TEXT);
	CREATE TABLE sweep_trials (sweep_id INTEGER REFERENCES sweeps(id), trial_id INTEGER REFERENCES trials(id),
		PRIMARY KEY (sweep_id, trial_id));
	CREATE TABLE metrics (trial_id INTEGER NOT NULL REFERENCES trials(id), step INTEGER NOT NULL, name TEXT NOT NULL,
		value REAL, PRIMARY KEY (trial_id, step, name));
	CREATE TABLE evals (trial_id INTEGER NOT NULL REFERENCES trials(id), protocol TEXT NOT NULL, metric TEXT NOT NULL,
		value REAL, PRIMARY KEY (trial_id, protocol, metric));
	CREATE TABLE artifacts (trial_id INTEGER REFERENCES trials(id), kind TEXT NOT NULL, path TEXT NOT NULL,
		sha256 TEXT, bytes INTEGER, created_at REAL, PRIMARY KEY (trial_id, kind));
	CREATE TABLE baselines (key TEXT NOT NULL, dataset TEXT NOT NULL, arch TEXT NOT NULL, protocol TEXT NOT NULL,
		metric TEXT NOT NULL, value REAL, created_at REAL, PRIMARY KEY (key, protocol, metric));`,
	// 2: the sweep point as data (a JSON object of the swept keys and values; filled from the trial names of
	// older rows), and the identity a trial had before a re-identification (see experiment.Reidentify).
	`ALTER TABLE trials ADD COLUMN point TEXT;
	ALTER TABLE trials ADD COLUMN legacy_hash TEXT;
	CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT);`,
	// 3: evaluations along training: each evals row has the pretraining step it read (-1 = the final
	// evaluation, as every row before this migration).
	`CREATE TABLE evals_new (trial_id INTEGER NOT NULL REFERENCES trials(id), protocol TEXT NOT NULL, metric TEXT NOT NULL,
		step INTEGER NOT NULL DEFAULT -1, value REAL, PRIMARY KEY (trial_id, protocol, metric, step));
	INSERT INTO evals_new (trial_id, protocol, metric, step, value) SELECT trial_id, protocol, metric, -1, value FROM evals;
	DROP TABLE evals;
	ALTER TABLE evals_new RENAME TO evals;`,
	// 4: how many times a trial was claimed again after its lease expired (retries are bounded).
	`ALTER TABLE trials ADD COLUMN reclaims INTEGER NOT NULL DEFAULT 0;`,
	// 5: a configuration's display name from [sweep] labels (display only: not part of the identity).
	`ALTER TABLE trials ADD COLUMN label TEXT;`,
	// 6: one row per attempt at a trial (its first claim, each resume after an interruption or an expired
	// lease): the commit, host and backend it ran under and the steps it covered. The trials row keeps the
	// last attempt's provenance. Trials from before this migration get one row, their last attempt: its
	// start step is unknown (NULL) unless it was the only one, and its end is the later of the trial's
	// heartbeat step and its last logged metric.
	`CREATE TABLE attempts (trial_id INTEGER NOT NULL REFERENCES trials(id), attempt INTEGER NOT NULL, owner TEXT,
		started_at REAL, from_step INTEGER, ended_at REAL, end_step INTEGER, outcome TEXT,
		git_commit TEXT, git_dirty INTEGER, go_version TEXT, host TEXT, cpu TEXT, gpu TEXT, backend TEXT,
		PRIMARY KEY (trial_id, attempt));
	INSERT INTO attempts (trial_id, attempt, owner, started_at, from_step, ended_at, end_step, outcome, git_commit, git_dirty, go_version, host, cpu, gpu, backend)
		SELECT id, attempts, owner, CASE WHEN attempts = 1 THEN started_at END, CASE WHEN attempts = 1 THEN 0 END,
			CASE WHEN state IN ('done', 'failed') THEN finished_at END,
			CASE WHEN state = 'running' THEN NULL
				WHEN COALESCE((SELECT MAX(m.step) FROM metrics m WHERE m.trial_id = trials.id), 0) > step
				THEN (SELECT MAX(m.step) FROM metrics m WHERE m.trial_id = trials.id) ELSE step END,
			CASE WHEN state IN ('done', 'failed') THEN state WHEN state = 'pending' AND error IS NOT NULL THEN 'interrupted' END,
			git_commit, git_dirty, go_version, host, cpu, gpu, backend
		FROM trials WHERE attempts > 0 AND git_commit IS NOT NULL;`,
}

// Final is the step of a trial's final evaluation in the evals table.
const Final = -1

// afterMigration runs Go code that belongs to a migration, inside its transaction.
var afterMigration = map[int]func(tx *Tx) error{2: fillPoints}

// baseOfName is the base of a trial name "base[point]": spec names cannot hold '[' (spec.Printable), so the
// first one ends the base. Only the store reads names apart, once, when it decodes a row.
func baseOfName(name string) string {
	if i := strings.Index(name, "["); i >= 0 {
		return name[:i]
	}
	return name
}

// decode fills the typed fields of a scanned row: its point (a JSON object; a row whose point is not one
// falls back to its name, as rows from before migration 2 were written) and its base.
func (t *Trial) decode(point string) {
	p, err := spec.ParsePoint(point)
	if err != nil {
		p = pointFromName(t.Name)
	}
	t.Point = p
	t.Base = baseOfName(t.Name)
}

// fillPoints parses "spec[key=value,...]" trial names of rows written before migration 2 into the point
// column.
func fillPoints(tx *Tx) error {
	rows, err := tx.Query(`SELECT id, name FROM trials WHERE point IS NULL`)
	if err != nil {
		return err
	}
	type row struct {
		id    int64
		point string
	}
	var todo []row
	for rows.Next() {
		var r row
		var name string
		if err := rows.Scan(&r.id, &name); err != nil {
			rows.Close()
			return err
		}
		b, err := json.Marshal(pointFromName(name))
		if err != nil {
			rows.Close()
			return err
		}
		r.point = string(b)
		todo = append(todo, r)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	for _, r := range todo {
		if _, err := tx.Exec(`UPDATE trials SET point = ? WHERE id = ?`, r.point, r.id); err != nil {
			return err
		}
	}
	return nil
}

// pointFromName parses the sweep point out of a trial name "spec[key=value,...]" (how names were written
// before the point was stored as data); numbers and booleans become numbers and booleans.
func pointFromName(name string) map[string]any {
	out := map[string]any{}
	i := strings.Index(name, "[")
	if i < 0 || !strings.HasSuffix(name, "]") {
		return out
	}
	for _, kv := range strings.Split(name[i+1:len(name)-1], ",") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			continue
		}
		switch {
		case v == "true" || v == "false":
			out[k] = v == "true"
		default:
			if f, err := strconv.ParseFloat(v, 64); err == nil && !math.IsInf(f, 0) && !math.IsNaN(f) {
				out[k] = f
			} else {
				out[k] = v
			}
		}
	}
	return out
}

// Store is an open results database.
type Store struct {
	db      *sql.DB
	Path    string // the file, or the URL without its password
	Dialect string // SQLite or Postgres
	// RetryFor bounds how long a statement is retried while a PostgreSQL server is away (default 5 minutes).
	RetryFor time.Duration
	// Log, when set, hears about those retries.
	Log io.Writer
}

// ConnectTimeout is how long Open waits for a PostgreSQL server that does not answer.
const ConnectTimeout = 5 * time.Second

// Open opens (creating and migrating) the database at path, or the PostgreSQL database at a postgres:// URL.
// Several processes may open a new SQLite database at once: switching it to WAL and migrating can then
// report "database is locked" at once, without SQLite's busy handler, so Open retries that case for up to 30
// seconds. A PostgreSQL server that does not answer fails within ConnectTimeout, naming the host.
func Open(path string) (*Store, error) {
	if IsURL(path) {
		s, err := openPostgres(path, ConnectTimeout, false)
		if err != nil {
			return nil, err
		}
		if err := s.migrate(); err != nil {
			s.Close()
			return nil, fmt.Errorf("%s: %w", s.Path, err)
		}
		return s, nil
	}
	if dir := filepath.Dir(path); dir != "." {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for wait := 20 * time.Millisecond; ; wait = min(2*wait, time.Second) {
		s, err := open(path)
		if err == nil {
			return s, nil
		}
		if !isLocked(err) || time.Now().After(deadline) {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		time.Sleep(wait)
	}
}

func isLocked(err error) bool {
	msg := err.Error()
	return strings.Contains(msg, "database is locked") || strings.Contains(msg, "busy")
}

// uriPath escapes a file path for SQLite's file: URI, so that '?', '#' and '%' in a name stay part of it.
func uriPath(path string) string {
	return strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23").Replace(path)
}

// OpenForReading opens an existing database for status, report and export. It never writes: a SQLite
// file is opened read-only (its journal mode stays as it is), a PostgreSQL database is connected to without
// migrating, and either must already be a mimlab results database at this mimlab's schema version; an older
// one is refused with the command that upgrades it.
func OpenForReading(path string) (*Store, error) {
	if IsURL(path) {
		s, err := openPostgres(path, ConnectTimeout, true)
		if err != nil {
			return nil, err
		}
		if err := s.checkSchema(); err != nil {
			s.Close()
			return nil, err
		}
		return s, nil
	}
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file", path)
	}
	// mode=ro still reads the WAL (a writer elsewhere, a killed run's last writes); only a folder that cannot
	// hold SQLite's shared-memory file needs immutable=1, which ignores the WAL: results newer than the
	// last checkpoint of the database file are then not seen.
	params := "?mode=ro&_busy_timeout=30000"
	if !dirWritable(filepath.Dir(path)) {
		params = "?mode=ro&immutable=1"
	}
	db, err := sql.Open("sqlite3", "file:"+uriPath(path)+params)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	db.SetMaxOpenConns(1)
	s := &Store{db: db, Path: path, Dialect: SQLite}
	if err := s.checkSchema(); err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

// checkSchema says whether a database opened for reading is mimlab's, at this mimlab's schema version.
func (s *Store) checkSchema() error {
	var v int
	if err := s.db.QueryRow(`SELECT COALESCE(MAX(version), 0) FROM schema_version`).Scan(&v); err != nil {
		if tables, terr := s.tables(s.db.Query); terr == nil {
			if len(tables) == 0 {
				return fmt.Errorf("%s: an empty database, not a mimlab results database (run `sweep run` first)", s.Path)
			}
			return fmt.Errorf("%s: %w", s.Path, foreign(tables))
		}
		return fmt.Errorf("%s: not a mimlab results database: %w", s.Path, err)
	}
	switch {
	case v > len(migrations):
		return fmt.Errorf("%s: schema version %d is newer than this mimlab (%d): update mimlab", s.Path, v, len(migrations))
	case v < len(migrations):
		return fmt.Errorf("%s: at schema version %d, this mimlab reads %d; status, report and export never write to a database: upgrade it with `sweep migrate --db %s` (or any sweep run or worker on it), on a copy if it is read-only", s.Path, v, len(migrations), s.Path)
	}
	return nil
}

// tables lists the database's own tables (SQLite's internal ones and other PostgreSQL schemas left out).
func (s *Store) tables(query func(string, ...any) (*sql.Rows, error)) ([]string, error) {
	q := `SELECT name FROM sqlite_master WHERE type IN ('table', 'view') AND name NOT LIKE 'sqlite!_%' ESCAPE '!' ORDER BY name`
	if s.Dialect == Postgres {
		q = `SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() ORDER BY table_name`
	}
	rows, err := query(q)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var names []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			return nil, err
		}
		names = append(names, n)
	}
	return names, rows.Err()
}

// foreign is the error for a database that holds tables and is not mimlab's.
func foreign(tables []string) error {
	return fmt.Errorf("not a mimlab results database: it holds %s and no schema_version table; mimlab adopts only an empty database or its own (choose another --db)", listTables(tables))
}

func listTables(names []string) string {
	quoted := make([]string, 0, 6)
	for i, n := range names {
		if i == 5 {
			quoted = append(quoted, fmt.Sprintf("%d more", len(names)-5))
			break
		}
		quoted = append(quoted, fmt.Sprintf("%q", n))
	}
	return fmt.Sprintf("%d table%s of its own (%s)", len(names), map[bool]string{true: "s"}[len(names) > 1], strings.Join(quoted, ", "))
}

func dirWritable(dir string) bool {
	probe, err := os.CreateTemp(dir, ".mimlab-probe-*")
	if err != nil {
		return false
	}
	probe.Close()
	os.Remove(probe.Name())
	return true
}

func open(path string) (*Store, error) {
	// No _journal_mode here: switching to WAL writes the file's header, which must wait until the file is
	// known to be mimlab's (migrate refuses another application's database before writing anything).
	db, err := sql.Open("sqlite3", "file:"+uriPath(path)+"?_busy_timeout=30000&_foreign_keys=on&_synchronous=NORMAL&_txlock=immediate")
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(1) // one connection per process: no "database is locked" between our own goroutines
	s := &Store{db: db, Path: path, Dialect: SQLite}
	if err := s.migrate(); err != nil {
		db.Close()
		return nil, err
	}
	var mode string
	if err := db.QueryRow(`PRAGMA journal_mode=WAL`).Scan(&mode); err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

// migrate applies the missing migrations in one write transaction (BEGIN IMMEDIATE on SQLite, an advisory
// lock on PostgreSQL): two processes opening a new database at once cannot both apply the same migration.
func (s *Store) migrate() error {
	// Up to date: nothing to create or lock (a PostgreSQL role without CREATE on the schema can still use it).
	var have int
	if err := s.db.QueryRow(`SELECT COALESCE(MAX(version), 0) FROM schema_version`).Scan(&have); err == nil && have == len(migrations) {
		return nil
	}
	return s.InTx(func(tx *Tx) error {
		if s.Dialect == Postgres {
			if _, err := tx.Exec(`SELECT pg_advisory_xact_lock(7243311)`); err != nil {
				return err
			}
		}
		// A database is adopted only when it is empty or mimlab's: another application's tables are never
		// joined by mimlab's.
		tables, err := s.tables(tx.Query)
		if err != nil {
			return err
		}
		if len(tables) > 0 && !slices.Contains(tables, "schema_version") {
			return foreign(tables)
		}
		if _, err := tx.Exec(`CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)`); err != nil {
			return err
		}
		var v int
		if err := tx.Scan(`SELECT COALESCE(MAX(version), 0) FROM schema_version`, nil, &v); err != nil {
			return err
		}
		if v > len(migrations) {
			return fmt.Errorf("schema version %d is newer than this mimlab (%d): update mimlab", v, len(migrations))
		}
		for i := v; i < len(migrations); i++ {
			if _, err := tx.Exec(s.ddl(migrations[i])); err != nil {
				return fmt.Errorf("migration %d: %w", i+1, err)
			}
			if f := afterMigration[i+1]; f != nil {
				if err := f(tx); err != nil {
					return fmt.Errorf("migration %d: %w", i+1, err)
				}
			}
			if _, err := tx.Exec(`INSERT INTO schema_version (version) VALUES (?)`, i+1); err != nil {
				return err
			}
		}
		return nil
	})
}

func now() float64 { return float64(time.Now().UnixNano()) / 1e9 }

// Trial is a trials row.
type Trial struct {
	ID       int64
	Hash     string
	Name     string
	Spec     string
	State    string
	Attempts int
	Step     int
	Error    string
	SweepID  int64
	// Point is the sweep point (swept key -> value), decoded once here; Base is the spec's name. The trial's
	// name is Point.Name(Base); its configuration's (what its seeds share) is ConfigName.
	Point spec.Point
	Base  string
	// LegacyHash is the identity the trial had before a re-identification ("" if none): its runs folder
	// may still be under that name.
	LegacyHash string
	Label      string // [sweep] labels' name for its configuration ("" = none)
	// Lease is set on a trial Claim returned: the handle through which its worker writes everything of the
	// trial, each write checked against this claim in its own transaction (see Owned).
	Lease *Owned
}

// NewTrial is a trial to register: its identity, base name and sweep point (its name is Point.Name(Base)),
// its stored spec and its display label. A caller that gives only a Name "base[key=value,...]" (no Base)
// has base and point read from it, as names were written before points were data.
type NewTrial struct {
	Hash, Base, Name, Spec string
	Point                  spec.Point
	Label                  string // [sweep] labels' name for its configuration ("" = none)
}

// typed is the row's point and name, refusing a Name that is not its base's and point's.
func (t NewTrial) typed() (point spec.Point, name string, err error) {
	if t.Base == "" {
		point = t.Point
		if point == nil {
			point = pointFromName(t.Name)
		}
		return point, t.Name, nil
	}
	if err := spec.Printable("trial base name", t.Base); err != nil {
		return nil, "", fmt.Errorf("trial %s: %w", t.Hash, err)
	}
	point = t.Point
	if point == nil {
		point = spec.Point{}
	}
	name = point.Name(t.Base)
	if t.Name != "" && t.Name != name {
		return nil, "", fmt.Errorf("trial %s: name %q is not the name of its base and point (%q)", t.Hash, t.Name, name)
	}
	return point, name, nil
}

// ConfigName is the name of the trial's configuration: its name without the seed, shared by its seeds.
func (t Trial) ConfigName() string { return t.Point.Seedless().Name(t.Base) }

// AddSweep registers a sweep and its trials (new trials pending; existing ones keep their state) in one
// transaction, and returns the sweep id.
func (s *Store) AddSweep(name, specFile string, trials []NewTrial) (int64, error) {
	var id int64
	err := s.InTx(func(tx *Tx) error {
		if _, err := tx.Exec(`INSERT INTO sweeps (name, spec_file, created_at) VALUES (?, ?, ?) ON CONFLICT(name) DO UPDATE SET spec_file = excluded.spec_file`, name, specFile, now()); err != nil {
			return err
		}
		if err := tx.Scan(`SELECT id FROM sweeps WHERE name = ?`, []any{name}, &id); err != nil {
			return err
		}
		for _, t := range trials {
			point, tname, err := t.typed()
			if err != nil {
				return err
			}
			// an existing trial keeps everything but its display label (labels are not part of the identity)
			if _, err := tx.Exec(`INSERT INTO trials (hash, sweep_id, name, spec, point, label, created_at) VALUES (?, ?, ?, ?, ?, NULLIF(?, ''), ?)
				ON CONFLICT(hash) DO UPDATE SET label = excluded.label`,
				t.Hash, id, tname, t.Spec, point.Key(), t.Label, now()); err != nil {
				return err
			}
			if _, err := tx.Exec(`INSERT INTO sweep_trials (sweep_id, trial_id) SELECT ?, id FROM trials WHERE hash = ? ON CONFLICT DO NOTHING`, id, t.Hash); err != nil {
				return err
			}
		}
		return nil
	})
	return id, err
}

// Sweep is a sweeps row.
type Sweep struct {
	ID             int64
	Name, SpecFile string
}

// Sweeps lists the sweeps, or the one named (none when it does not exist).
func (s *Store) Sweeps(name string) ([]Sweep, error) {
	q, args := `SELECT id, name, COALESCE(spec_file, '') FROM sweeps`, []any{}
	if name != "" {
		q, args = q+` WHERE name = ?`, append(args, name)
	}
	rows, err := s.Query(q+` ORDER BY id`, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Sweep
	for rows.Next() {
		var sw Sweep
		if err := rows.Scan(&sw.ID, &sw.Name, &sw.SpecFile); err != nil {
			return nil, err
		}
		out = append(out, sw)
	}
	return out, rows.Err()
}

// RetryFailed puts the sweep's failed trials back to pending.
func (s *Store) RetryFailed(sweepID int64) (int64, error) {
	r, err := s.Exec(`UPDATE trials SET state = 'pending', error = NULL, reclaims = 0, owner = NULL WHERE state = 'failed' AND id IN (SELECT trial_id FROM sweep_trials WHERE sweep_id = ?)`, sweepID)
	if err != nil {
		return 0, err
	}
	return r.RowsAffected()
}

// MaxReclaims bounds how many times a trial whose lease expired (its worker died or lost the database for
// longer than the lease) is claimed again; the next expiry fails it with the count.
const MaxReclaims = 3

// Claim atomically takes the next trial of the sweep that is pending, or running with a lease (heartbeat)
// older than stale (its process died), marks it running for owner and returns it with its Lease, the owned
// handle every write of the trial goes through; nil when none is left. A
// trial whose lease expired more than MaxReclaims times is failed instead.
func (s *Store) Claim(ctx context.Context, sweepID int64, owner string, stale time.Duration) (*Trial, error) {
	// Times are taken inside each attempt: a statement retried after an outage must not write a heartbeat
	// from before it (the trial would look stale at once and be claimed again).
	if err := s.retryCtx(ctx, "claim", func(ctx context.Context) error {
		n := now()
		_, err := s.db.ExecContext(ctx, s.rebind(`UPDATE trials SET state = 'failed', heartbeat_at = NULL, finished_at = ?,
			error = 'its lease expired ' || (reclaims + 1) || ' times (the worker died each time); not retried again'
		WHERE state = 'running' AND heartbeat_at < ? AND reclaims >= ? AND id IN (SELECT trial_id FROM sweep_trials WHERE sweep_id = ?)`),
			n, n-stale.Seconds(), MaxReclaims, sweepID)
		return err
	}); err != nil {
		return nil, err
	}
	lock := ""
	if s.Dialect == Postgres {
		lock = " FOR UPDATE OF t SKIP LOCKED" // concurrent claims skip the row being claimed
	}
	cols := `id, hash, name, spec, state, attempts, step, COALESCE(sweep_id, 0), COALESCE(point, '{}'), COALESCE(legacy_hash, '')`
	t := &Trial{}
	scan := func(row *sql.Row) error {
		var point string
		err := row.Scan(&t.ID, &t.Hash, &t.Name, &t.Spec, &t.State, &t.Attempts, &t.Step, &t.SweepID, &point, &t.LegacyHash)
		t.decode(point)
		return err
	}
	attempt := 0
	err := s.retryCtx(ctx, "claim", func(ctx context.Context) error {
		attempt++
		n := now()
		if attempt > 1 {
			// An earlier attempt may have committed before its reply was lost: this owner holds no trial
			// while it claims, so a running trial under its name is that claim.
			err := scan(s.db.QueryRowContext(ctx, s.rebind(`UPDATE trials SET heartbeat_at = ? WHERE id = (SELECT id FROM trials
				WHERE owner = ? AND state = 'running' AND id IN (SELECT trial_id FROM sweep_trials WHERE sweep_id = ?) ORDER BY id LIMIT 1)
				RETURNING `+cols), n, owner, sweepID))
			if !errors.Is(err, sql.ErrNoRows) {
				return err
			}
		}
		return scan(s.db.QueryRowContext(ctx, s.rebind(`UPDATE trials SET state = 'running', attempts = attempts + 1, owner = ?, heartbeat_at = ?,
			started_at = COALESCE(started_at, ?), error = NULL, reclaims = reclaims + CASE WHEN state = 'running' THEN 1 ELSE 0 END
		WHERE id = (SELECT t.id FROM trials t JOIN sweep_trials st ON st.trial_id = t.id
			WHERE st.sweep_id = ? AND (t.state = 'pending' OR (t.state = 'running' AND t.heartbeat_at < ?))
			ORDER BY t.id LIMIT 1`+lock+`)
		RETURNING `+cols), owner, n, n, sweepID, n-stale.Seconds()))
	})
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err == nil {
		t.Lease = s.Own(t, owner)
	}
	return t, err
}

// Unfinished counts the sweep's trials that are pending or running.
func (s *Store) Unfinished(sweepID int64) (int, error) {
	var n int
	err := s.Scan(`SELECT COUNT(*) FROM trials WHERE state IN ('pending', 'running') AND id IN (SELECT trial_id FROM sweep_trials WHERE sweep_id = ?)`, []any{sweepID}, &n)
	return n, err
}

// Heartbeat renews the owner's lease on a running trial and records its step; it returns an error wrapping
// ErrNotOwner when another worker holds the trial now (this one's lease expired and it was reclaimed).
func (s *Store) Heartbeat(id int64, owner string, step int) error {
	var r sql.Result
	err := s.retryCtx(context.Background(), "heartbeat", func(ctx context.Context) (err error) {
		// the time is taken per attempt: after an outage the heartbeat says now, not when it was first tried
		r, err = s.db.ExecContext(ctx, s.rebind(`UPDATE trials SET heartbeat_at = ?, step = ? WHERE id = ? AND owner = ? AND state = 'running'`), now(), step, id, owner)
		return err
	})
	if err != nil {
		return err
	}
	if n, err := r.RowsAffected(); err == nil && n == 0 {
		return fmt.Errorf("trial %d: %w", id, ErrNotOwner)
	}
	return nil
}

// Finish marks a trial done or failed (with the reason), or back to pending (interrupted), and closes its
// current attempt with the outcome ("interrupted" for pending) and endStep, the last step this attempt
// reached (-1: unknown, it reported none).
func (s *Store) Finish(id int64, owner, state, reason string, endStep int) error {
	return s.finish(id, owner, 0, state, reason, endStep)
}

// finish is Finish; attempt > 0 also requires the trial to be at that claim (Owned.Finish).
func (s *Store) finish(id int64, owner string, attempt int, state, reason string, endStep int) error {
	fin := any(now())
	if state == Pending {
		fin = nil
	}
	outcome := state
	if state == Pending {
		outcome = "interrupted"
	}
	end := any(endStep)
	if endStep < 0 {
		end = nil
	}
	return s.InTx(func(tx *Tx) error {
		r, err := tx.Exec(`UPDATE trials SET state = ?, error = NULLIF(?, ''), finished_at = ?, heartbeat_at = NULL
			WHERE id = ? AND owner = ? AND state = 'running' AND (? = 0 OR attempts = ?)`,
			state, reason, fin, id, owner, attempt, attempt)
		if err != nil {
			return err
		}
		if n, err := r.RowsAffected(); err == nil && n == 0 {
			return fmt.Errorf("trial %d: %w", id, ErrNotOwner)
		}
		_, err = tx.Exec(`UPDATE attempts SET ended_at = ?, outcome = ?, end_step = ?
			WHERE trial_id = ? AND owner = ? AND attempt = (SELECT attempts FROM trials WHERE id = ?)`, now(), outcome, end, id, owner, id)
		return err
	})
}

// ErrNotOwner says a trial was claimed by another worker meanwhile (this one's heartbeat went stale): its
// outcome here is not recorded.
var ErrNotOwner = errors.New("claimed by another worker meanwhile (this worker's heartbeat went stale)")

// Provenance is where and how a trial ran.
type Provenance struct {
	GitCommit string
	GitDirty  bool
	GoVersion string
	Modules   string
	Host, CPU string
	GPU       string
	Backend   string
}

// SetProvenance records provenance on a trial held by owner under its claim number attempt
// (Trial.Attempts as Claim returned it) and opens that attempt's row in the attempts table. It returns an
// error wrapping ErrNotOwner when another worker holds the trial now.
func (s *Store) SetProvenance(id int64, owner string, attempt int, p Provenance) error {
	return s.InTx(func(tx *Tx) error {
		r, err := tx.Exec(`UPDATE trials SET git_commit = ?, git_dirty = ?, go_version = ?, modules = ?, host = ?, cpu = ?, gpu = ?, backend = ?
			WHERE id = ? AND owner = ? AND attempts = ? AND state = 'running'`,
			p.GitCommit, btoi(p.GitDirty), p.GoVersion, p.Modules, p.Host, p.CPU, p.GPU, p.Backend, id, owner, attempt)
		if err != nil {
			return err
		}
		if n, err := r.RowsAffected(); err == nil && n == 0 {
			return fmt.Errorf("trial %d: %w", id, ErrNotOwner)
		}
		_, err = tx.Exec(`INSERT INTO attempts (trial_id, attempt, owner, started_at, git_commit, git_dirty, go_version, host, cpu, gpu, backend)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (trial_id, attempt) DO UPDATE SET owner = excluded.owner, started_at = excluded.started_at,
				git_commit = excluded.git_commit, git_dirty = excluded.git_dirty, go_version = excluded.go_version,
				host = excluded.host, cpu = excluded.cpu, gpu = excluded.gpu, backend = excluded.backend`,
			id, attempt, owner, now(), p.GitCommit, btoi(p.GitDirty), p.GoVersion, p.Host, p.CPU, p.GPU, p.Backend)
		return err
	})
}

// AttemptFrom records the step attempt (of owner) starts training from: 0, or the step of the checkpoint
// it resumed. It returns an error wrapping ErrNotOwner when that attempt has no row of owner's.
func (s *Store) AttemptFrom(id int64, owner string, attempt, step int) error {
	r, err := s.Exec(`UPDATE attempts SET from_step = ? WHERE trial_id = ? AND attempt = ? AND owner = ?`, step, id, attempt, owner)
	if err != nil {
		return err
	}
	if n, err := r.RowsAffected(); err == nil && n == 0 {
		return fmt.Errorf("trial %d attempt %d: %w", id, attempt, ErrNotOwner)
	}
	return nil
}

// Attempt is one claim of a trial: where and at which commit it ran, and the steps it covered.
type Attempt struct {
	Attempt   int
	Owner     string
	StartedAt float64 // Unix seconds; 0 when unknown (attempts recorded before the attempts table)
	FromStep  int     // -1 when unknown
	EndedAt   float64 // 0 while running, or when the process died
	EndStep   int     // the last step it reached; -1 when unknown (it did not end cleanly, or reported none)
	Outcome   string  // done, failed, interrupted; "" while running or when the process died
	Provenance
}

// Attempts lists a trial's attempts, first to last.
func (s *Store) Attempts(trialID int64) ([]Attempt, error) {
	rows, err := s.Query(`SELECT attempt, COALESCE(owner, ''), COALESCE(started_at, 0), COALESCE(from_step, -1), COALESCE(ended_at, 0),
		COALESCE(end_step, -1), COALESCE(outcome, ''), COALESCE(git_commit, ''), COALESCE(git_dirty, 0), COALESCE(go_version, ''),
		COALESCE(host, ''), COALESCE(cpu, ''), COALESCE(gpu, ''), COALESCE(backend, '')
		FROM attempts WHERE trial_id = ? ORDER BY attempt`, trialID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Attempt
	for rows.Next() {
		var a Attempt
		var dirty int
		if err := rows.Scan(&a.Attempt, &a.Owner, &a.StartedAt, &a.FromStep, &a.EndedAt, &a.EndStep, &a.Outcome, &a.GitCommit, &dirty,
			&a.GoVersion, &a.Host, &a.CPU, &a.GPU, &a.Backend); err != nil {
			return nil, err
		}
		a.GitDirty = dirty != 0
		out = append(out, a)
	}
	return out, rows.Err()
}

// Metric is one logged value.
type Metric struct {
	Step  int
	Name  string
	Value float64
}

// AddMetrics writes metrics in one transaction.
func (s *Store) AddMetrics(trialID int64, ms []Metric) error {
	if len(ms) == 0 {
		return nil
	}
	return s.InTx(func(tx *Tx) error {
		for _, m := range ms {
			if _, err := tx.Exec(`INSERT INTO metrics (trial_id, step, name, value) VALUES (?, ?, ?, ?)
				ON CONFLICT (trial_id, step, name) DO UPDATE SET value = excluded.value`, trialID, m.Step, m.Name, m.Value); err != nil {
				return err
			}
		}
		return nil
	})
}

// TruncateMetrics deletes metrics after step (a trial resumed from an earlier checkpoint rewrites them).
func (s *Store) TruncateMetrics(trialID int64, after int) error {
	_, err := s.Exec(`DELETE FROM metrics WHERE trial_id = ? AND step > ?`, trialID, after)
	return err
}

// SetEval records one number of the final evaluation.
func (s *Store) SetEval(trialID int64, protocol, metric string, value float64) error {
	return s.SetEvalAt(trialID, Final, protocol, metric, value)
}

// SetEvalAt records one evaluation number read at a pretraining step (Final for the final evaluation).
func (s *Store) SetEvalAt(trialID int64, step int, protocol, metric string, value float64) error {
	_, err := s.Exec(`INSERT INTO evals (trial_id, protocol, metric, step, value) VALUES (?, ?, ?, ?, ?)
		ON CONFLICT (trial_id, protocol, metric, step) DO UPDATE SET value = excluded.value`, trialID, protocol, metric, step, value)
	return err
}

// AddArtifact records a file a trial produced.
func (s *Store) AddArtifact(trialID int64, kind, path, sha string, bytes int64) error {
	_, err := s.Exec(`INSERT INTO artifacts (trial_id, kind, path, sha256, bytes, created_at) VALUES (?, ?, ?, ?, ?, ?)
		ON CONFLICT (trial_id, kind) DO UPDATE SET path = excluded.path, sha256 = excluded.sha256, bytes = excluded.bytes, created_at = excluded.created_at`,
		trialID, kind, path, sha, bytes, now())
	return err
}

// Artifact returns the path of a trial's artifact of kind ("" when none).
func (s *Store) Artifact(trialID int64, kind string) (string, error) {
	var p string
	err := s.Scan(`SELECT path FROM artifacts WHERE trial_id = ? AND kind = ?`, []any{trialID, kind}, &p)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	return p, err
}

// ArtifactSHA returns the sha256 recorded for a trial's artifact ("" when none is recorded).
func (s *Store) ArtifactSHA(trialID int64, kind string) (string, error) {
	var h sql.NullString
	err := s.Scan(`SELECT sha256 FROM artifacts WHERE trial_id = ? AND kind = ?`, []any{trialID, kind}, &h)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	return h.String, err
}

// Baseline returns a stored reference number.
func (s *Store) Baseline(key, protocol, metric string) (float64, bool, error) {
	var v float64
	err := s.Scan(`SELECT value FROM baselines WHERE key = ? AND protocol = ? AND metric = ?`, []any{key, protocol, metric}, &v)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, false, nil
	}
	return v, err == nil, err
}

// SetBaseline stores a reference number.
func (s *Store) SetBaseline(key, dataset, arch, protocol, metric string, value float64) error {
	_, err := s.Exec(`INSERT INTO baselines (key, dataset, arch, protocol, metric, value, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (key, protocol, metric) DO UPDATE SET dataset = excluded.dataset, arch = excluded.arch, value = excluded.value, created_at = excluded.created_at`,
		key, dataset, arch, protocol, metric, value, now())
	return err
}

// TrialByID loads one trial.
func (s *Store) TrialByID(id int64) (*Trial, error) {
	t := &Trial{}
	var errText sql.NullString
	var point string
	err := s.Scan(`SELECT id, hash, name, spec, state, attempts, step, COALESCE(error, ''), COALESCE(sweep_id, 0), COALESCE(point, '{}'), COALESCE(legacy_hash, ''), COALESCE(label, '') FROM trials WHERE id = ?`, []any{id},
		&t.ID, &t.Hash, &t.Name, &t.Spec, &t.State, &t.Attempts, &t.Step, &errText, &t.SweepID, &point, &t.LegacyHash, &t.Label)
	t.decode(point)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("no trial %d in %s", id, s.Path)
	}
	t.Error = errText.String
	return t, err
}

// Trials lists trials, of one sweep when sweep is not "".
func (s *Store) Trials(sweep string) ([]Trial, error) {
	q := `SELECT t.id, t.hash, t.name, t.spec, t.state, t.attempts, t.step, COALESCE(t.error, ''), COALESCE(t.sweep_id, 0), COALESCE(t.point, '{}'), COALESCE(t.legacy_hash, ''), COALESCE(t.label, '') FROM trials t`
	var args []any
	if sweep != "" {
		q += ` WHERE t.id IN (SELECT trial_id FROM sweep_trials st JOIN sweeps s ON s.id = st.sweep_id WHERE s.name = ?)`
		args = append(args, sweep)
	}
	rows, err := s.Query(q+` ORDER BY t.id`, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Trial
	for rows.Next() {
		var t Trial
		var point string
		if err := rows.Scan(&t.ID, &t.Hash, &t.Name, &t.Spec, &t.State, &t.Attempts, &t.Step, &t.Error, &t.SweepID, &point, &t.LegacyHash, &t.Label); err != nil {
			return nil, err
		}
		t.decode(point)
		out = append(out, t)
	}
	return out, rows.Err()
}

// Evals returns a trial's final evals as protocol -> metric -> value.
func (s *Store) Evals(trialID int64) (map[string]map[string]float64, error) {
	all, err := s.evals(trialID, `AND step = ?`, Final)
	return all[Final], err
}

// EvalsAlong returns a trial's evals read along training as step -> protocol -> metric -> value (the final
// evaluation is not among them; see Evals).
func (s *Store) EvalsAlong(trialID int64) (map[int]map[string]map[string]float64, error) {
	return s.evals(trialID, `AND step >= 0`)
}

func (s *Store) evals(trialID int64, where string, args ...any) (map[int]map[string]map[string]float64, error) {
	rows, err := s.Query(`SELECT step, protocol, metric, value FROM evals WHERE trial_id = ? `+where, append([]any{trialID}, args...)...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[int]map[string]map[string]float64{}
	for rows.Next() {
		var step int
		var p, m string
		var v float64
		if err := rows.Scan(&step, &p, &m, &v); err != nil {
			return nil, fmt.Errorf("evals of trial %d: %w", trialID, err)
		}
		if out[step] == nil {
			out[step] = map[string]map[string]float64{}
		}
		if out[step][p] == nil {
			out[step][p] = map[string]float64{}
		}
		out[step][p][m] = v
	}
	if out[Final] == nil && where == `AND step = ?` {
		out[Final] = map[string]map[string]float64{}
	}
	return out, rows.Err()
}

// LastMetrics returns each metric's value at the trial's last logged step.
func (s *Store) LastMetrics(trialID int64) (int, map[string]float64, error) {
	var step sql.NullInt64
	if err := s.Scan(`SELECT MAX(step) FROM metrics WHERE trial_id = ?`, []any{trialID}, &step); err != nil || !step.Valid {
		return 0, nil, err
	}
	rows, err := s.Query(`SELECT name, value FROM metrics WHERE trial_id = ? AND step = ?`, trialID, step.Int64)
	if err != nil {
		return 0, nil, err
	}
	defer rows.Close()
	out := map[string]float64{}
	for rows.Next() {
		var n string
		var v float64
		if err := rows.Scan(&n, &v); err != nil {
			return 0, nil, fmt.Errorf("metrics of trial %d: %w", trialID, err)
		}
		out[n] = v
	}
	return int(step.Int64), out, rows.Err()
}

// Series returns one metric of a trial over steps.
func (s *Store) Series(trialID int64, name string) ([]int, []float64, error) {
	rows, err := s.Query(`SELECT step, value FROM metrics WHERE trial_id = ? AND name = ? ORDER BY step`, trialID, name)
	if err != nil {
		return nil, nil, err
	}
	defer rows.Close()
	var steps []int
	var vals []float64
	for rows.Next() {
		var st int
		var v float64
		if err := rows.Scan(&st, &v); err != nil {
			return nil, nil, fmt.Errorf("metric %s of trial %d: %w", name, trialID, err)
		}
		steps = append(steps, st)
		vals = append(vals, v)
	}
	return steps, vals, rows.Err()
}

// Baselines returns every reference row with the given key prefix: protocol/metric -> value by key.
func (s *Store) Baselines(keyPrefix string) (map[string]map[string]float64, error) {
	rows, err := s.Query(`SELECT key, protocol || '/' || metric, value FROM baselines WHERE key LIKE ? ORDER BY key`, keyPrefix+"%")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]map[string]float64{}
	for rows.Next() {
		var k, pm string
		var v float64
		if err := rows.Scan(&k, &pm, &v); err != nil {
			return nil, fmt.Errorf("baselines: %w", err)
		}
		if out[k] == nil {
			out[k] = map[string]float64{}
		}
		out[k][pm] = v
	}
	return out, rows.Err()
}

// Meta reads a value of the meta table ("" when unset).
func (s *Store) Meta(key string) (string, error) {
	var v string
	err := s.Scan(`SELECT value FROM meta WHERE key = ?`, []any{key}, &v)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	return v, err
}

// Reidentified is one trial whose identity changed.
type Reidentified struct {
	ID               int64
	OldHash, NewHash string
	NewSpec          string
}

// Reidentify moves trials to new identities (hash and stored spec) and records metaKey = metaValue, in one
// transaction: all or nothing. The old hash is kept in legacy_hash (the first one, if moved twice).
func (s *Store) Reidentify(moves []Reidentified, metaKey, metaValue string) error {
	return s.InTx(func(tx *Tx) error {
		for _, m := range moves {
			if _, err := tx.Exec(`UPDATE trials SET hash = ?, spec = ?, legacy_hash = COALESCE(legacy_hash, ?) WHERE id = ?`, m.NewHash, m.NewSpec, m.OldHash, m.ID); err != nil {
				return fmt.Errorf("trial %d: %s -> %s: %w", m.ID, m.OldHash, m.NewHash, err)
			}
		}
		_, err := tx.Exec(`INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value`, metaKey, metaValue)
		return err
	})
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// ValidHash says whether h is a trial hash (16 lower-case hex digits), safe to use in a path.
func ValidHash(h string) bool {
	if len(h) != 16 {
		return false
	}
	for _, c := range h {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// Exists says whether path holds a file (a results database the CLI must not create by accident); a
// PostgreSQL URL counts as existing (Open says what is wrong with it).
func Exists(path string) bool {
	if IsURL(path) {
		return true
	}
	st, err := os.Stat(path)
	return err == nil && !st.IsDir() && !strings.HasSuffix(path, "/")
}

// CheckExists says why path is not an existing results database file: missing, or a directory (a
// PostgreSQL URL passes; opening it says what is wrong with it).
func CheckExists(path string) error {
	if IsURL(path) {
		return nil
	}
	st, err := os.Stat(path)
	switch {
	case err == nil && st.IsDir():
		return fmt.Errorf("--db %s is a directory, not a results database (name the database file in it, e.g. %s)", path, filepath.Join(path, "results.db"))
	case err == nil && !st.Mode().IsRegular():
		return fmt.Errorf("--db %s is not a regular file (%s)", path, st.Mode().Type())
	case errors.Is(err, os.ErrNotExist) || err == nil && strings.HasSuffix(path, "/"):
		return fmt.Errorf("--db %s: no such results database (run `sweep run` first)", path)
	case err != nil:
		return fmt.Errorf("--db %s: %w", path, err)
	}
	return nil
}

// Lease is a running trial's claim: who holds it and how fresh its heartbeat is.
type Lease struct {
	TrialID   int64
	Owner     string  // host:pid/wN of the worker
	Step      int     // the step its last heartbeat reported
	Heartbeat float64 // Unix seconds of the last heartbeat
}

// Host and PID split the owner "host:pid/wN" ("" and 0 when it is not of that form).
func (l Lease) Host() string {
	h, _, _ := strings.Cut(l.Owner, ":")
	return h
}

// PID is the worker's process id (0 when unknown).
func (l Lease) PID() int {
	_, rest, _ := strings.Cut(l.Owner, ":")
	p, _, _ := strings.Cut(rest, "/")
	n, _ := strconv.Atoi(p)
	return n
}

// Age is how long ago the last heartbeat was.
func (l Lease) Age() time.Duration {
	return time.Duration((now() - l.Heartbeat) * float64(time.Second))
}

// Running lists the leases of the running trials (of one sweep when sweep is not "").
func (s *Store) Running(sweep string) ([]Lease, error) {
	q := `SELECT t.id, COALESCE(t.owner, ''), t.step, COALESCE(t.heartbeat_at, 0) FROM trials t WHERE t.state = 'running'`
	var args []any
	if sweep != "" {
		q += ` AND t.id IN (SELECT trial_id FROM sweep_trials st JOIN sweeps s ON s.id = st.sweep_id WHERE s.name = ?)`
		args = append(args, sweep)
	}
	rows, err := s.Query(q+` ORDER BY t.id`, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Lease
	for rows.Next() {
		var l Lease
		if err := rows.Scan(&l.TrialID, &l.Owner, &l.Step, &l.Heartbeat); err != nil {
			return nil, err
		}
		out = append(out, l)
	}
	return out, rows.Err()
}
