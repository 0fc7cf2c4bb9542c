package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"mimlab/framework/store/pgtest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	pgtest.Stop()
	os.Exit(code)
}

// backend opens fresh, empty databases of one kind; every store test runs on each.
type backend struct {
	name string
	// fresh returns the --db value of a new empty database.
	fresh func(t *testing.T) string
}

func backends() []backend {
	return []backend{
		{"sqlite", func(t *testing.T) string { return filepath.Join(t.TempDir(), "r.db") }},
		{"postgres", func(t *testing.T) string { return pgtest.Require(t).NewDB(t) }},
	}
}

func openT(t *testing.T, db string) *Store {
	t.Helper()
	s, err := Open(db)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func sweepOf(t *testing.T, s *Store, n int) int64 {
	t.Helper()
	var ts []NewTrial
	for i := 0; i < n; i++ {
		ts = append(ts, NewTrial{Hash: fmt.Sprintf("%016x", i+1), Name: fmt.Sprintf("t[i=%d]", i), Spec: "{}"})
	}
	sw, err := s.AddSweep("sw", "x.toml", ts)
	if err != nil {
		t.Fatal(err)
	}
	return sw
}

func TestStore(t *testing.T) {
	tests := []struct {
		name string
		run  func(t *testing.T, db string)
	}{
		{"claims are exclusive across workers and stale leases are reclaimed", testClaims},
		{"concurrent opens migrate once", testConcurrentOpen},
		{"results round-trip", testRoundTrip},
		{"reclaims are bounded", testBoundedReclaims},
		{"each attempt keeps its commit and steps", testAttempts},
		{"migration 6 keeps the last attempt of older trials", testAttemptsMigration},
	}
	for _, b := range backends() {
		for _, tc := range tests {
			t.Run(b.name+"/"+tc.name, func(t *testing.T) { tc.run(t, b.fresh(t)) })
		}
	}
}

// Two (and four) workers, each with its own connection, race to claim 40 trials: each is claimed once.
func testClaims(t *testing.T, db string) {
	s := openT(t, db)
	sw := sweepOf(t, s, 40)
	if _, err := s.AddSweep("sw", "x.toml", []NewTrial{{Hash: fmt.Sprintf("%016x", 1), Name: "t[i=0]", Spec: "{}"}}); err != nil {
		t.Fatal(err) // registering again keeps states and adds nothing
	}
	var mu sync.Mutex
	got := map[int64]int{}
	var wg sync.WaitGroup
	for w := 0; w < 2; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			ws := openT(t, db)
			owner := fmt.Sprintf("host:%d/w0", w)
			for {
				tr, err := ws.Claim(context.Background(), sw, owner, time.Hour)
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
				if err := ws.Finish(tr.ID, owner, Done, "", -1); err != nil {
					t.Error(err)
				}
			}
		}(w)
	}
	wg.Wait()
	if len(got) != 40 {
		t.Fatalf("%d trials claimed, want 40", len(got))
	}
	for id, n := range got {
		if n != 1 {
			t.Fatalf("trial %d claimed %d times", id, n)
		}
	}
	// A running trial with an old heartbeat is claimed again; a fresh one is not.
	s.Exec(`UPDATE trials SET state = 'running', owner = 'dead', heartbeat_at = 1 WHERE id = 1`)
	s.Exec(`UPDATE trials SET state = 'running', owner = 'alive', heartbeat_at = ? WHERE id = 2`, now())
	tr, err := s.Claim(context.Background(), sw, "me", time.Minute)
	if err != nil || tr == nil || tr.ID != 1 || tr.Attempts != 2 {
		t.Fatalf("stale trial not reclaimed: %+v %v", tr, err)
	}
	if tr, _ := s.Claim(context.Background(), sw, "me", time.Minute); tr != nil {
		t.Fatalf("claimed a live trial: %+v", tr)
	}
	if err := s.Finish(2, "me", Done, "", -1); err == nil {
		t.Fatal("finishing another owner's trial must fail (ErrNotOwner)")
	}
	if n, _ := s.Unfinished(sw); n != 2 {
		t.Fatalf("%d unfinished, want 2", n)
	}
}

// Eight connections opening one new database at once migrate it exactly once.
func testConcurrentOpen(t *testing.T, db string) {
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := Open(db)
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
	s := openT(t, db)
	var n int
	s.Scan(`SELECT COUNT(*) FROM schema_version`, nil, &n)
	if n != len(migrations) {
		t.Fatalf("%d schema_version rows, want %d", n, len(migrations))
	}
}

