package export_test

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"mimlab/framework/export"
	"mimlab/framework/store"
)

// hyparquetVersion is the npm package the Parquet files are read back with.
const hyparquetVersion = "1.33.0"

// keys orders each table the way the exporter must (its primary key).
var keys = map[string]string{"trials": "id", "metrics": "trial_id, step, name", "evals": "trial_id, protocol, metric", "attempts": "trial_id, attempt"}

// buildDB writes a small results database through the store's own API: four trials (done, failed,
// running, pending) with awkward text (commas, quotes, newlines, non-ASCII), provenance on one, metrics
// with values that need every digit of a double, and evals. A column that a later migration might add
// (JSON, no INTEGER/REAL/TEXT type) is added too: the export must carry it without knowing it.
func buildDB(t *testing.T) *store.Store {
	t.Helper()
	st, err := store.Open(filepath.Join(t.TempDir(), "results.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	var nts []store.NewTrial
	for i, name := range []string{`tiny[masking.num_masked=3,train.seed=1]`, `tiny[masking.num_masked=4,train.seed=1]`, `tiny["quoted", ünïcode]`, "tiny[pending]"} {
		nts = append(nts, store.NewTrial{Hash: fmt.Sprintf("%016x", 0xabc0+i), Name: name, Spec: fmt.Sprintf("[train]\nseed = %d\nnote = \"a, b\"\n", i)})
	}
	sid, err := st.AddSweep("tiny", "tiny.toml", nts)
	if err != nil {
		t.Fatal(err)
	}
	var claimed []*store.Trial
	for range 3 {
		tr, err := st.Claim(context.Background(), sid, "tester", time.Hour)
		if err != nil || tr == nil {
			t.Fatalf("claim: %v %v", tr, err)
		}
		claimed = append(claimed, tr)
	}
	if err := st.SetProvenance(claimed[0].ID, "tester", claimed[0].Attempts, store.Provenance{GitCommit: "deadbeef", GitDirty: true, GoVersion: "go1.26.8", Host: "h", CPU: "c", Backend: "go"}); err != nil {
		t.Fatal(err)
	}
	for k, tr := range claimed {
		var ms []store.Metric
		for step := 0; step <= 4; step += 2 {
			ms = append(ms, store.Metric{Step: step, Name: "loss", Value: 1.0/3 + float64(step)*math.Pi + float64(k)},
				store.Metric{Step: step, Name: "lr", Value: 1e-300 * float64(step+1)},
				store.Metric{Step: step, Name: "grad_norm", Value: -2.5e10 / float64(step+7)})
		}
		if err := st.AddMetrics(tr.ID, ms); err != nil {
			t.Fatal(err)
		}
	}
	for k, tr := range claimed[:2] {
		for _, p := range []string{"linear", "knn"} {
			for j, m := range []string{"top1", "top5"} {
				if err := st.SetEval(tr.ID, p, m, 0.1*float64(k+1)+1.0/float64(7+j)); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	if err := st.Finish(claimed[0].ID, "tester", store.Done, "", 4); err != nil {
		t.Fatal(err)
	}
	if err := st.Finish(claimed[1].ID, "tester", store.Failed, "boom, \"quoted\"\nsecond line", 4); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Raw().Exec(`ALTER TABLE trials ADD COLUMN export_test_point JSON`); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Raw().Exec(`UPDATE trials SET export_test_point = json_object('masking.num_masked', id + 2, 'note', 'x,y') WHERE id <= 2`); err != nil {
		t.Fatal(err)
	}
	return st
}

// held is a table as the store holds it: column names and rows (nil, int64, float64 or string cells).
type held struct {
	cols []string
	rows [][]any
}

func heldTable(t *testing.T, db *sql.DB, table string) held {
	t.Helper()
	rs, err := db.Query(`SELECT * FROM ` + table + ` ORDER BY ` + keys[table])
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Close()
	var h held
	h.cols, _ = rs.Columns()
	for rs.Next() {
		row := make([]any, len(h.cols))
		ptrs := make([]any, len(row))
		for i := range row {
			ptrs[i] = &row[i]
		}
		if err := rs.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		for i, v := range row {
			if b, ok := v.([]byte); ok {
				row[i] = string(b)
			}
		}
		h.rows = append(h.rows, row)
	}
	if err := rs.Err(); err != nil {
		t.Fatal(err)
	}
	return h
}

// textColumns are the columns of h holding strings (so pandas reads them as text, not guessed numbers).
func textColumns(h held) []string {
	var out []string
	for i, c := range h.cols {
		for _, r := range h.rows {
			if _, ok := r[i].(string); ok {
				out = append(out, c)
				break
			}
		}
	}
	return out
}

// needReader fails under CI=true (where .ci/run installs the readers) and skips otherwise.
func needReader(t *testing.T, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s (CI=true: the reader must be installed)", msg)
	}
	t.Skip(msg)
}

func python(t *testing.T) string {
	t.Helper()
	py := "/usr/bin/python3"
	if _, err := os.Stat(py); err != nil {
		if py, err = exec.LookPath("python3"); err != nil {
			needReader(t, "no python3 to read the CSV back with pandas (apt-get install python3-pandas)")
		}
	}
	if out, err := exec.Command(py, "-c", "import pandas").CombinedOutput(); err != nil {
		needReader(t, "%s has no pandas to read the CSV back (apt-get install python3-pandas): %v %s", py, err, lastLine(out))
	}
	return py
}

// hyparquet returns a directory with the npm package hyparquet installed, installing it once per machine
// (into $MIMLAB_CACHE or the user cache dir, /mimlab/hyparquet-VERSION, like the ONNX Runtime library).
func hyparquet(t *testing.T) string {
	t.Helper()
	if _, err := exec.LookPath("node"); err != nil {
		needReader(t, "no node to read the Parquet files back with hyparquet (apt-get install nodejs npm)")
	}
	cache := os.Getenv("MIMLAB_CACHE")
	if cache == "" {
		d, err := os.UserCacheDir()
		if err != nil {
			d = os.TempDir()
		}
		cache = filepath.Join(d, "mimlab")
	}
	dir := filepath.Join(cache, "hyparquet-"+hyparquetVersion)
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "hyparquet", "package.json")); err == nil {
		return dir
	}
	npm, err := exec.LookPath("npm")
	if err != nil {
		needReader(t, "no npm to install hyparquet@%s with (apt-get install npm)", hyparquetVersion)
	}
	if err := os.MkdirAll(cache, 0o755); err != nil {
		t.Fatal(err)
	}
	tmp, err := os.MkdirTemp(cache, "hyparquet-*.tmp")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(tmp)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, npm, "install", "--prefix", tmp, "--no-audit", "--no-fund", "--no-save", "--loglevel=error", "hyparquet@"+hyparquetVersion)
	if out, err := cmd.CombinedOutput(); err != nil {
		needReader(t, "npm install hyparquet@%s: %v\n%s", hyparquetVersion, err, out)
	}
	if err := os.Rename(tmp, dir); err != nil {
		if _, serr := os.Stat(filepath.Join(dir, "node_modules", "hyparquet")); serr != nil { // not a concurrent install
			t.Fatal(err)
		}
	}
	return dir
}

func lastLine(b []byte) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return lines[len(lines)-1]
}

