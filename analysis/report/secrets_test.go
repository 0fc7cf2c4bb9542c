package report

import (
	"bytes"
	"context"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"mimlab/experiment"
	"mimlab/framework/spec"
	"mimlab/framework/store"
	"mimlab/framework/store/pgtest"
	"mimlab/framework/sweep"
)

// A report of a PostgreSQL database whose URL holds a password shows the URL without it: not in index.html,
// not in REPORT.md, not in the log.
func TestReportHidesThePassword(t *testing.T) {
	db := pgtest.Require(t).NewDB(t)
	u, err := url.Parse(db)
	if err != nil {
		t.Fatal(err)
	}
	pw, ok := u.User.Password()
	if !ok || len(pw) < 4 {
		t.Fatalf("the test server's URL has no password to hide")
	}
	dir := t.TempDir()
	sp := filepath.Join(dir, "tiny.toml")
	os.WriteFile(sp, []byte(tinySweep), 0o644)
	raw, err := spec.Load(sp, nil)
	if err != nil {
		t.Fatal(err)
	}
	trials, err := sweep.Expand(raw, experiment.Sections())
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(db)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	sid, err := st.AddSweep(raw.Name, sp, experiment.Planned{Raw: raw, Trials: trials[:1]}.NewTrials())
	if err != nil {
		t.Fatal(err)
	}
	c, err := st.Claim(context.Background(), sid, "test", time.Minute)
	if err != nil || c == nil {
		t.Fatalf("claim: %v", err)
	}
	if err := st.AddMetrics(c.ID, []store.Metric{{Step: 1, Name: "loss", Value: 1}, {Step: 2, Name: "loss", Value: 0.5}}); err != nil {
		t.Fatal(err)
	}
	if err := st.SetEval(c.ID, "linear", "top1", 0.5); err != nil {
		t.Fatal(err)
	}
	if err := st.Finish(c.ID, "test", store.Done, "", 2); err != nil {
		t.Fatal(err)
	}
	var log bytes.Buffer
	out := filepath.Join(dir, "report")
	if err := Generate(Options{DB: db, Out: out, Markdown: true, Backend: "go", Runs: filepath.Join(dir, "runs"), Log: &log}); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"index.html", "REPORT.md"} {
		b, err := os.ReadFile(filepath.Join(out, f))
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(b, []byte(pw)) || bytes.Contains(b, []byte(url.QueryEscape(pw))) {
			t.Errorf("%s holds the database password", f)
		}
		if !bytes.Contains(b, []byte(u.Host)) {
			t.Errorf("%s does not name the database (%s)", f, u.Host)
		}
	}
	if strings.Contains(log.String(), pw) {
		t.Errorf("the log holds the password:\n%s", log.String())
	}
}