func testRoundTrip(t *testing.T, db string) {
	s := openT(t, db)
	sw := sweepOf(t, s, 2)
	tr, err := s.Claim(context.Background(), sw, "h:1/w0", time.Hour)
	if err != nil || tr == nil {
		t.Fatal(tr, err)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(s.AddMetrics(tr.ID, []Metric{{1, "loss", 2.5}, {2, "loss", 2.0}, {2, "lr", 1e-3}}))
	must(s.AddMetrics(tr.ID, []Metric{{2, "loss", 1.5}})) // rewritten after a resume
	must(s.SetEvalAt(tr.ID, 600, "linear", "top1", 0.5))
	must(s.SetEvalAt(tr.ID, 600, "linear", "top1", 0.6))
	must(s.SetEval(tr.ID, "linear", "top1", 0.7))
	must(s.AddArtifact(tr.ID, "checkpoint", "/x/ck", "abc", 1<<40))
	must(s.SetBaseline("k", "mnist", "raw_pixels", "linear", "top1", 0.9))
	must(s.SetBaseline("k", "mnist", "raw_pixels", "linear", "top1", 0.91))
	must(s.SetProvenance(tr.ID, "h:1/w0", tr.Attempts, Provenance{GitCommit: "c", GitDirty: true, Host: "h"}))
	must(s.Heartbeat(tr.ID, "h:1/w0", 2))
	run, err := s.Running("sw")
	must(err)
	if len(run) != 1 || run[0].Host() != "h" || run[0].PID() != 1 || run[0].Step != 2 || run[0].Age() > time.Minute || run[0].Age() < 0 {
		t.Fatalf("leases %+v", run)
	}
	step, last, err := s.LastMetrics(tr.ID)
	must(err)
	if step != 2 || last["loss"] != 1.5 || last["lr"] != 1e-3 {
		t.Fatalf("last metrics at %d: %v", step, last)
	}
	ev, err := s.Evals(tr.ID)
	must(err)
	along, err := s.EvalsAlong(tr.ID)
	must(err)
	if ev["linear"]["top1"] != 0.7 || along[600]["linear"]["top1"] != 0.6 || len(along) != 1 {
		t.Fatalf("evals %v, along %v", ev, along)
	}
	if p, _ := s.Artifact(tr.ID, "checkpoint"); p != "/x/ck" {
		t.Fatalf("artifact %q", p)
	}
	if v, ok, _ := s.Baseline("k", "linear", "top1"); !ok || v != 0.91 {
		t.Fatalf("baseline %v %v", v, ok)
	}
	must(s.TruncateMetrics(tr.ID, 1))
	if steps, _, _ := s.Series(tr.ID, "loss"); len(steps) != 1 {
		t.Fatalf("after truncation: steps %v", steps)
	}
	must(s.Finish(tr.ID, "h:1/w0", Done, "", 2))
	got, err := s.TrialByID(tr.ID)
	must(err)
	if got.State != Done || got.Step != 2 {
		t.Fatalf("trial %+v", got)
	}
	run, err = s.Running("")
	must(err)
	if len(run) != 0 {
		t.Fatalf("running %v", run)
	}
	must(s.Reidentify([]Reidentified{{ID: tr.ID, OldHash: tr.Hash, NewHash: "ffffffffffffffff", NewSpec: "{}"}}, "identity", "v2"))
	if m, _ := s.Meta("identity"); m != "v2" {
		t.Fatalf("meta %q", m)
	}
	ts, err := s.Trials("sw")
	must(err)
	if len(ts) != 2 || ts[0].LegacyHash != tr.Hash {
		t.Fatalf("trials %+v", ts)
	}
}

// A trial whose lease keeps expiring (its worker dies every time) is reclaimed MaxReclaims times, then
// failed with the count.
func testBoundedReclaims(t *testing.T, db string) {
	s := openT(t, db)
	sw := sweepOf(t, s, 1)
	for i := 0; i <= MaxReclaims; i++ {
		tr, err := s.Claim(context.Background(), sw, fmt.Sprintf("h:%d/w0", i), time.Minute)
		if err != nil || tr == nil {
			t.Fatalf("claim %d: %+v %v", i, tr, err)
		}
		s.Exec(`UPDATE trials SET heartbeat_at = 1 WHERE id = ?`, tr.ID) // the worker dies
	}
	tr, err := s.Claim(context.Background(), sw, "last", time.Minute)
	if err != nil || tr != nil {
		t.Fatalf("claimed after %d reclaims: %+v %v", MaxReclaims, tr, err)
	}
	got, _ := s.TrialByID(1)
	if got.State != Failed || !strings.Contains(got.Error, fmt.Sprintf("lease expired %d times", MaxReclaims+1)) {
		t.Fatalf("trial %+v", got)
	}
	// Its last owner cannot flip it back (Finish needs it running under that owner).
	if err := s.Finish(1, fmt.Sprintf("h:%d/w0", MaxReclaims), Pending, "interrupted", -1); err == nil {
		t.Fatal("a failed trial was finished by its old owner")
	}
	// --retry-failed starts its count again.
	if n, err := s.RetryFailed(sw); err != nil || n != 1 {
		t.Fatalf("retry: %d %v", n, err)
	}
	tr, err = s.Claim(context.Background(), sw, "again", time.Minute)
	if err != nil || tr == nil {
		t.Fatalf("not claimable after --retry-failed: %v", err)
	}
	var reclaims int
	s.Scan(`SELECT reclaims FROM trials WHERE id = 1`, nil, &reclaims)
	if reclaims != 0 {
		t.Fatalf("reclaims %d after a retry", reclaims)
	}
}

func TestRedact(t *testing.T) {
	cases := []struct{ in, want string }{
		{"postgres://u:secret@h:5432/db?sslmode=disable", "postgres://u:xxxxx@h:5432/db?sslmode=disable"},
		{"postgres://u@h/db?password=secret", "postgres://u@h/db?password=xxxxx"},
		{"postgres://u:p%zz@h/db", "postgres://(a URL that does not parse; not shown, it may hold a password)"},
		{"postgres://u@h/db", "postgres://u@h/db"},
	}
	for _, c := range cases {
		if got := Redact(c.in); got != c.want {
			t.Errorf("Redact(%q) = %q, want %q", c.in, got, c.want)
		}
	}
	for _, bad := range []string{"postgres://u:pa#ss@h/db", "postgres://u:pa?ss@h/db", "postgres://u:p%zz@h/db"} {
		s, err := Open(bad) // must not panic, must not show the password
		if err == nil {
			s.Close()
			continue
		}
		if strings.Contains(err.Error(), "pa#ss") || strings.Contains(err.Error(), "pa?ss") || strings.Contains(err.Error(), "p%zz") {
			t.Errorf("Open(%q): the error shows the password: %v", bad, err)
		}
	}
}

// A trial interrupted, then killed, then finished under three commits keeps each attempt's commit, host and
// steps; the trials row has the last one's. A worker whose lease was taken cannot write into the new
// owner's attempt.
func testAttempts(t *testing.T, db string) {
	s := openT(t, db)
	sw := sweepOf(t, s, 1)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	type leg struct {
		owner, commit string
		dirty         bool
		from, reached int
		end           string // Finish state; "" = killed (lease left to expire)
	}
	legs := []leg{
		{"a:1/w0", "aaaaaaaaaa", false, 0, 500, Pending},
		{"b:2/w0", "bbbbbbbbbb", false, 400, 700, ""},
		{"c:3/w1", "cccccccccc", true, 600, 1000, Done},
	}
	for i, l := range legs {
		tr, err := s.Claim(context.Background(), sw, l.owner, time.Minute)
		if err != nil || tr == nil || tr.Attempts != i+1 {
			t.Fatalf("leg %d: claim %+v %v", i, tr, err)
		}
		must(s.SetProvenance(tr.ID, l.owner, tr.Attempts, Provenance{GitCommit: l.commit, GitDirty: l.dirty, Host: l.owner[:1], Backend: "ort"}))
		must(s.AttemptFrom(tr.ID, l.owner, tr.Attempts, l.from))
		if i == 2 {
			// The killed attempt's worker wakes up late: its writes name its own claim and fail.
			if err := s.SetProvenance(tr.ID, legs[1].owner, 2, Provenance{GitCommit: "stale"}); !errors.Is(err, ErrNotOwner) {
				t.Errorf("a stale worker's SetProvenance: %v, want ErrNotOwner", err)
			}
			if err := s.AttemptFrom(tr.ID, legs[1].owner, 3, 0); !errors.Is(err, ErrNotOwner) {
				t.Errorf("a stale worker's AttemptFrom on the new attempt: %v, want ErrNotOwner", err)
			}
			if err := s.Finish(tr.ID, legs[1].owner, Failed, "late", 9999); !errors.Is(err, ErrNotOwner) {
				t.Errorf("a stale worker's Finish: %v, want ErrNotOwner", err)
			}
		}
		must(s.Heartbeat(tr.ID, l.owner, l.reached-10))
		if l.end != "" {
			must(s.Finish(tr.ID, l.owner, l.end, "", l.reached))
		} else {
			_, err := s.Exec(`UPDATE trials SET heartbeat_at = 1 WHERE id = ?`, tr.ID) // the process died
			must(err)
		}
	}
	as, err := s.Attempts(1)
	must(err)
	want := []struct {
		attempt, from, end int
		outcome, commit    string
		dirty              bool
	}{
		{1, 0, 500, "interrupted", "aaaaaaaaaa", false},
		{2, 400, -1, "", "bbbbbbbbbb", false},
		{3, 600, 1000, "done", "cccccccccc", true},
	}
	if len(as) != len(want) {
		t.Fatalf("%d attempts, want %d: %+v", len(as), len(want), as)
	}
	for i, w := range want {
		a := as[i]
		if a.Attempt != w.attempt || a.FromStep != w.from || a.EndStep != w.end || a.Outcome != w.outcome || a.GitCommit != w.commit ||
			a.GitDirty != w.dirty || a.Owner != legs[i].owner || a.Host != legs[i].owner[:1] || a.StartedAt == 0 || (w.outcome != "") != (a.EndedAt != 0) {
			t.Errorf("attempt %d: %+v, want %+v", i+1, a, w)
		}
	}
	var commit string
	must(s.Scan(`SELECT git_commit FROM trials WHERE id = 1`, nil, &commit))
	if commit != "cccccccccc" {
		t.Errorf("trials.git_commit %q, want the last attempt's", commit)
	}
	// A finished trial takes no more provenance.
	if err := s.SetProvenance(1, legs[2].owner, 3, Provenance{GitCommit: "dddddddddd"}); !errors.Is(err, ErrNotOwner) {
		t.Errorf("provenance on a done trial: %v, want ErrNotOwner", err)
	}
	// An attempt that reported no step ends with an unknown end step.
	sw2, err := s.AddSweep("sw2", "y.toml", []NewTrial{{Hash: "00000000000000ff", Name: "u", Spec: "{}"}})
	must(err)
	tr, err := s.Claim(context.Background(), sw2, "d:4/w0", time.Minute)
	must(err)
	must(s.SetProvenance(tr.ID, "d:4/w0", tr.Attempts, Provenance{GitCommit: "eeee"}))
	must(s.Finish(tr.ID, "d:4/w0", Failed, "bad spec", -1))
	if as, _ := s.Attempts(tr.ID); len(as) != 1 || as[0].EndStep != -1 || as[0].FromStep != -1 || as[0].Outcome != "failed" {
		t.Errorf("an attempt that failed before training: %+v", as)
	}
}

// A database written before the attempts table (schema 5) gets one attempt per claimed trial, its last,
// with the trial's provenance: its end the later of its heartbeat step and its last metric, an interrupted
// trial's outcome "interrupted", its start step 0 when it was the only attempt and unknown otherwise.
// Unclaimed trials get none.
func testAttemptsMigration(t *testing.T, db string) {
	s := openT(t, db)
	sweepOf(t, s, 4)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	_, err := s.Exec(`DROP TABLE attempts`)
	must(err)
	_, err = s.Exec(`DELETE FROM schema_version WHERE version = 6`)
	must(err)
	for _, q := range []string{
		// done in two attempts; its heartbeat step was never written (0), its metrics reach 10000
		`UPDATE trials SET state = 'done', attempts = 2, step = 0, finished_at = 5, git_commit = 'f7e13e8', git_dirty = 0, host = 'vm', backend = 'ort' WHERE id = 1`,
		`INSERT INTO metrics (trial_id, step, name, value) VALUES (1, 9990, 'loss', 1), (1, 10000, 'loss', 1)`,
		// interrupted in its only attempt at step 2000 (heartbeat later than its last metric)
		`UPDATE trials SET state = 'pending', error = 'interrupted', attempts = 1, step = 2000, started_at = 3, git_commit = '015d6d2', git_dirty = 0 WHERE id = 2`,
		`INSERT INTO metrics (trial_id, step, name, value) VALUES (2, 1990, 'loss', 1)`,
		// running (or killed) in its first attempt: nothing known of its end
		`UPDATE trials SET state = 'running', attempts = 1, step = 13, git_commit = '015d6d2', git_dirty = 0 WHERE id = 3`,
	} {
		_, err := s.Exec(q)
		must(err)
	}
	s.Close()
	s = openT(t, db)
	for _, c := range []struct {
		id                 int64
		attempt, from, end int
		outcome, commit    string
		started, ended     float64
	}{
		{1, 2, -1, 10000, "done", "f7e13e8", 0, 5},
		{2, 1, 0, 2000, "interrupted", "015d6d2", 3, 0},
		{3, 1, 0, -1, "", "015d6d2", 0, 0},
	} {
		as, err := s.Attempts(c.id)
		must(err)
		if len(as) != 1 || as[0].Attempt != c.attempt || as[0].FromStep != c.from || as[0].EndStep != c.end || as[0].Outcome != c.outcome ||
			as[0].GitCommit != c.commit || as[0].StartedAt != c.started || as[0].EndedAt != c.ended {
			t.Errorf("migrated attempts of trial %d: %+v, want %+v", c.id, as, c)
		}
	}
	if as, err := s.Attempts(4); err != nil || len(as) != 0 {
		t.Errorf("unclaimed trial 4 has attempts %+v (%v)", as, err)
	}
}
