package experiment

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"mimlab/framework/runner"
	"mimlab/framework/store"
	"mimlab/nn"
)

// commitFile writes one of a trial's files under a temporary name of this attempt, beside final
// (".NAME.tmp-a<attempt>-<random>", which files.RemoveTemps clears after a kill), and puts it in place and
// records it as the trial's artifact of kind only while this attempt still holds the trial, in the
// transaction that checks the lease (store.Owned.CommitFile). A worker that lost its lease (stopped longer
// than the lease while another resumed the trial) leaves final and its record as the other wrote them.
func commitFile(rec runner.Recorder, kind, final string, write func(tmp string) error) error {
	lease := rec.Lease()
	f, err := os.CreateTemp(filepath.Dir(final), fmt.Sprintf(".%s.tmp-a%d-*", filepath.Base(final), lease.Attempt))
	if err != nil {
		return fmt.Errorf("writing %s: %w", final, err)
	}
	tmp := f.Name()
	f.Close()
	if err := write(tmp); err != nil {
		os.Remove(tmp)
		// The worker that resumed the trial after this one's lease expired clears the temporary files it
		// finds (files.RemoveTemps): a write that failed that way is a lost lease, not a failed trial.
		if lerr := lease.Check(); errors.Is(lerr, store.ErrNotOwner) {
			return lerr
		}
		return err
	}
	sha, err := runner.FileSHA(tmp)
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("writing %s: %w", final, err)
	}
	st, err := os.Stat(tmp)
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("writing %s: %w", final, err)
	}
	return lease.CommitFile(kind, tmp, final, sha, st.Size())
}

// commitCheckpoint writes the trainer's checkpoint and records it, fenced by the lease.
func (t *Trial) commitCheckpoint(tr *nn.Trainer, rec runner.Recorder) error {
	return commitFile(rec, "checkpoint", t.checkpointPath(), func(tmp string) error { return t.saveCheckpointAs(tr, tmp) })
}