func run(t *testing.T, name string, args ...string) []byte {
	t.Helper()
	var stderr bytes.Buffer
	cmd := exec.Command(name, args...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, stderr.String())
	}
	return out
}

func exportFile(t *testing.T, db *sql.DB, table, format string) (string, int) {
	t.Helper()
	var b bytes.Buffer
	n, err := export.Table(db, table, format, &b)
	if err != nil {
		t.Fatalf("export %s as %s: %v", table, format, err)
	}
	p := filepath.Join(t.TempDir(), table+"."+format)
	if err := os.WriteFile(p, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return p, n
}

// near says whether two doubles agree to 1e-12, relative.
func near(a, b float64) bool {
	return a == b || math.Abs(a-b) <= 1e-12*math.Max(math.Abs(a), math.Abs(b))
}

// same compares a cell the store holds with one a reader returned (decoded from JSON: nil, float64,
// string, or for hyparquet's INT64 values {"i": digits}). CSV cannot tell NULL from "": both read as null.
func same(want, got any, csv bool) bool {
	if g, ok := got.(map[string]any); ok { // hyparquet INT64
		w, ok := want.(int64)
		return ok && g["i"] == strconv.FormatInt(w, 10)
	}
	switch w := want.(type) {
	case nil:
		return got == nil
	case int64:
		g, ok := got.(float64) // pandas: int64, or float64 when the column has empty cells
		return ok && g == float64(w)
	case float64:
		g, ok := got.(float64)
		return ok && near(w, g)
	case string:
		if w == "" && csv {
			return got == nil
		}
		return got == w
	}
	return false
}

func compare(t *testing.T, what string, h held, cols []string, rows [][]any, csv bool) {
	t.Helper()
	if strings.Join(cols, ",") != strings.Join(h.cols, ",") {
		t.Errorf("%s: columns %v, the store has %v", what, cols, h.cols)
	}
	if len(rows) != len(h.rows) {
		t.Fatalf("%s: %d rows, the store has %d", what, len(rows), len(h.rows))
	}
	bad := 0
	for r := range h.rows {
		if len(rows[r]) != len(h.cols) {
			t.Fatalf("%s row %d: %d cells, want %d", what, r, len(rows[r]), len(h.cols))
		}
		for c, want := range h.rows[r] {
			if !same(want, rows[r][c], csv) {
				if bad++; bad <= 10 {
					t.Errorf("%s row %d column %s: read back %#v, the store holds %#v", what, r, h.cols[c], rows[r][c], want)
				}
			}
		}
	}
}

// Each table, exported as CSV and as Parquet, reads back with pandas and with hyparquet (readers that share
// no code with the exporter) to the rows and values the store holds, in primary-key order.
func TestTablesReadBack(t *testing.T) {
	st := buildDB(t)
	want := map[string]int{"trials": 4, "metrics": 27, "evals": 8, "attempts": 1}
	for _, table := range export.Tables {
		h := heldTable(t, st.Raw(), table)
		if len(h.rows) != want[table] {
			t.Fatalf("the test database has %d %s rows, want %d", len(h.rows), table, want[table])
		}
		t.Run(table+"/csv", func(t *testing.T) {
			p, n := exportFile(t, st.Raw(), table, "csv")
			if n != len(h.rows) {
				t.Errorf("Table returned %d rows, the store has %d", n, len(h.rows))
			}
			py := python(t)
			var got struct {
				Columns []string
				Dtypes  []string
				Rows    [][]any
			}
			out := run(t, py, filepath.Join("testdata", "read_csv.py"), p, strings.Join(textColumns(h), ","))
			if err := json.Unmarshal(out, &got); err != nil {
				t.Fatalf("pandas output: %v\n%s", err, out)
			}
			compare(t, "pandas "+table+".csv", h, got.Columns, got.Rows, true)
		})
		t.Run(table+"/parquet", func(t *testing.T) {
			p, n := exportFile(t, st.Raw(), table, "parquet")
			if n != len(h.rows) {
				t.Errorf("Table returned %d rows, the store has %d", n, len(h.rows))
			}
			dir := hyparquet(t)
			var got struct {
				Schema []struct {
					Name, Type, Repetition string
					Logical                *string
				}
				Rows    [][]any
				NumRows int
			}
			out := run(t, "node", filepath.Join("testdata", "read_parquet.mjs"), dir, p)
			if err := json.Unmarshal(out, &got); err != nil {
				t.Fatalf("hyparquet output: %v\n%s", err, out)
			}
			if got.NumRows != len(h.rows) {
				t.Errorf("file metadata says %d rows, the store has %d", got.NumRows, len(h.rows))
			}
			var cols []string
			for _, c := range got.Schema {
				cols = append(cols, c.Name)
				if c.Repetition != "OPTIONAL" {
					t.Errorf("column %s is %s, want OPTIONAL", c.Name, c.Repetition)
				}
				wantType := map[string]string{"id": "INT64", "trial_id": "INT64", "step": "INT64", "attempts": "INT64",
					"git_dirty": "INT64", "value": "DOUBLE", "created_at": "DOUBLE", "started_at": "DOUBLE",
					"name": "BYTE_ARRAY", "spec": "BYTE_ARRAY", "metric": "BYTE_ARRAY", "export_test_point": "BYTE_ARRAY"}[c.Name]
				if wantType != "" && c.Type != wantType {
					t.Errorf("column %s has Parquet type %s, want %s", c.Name, c.Type, wantType)
				}
				if c.Type == "BYTE_ARRAY" && (c.Logical == nil || (*c.Logical != "STRING" && *c.Logical != "UTF8")) {
					t.Errorf("text column %s lacks the STRING annotation: %v", c.Name, c.Logical)
				}
			}
			compare(t, "hyparquet "+table+".parquet", h, cols, got.Rows, false)
		})
	}
}

// Exporting twice gives the same bytes; unknown tables and formats are errors naming the allowed values.
func TestDeterministicAndErrors(t *testing.T) {
	st := buildDB(t)
	for _, table := range export.Tables {
		for _, format := range export.Formats {
			var a, b bytes.Buffer
			if _, err := export.Table(st.Raw(), table, format, &a); err != nil {
				t.Fatal(err)
			}
			if _, err := export.Table(st.Raw(), table, format, &b); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(a.Bytes(), b.Bytes()) {
				t.Errorf("%s as %s: two exports differ", table, format)
			}
		}
	}
	for _, c := range []struct{ table, format, want string }{
		{"baselines", "csv", `unknown table "baselines" (want one of trials, metrics, evals, attempts)`},
		{"trials", "xlsx", `unknown format "xlsx" (want one of csv, parquet)`},
	} {
		var b bytes.Buffer
		if _, err := export.Table(st.Raw(), c.table, c.format, &b); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Table(%s, %s): %v, want an error containing %q", c.table, c.format, err, c.want)
		}
		if b.Len() != 0 {
			t.Errorf("Table(%s, %s) wrote %d bytes", c.table, c.format, b.Len())
		}
	}
}

