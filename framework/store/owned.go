package store

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// Owned is a claimed trial as its worker holds it: every write through it checks, in the same transaction,
// that the trial is still running under this worker's claim (its owner and attempt number). A worker whose
// lease expired while it was stopped (SIGSTOP, a long stall) and whose trial another worker claimed gets
// ErrNotOwner and writes nothing: no metric, evaluation or artifact row, and no file renamed into place.
// It is database/sql's Tx idea for a claim: the scope of every write is the lease.
type Owned struct {
	s       *Store
	ID      int64
	Owner   string
	Attempt int
}

// Own is the handle of trial t as claimed by owner (t as Claim returned it: its Attempts is this claim's).
func (s *Store) Own(t *Trial, owner string) *Owned {
	return &Owned{s: s, ID: t.ID, Owner: owner, Attempt: t.Attempts}
}

// fence checks the lease inside tx and, on PostgreSQL, locks the trial's row until tx ends, so that no
// claim can take the trial between the check and the writes that follow it (on SQLite the transaction holds
// the database's write lock from its start: BEGIN IMMEDIATE).
func (o *Owned) fence(tx *Tx) error {
	r, err := tx.Exec(`UPDATE trials SET heartbeat_at = heartbeat_at WHERE id = ? AND owner = ? AND attempts = ? AND state = 'running'`,
		o.ID, o.Owner, o.Attempt)
	if err != nil {
		return err
	}
	if n, err := r.RowsAffected(); err == nil && n == 0 {
		return fmt.Errorf("trial %d (attempt %d of %s): %w", o.ID, o.Attempt, o.Owner, ErrNotOwner)
	}
	return err
}

// InTx runs fn in one transaction that first checks the lease.
func (o *Owned) InTx(fn func(tx *Tx) error) error {
	return o.s.InTx(func(tx *Tx) error {
		if err := o.fence(tx); err != nil {
			return err
		}
		return fn(tx)
	})
}

// Check says whether the lease is still this worker's (ErrNotOwner when not), writing nothing.
func (o *Owned) Check() error { return o.InTx(func(*Tx) error { return nil }) }

// Finish records the attempt's outcome (done, failed, or pending when interrupted) under the lease: a
// worker whose claim was taken records nothing.
func (o *Owned) Finish(state, reason string, endStep int) error {
	return o.s.finish(o.ID, o.Owner, o.Attempt, state, reason, endStep)
}

// AddMetrics writes metrics under the lease.
func (o *Owned) AddMetrics(ms []Metric) error {
	if len(ms) == 0 {
		return nil
	}
	return o.InTx(func(tx *Tx) error {
		for _, m := range ms {
			if _, err := tx.Exec(`INSERT INTO metrics (trial_id, step, name, value) VALUES (?, ?, ?, ?)
				ON CONFLICT (trial_id, step, name) DO UPDATE SET value = excluded.value`, o.ID, m.Step, m.Name, m.Value); err != nil {
				return err
			}
		}
		return nil
	})
}

// TruncateMetrics deletes metrics after step under the lease (a resumed attempt rewrites them).
func (o *Owned) TruncateMetrics(after int) error {
	return o.InTx(func(tx *Tx) error {
		_, err := tx.Exec(`DELETE FROM metrics WHERE trial_id = ? AND step > ?`, o.ID, after)
		return err
	})
}

// SetEvalAt records one evaluation number (Final for the final evaluation) under the lease.
func (o *Owned) SetEvalAt(step int, protocol, metric string, value float64) error {
	return o.InTx(func(tx *Tx) error {
		_, err := tx.Exec(`INSERT INTO evals (trial_id, protocol, metric, step, value) VALUES (?, ?, ?, ?, ?)
			ON CONFLICT (trial_id, protocol, metric, step) DO UPDATE SET value = excluded.value`, o.ID, protocol, metric, step, value)
		return err
	})
}

func addArtifact(tx *Tx, id int64, kind, path, sha string, bytes int64) error {
	_, err := tx.Exec(`INSERT INTO artifacts (trial_id, kind, path, sha256, bytes, created_at) VALUES (?, ?, ?, ?, ?, ?)
		ON CONFLICT (trial_id, kind) DO UPDATE SET path = excluded.path, sha256 = excluded.sha256, bytes = excluded.bytes, created_at = excluded.created_at`,
		id, kind, path, sha, bytes, now())
	return err
}

// AddArtifact records a file the trial produced (already in place) under the lease.
func (o *Owned) AddArtifact(kind, path, sha string, bytes int64) error {
	return o.InTx(func(tx *Tx) error { return addArtifact(tx, o.ID, kind, path, sha, bytes) })
}

// CommitFile puts a file the trial wrote under a temporary name of this attempt (tmp, in final's folder)
// into place and records it as the trial's artifact of kind, in one transaction that first checks the
// lease: the rename happens only while the claim is this worker's, and no claim can intervene before the
// record is committed. When the lease is lost, tmp is removed and final is left as it was.
func (o *Owned) CommitFile(kind, tmp, final, sha string, bytes int64) error {
	if filepath.Dir(tmp) != filepath.Dir(final) {
		return fmt.Errorf("trial %d: %s and %s are not in one folder (a rename must not cross file systems)", o.ID, tmp, final)
	}
	err := o.InTx(func(tx *Tx) error {
		if err := os.Rename(tmp, final); err != nil && !(errors.Is(err, fs.ErrNotExist) && sameSHA(final, sha)) {
			// (a transaction retried after its rename finds tmp already in place as final)
			return fmt.Errorf("trial %d: putting %s in place: %w", o.ID, final, err)
		}
		return addArtifact(tx, o.ID, kind, final, sha, bytes)
	})
	if errors.Is(err, ErrNotOwner) {
		os.Remove(tmp)
		return err
	}
	if err == nil {
		if d, derr := os.Open(filepath.Dir(final)); derr == nil { // the rename itself reaches the disk
			d.Sync()
			d.Close()
		}
	}
	return err
}

func sameSHA(path, want string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return false
	}
	return hex.EncodeToString(h.Sum(nil)) == want
}
