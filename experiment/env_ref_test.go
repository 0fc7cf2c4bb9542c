package experiment

import (
	"io"
	"testing"
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