// CSV formula injection: by default a text cell a spreadsheet would run as a formula gets OWASP's leading
// apostrophe (numbers, however negative, are untouched); ExactCSV writes it as stored.
func TestCSVFormulaCells(t *testing.T) {
	st, err := store.Open(filepath.Join(t.TempDir(), "r.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	names := []string{`=HYPERLINK("http://evil","x")`, "+1+2", "-2+3", "@SUM(A1)", "\tTAB", "\rCR", "plain = not a formula", "it's fine"}
	var nts []store.NewTrial
	for i, n := range names {
		nts = append(nts, store.NewTrial{Hash: fmt.Sprintf("%016x", i+1), Name: n, Spec: "{}"})
	}
	if _, err := st.AddSweep("s", "s.toml", nts); err != nil {
		t.Fatal(err)
	}
	if err := st.AddMetrics(1, []store.Metric{{Step: 1, Name: "loss", Value: -1.5}}); err != nil {
		t.Fatal(err)
	}
	read := func(table string, o export.Options) [][]string {
		var b bytes.Buffer
		if _, err := export.TableWith(st.Raw(), table, "csv", &b, o); err != nil {
			t.Fatal(err)
		}
		recs, err := csv.NewReader(&b).ReadAll()
		if err != nil {
			t.Fatal(err)
		}
		return recs
	}
	col := func(recs [][]string, name string) []string {
		i := slices.Index(recs[0], name)
		var out []string
		for _, r := range recs[1:] {
			out = append(out, r[i])
		}
		return out
	}
	cases := []struct {
		name string
		o    export.Options
		want []string
	}{
		{"default: defused", export.Options{}, []string{`'=HYPERLINK("http://evil","x")`, "'+1+2", "'-2+3", "'@SUM(A1)", "'\tTAB", "'\rCR", "plain = not a formula", "it's fine"}},
		{"exact", export.Options{ExactCSV: true}, names},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := col(read("trials", c.o), "name"); !slices.Equal(got, c.want) {
				t.Errorf("names %q, want %q", got, c.want)
			}
			if v := col(read("metrics", c.o), "value"); !slices.Equal(v, []string{"-1.5"}) {
				t.Errorf("a negative number was changed: %q", v)
			}
		})
	}
}
