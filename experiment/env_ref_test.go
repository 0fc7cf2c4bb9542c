package experiment

import (
	"fmt"
	"io"
	"testing"

	"mimlab/framework/spec"
	"mimlab/framework/store"
)

// Reference rows lock one by one: while one trial computes a row, another may take the other row, and a
// third asking for a busy row waits for it (lockReference) or is told it is busy (tryLockReference).
func TestReferenceLocksAreIndependent(t *testing.T) {
	e := NewEnv(nil, "go", t.TempDir(), io.Discard)
	unlockRaw, ok := e.tryLockReference("raw")
	if !ok {
		t.Fatal("raw row: not free on first use")
	}
	if _, ok := e.tryLockReference("raw"); ok {
		t.Fatal("raw row: locked twice")
	}
	unlockRand, ok := e.tryLockReference("random")
	if !ok {
		t.Fatal("random row: busy while only the raw row is held")
	}
	got := make(chan struct{})
	go func() {
		unlock := e.lockReference("raw")
		close(got)
		unlock()
	}()
	select {
	case <-got:
		t.Fatal("lockReference returned while another trial held the row")
	default:
	}
	unlockRaw()
	<-got
	unlockRand()
	if _, ok := e.tryLockReference("random"); !ok {
		t.Fatal("random row: still busy after its unlock")
	}
}

// The training log and the live lines name a trial as the status does: its configuration's short name and
// its seed, not every swept key; a trial NameTrials did not see keeps its full name.
func TestDisplayNamesAreShort(t *testing.T) {
	e := NewEnv(nil, "go", t.TempDir(), io.Discard)
	var ts []store.Trial
	id := int64(0)
	for _, m := range []string{"cae", "beit"} {
		for _, seed := range []int{1, 2} {
			id++
			ts = append(ts, store.Trial{ID: id, Name: fmt.Sprintf("quickstart[decoder.name=x,method.name=%s,train.seed=%d]", m, seed),
				Base: "quickstart", Point: spec.Point{"decoder.name": "x", "method.name": m, spec.SeedKey: int64(seed)}})
		}
	}
	e.NameTrials(ts)
	for i, want := range []string{"cae seed=1", "cae seed=2", "beit seed=1", "beit seed=2"} {
		if got := e.displayName(&ts[i]); got != want {
			t.Errorf("trial %d (%s): display name %q, want %q", ts[i].ID, ts[i].Name, got, want)
		}
	}
	other := store.Trial{ID: 99, Name: "other[method.name=mae]"}
	if got := e.displayName(&other); got != other.Name {
		t.Errorf("unnamed trial: %q, want its full name", got)
	}
}
