// Package export writes tables of a results database (see framework/store) as files that researchers'
// tools read directly: CSV for spreadsheets, R and pandas, Parquet for pandas/pyarrow, polars, DuckDB and
// Spark. Columns are discovered at run time (a column added to a table by a later migration is exported
// without a change here) and mapped by their declared type: INTEGER -> int64, REAL -> double, TEXT
// (and anything else) -> string; NULL is an empty CSV cell and a Parquet null (every column is optional).
// Rows come out ordered by the table's primary key, so exporting the same database twice gives the same
// file.
package export

import (
	"database/sql"
	"encoding/csv"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/parquet-go/parquet-go"
)

// Tables lists the tables Table exports.
var Tables = []string{"trials", "metrics", "evals", "attempts"}

// Formats lists the formats Table writes.
var Formats = []string{"csv", "parquet"}

// kind is a column's exported type.
type kind int

const (
	kindString kind = iota
	kindInt64
	kindDouble
)

// column is one exported column.
type column struct {
	name string
	kind kind
}

// affinity maps a declared SQLite column type to an exported type, following SQLite's type-affinity rules
// (https://sqlite.org/datatype3.html#determination_of_column_affinity): INT -> int64; CHAR, CLOB, TEXT ->
// string; REAL, FLOA, DOUB -> double; BLOB, NUMERIC and no type -> string (such columns may hold values of
// any type, which all have a text form).
func affinity(decl string) kind {
	d := strings.ToUpper(decl)
	switch {
	case strings.Contains(d, "INT"):
		return kindInt64
	case strings.Contains(d, "CHAR"), strings.Contains(d, "CLOB"), strings.Contains(d, "TEXT"):
		return kindString
	case strings.Contains(d, "REAL"), strings.Contains(d, "FLOA"), strings.Contains(d, "DOUB"):
		return kindDouble
	}
	return kindString
}

func quote(ident string) string { return `"` + strings.ReplaceAll(ident, `"`, `""`) + `"` }

// Querier runs a query: a *store.Store (SQLite or PostgreSQL) or a *sql.DB.
type Querier interface {
	Query(q string, args ...any) (*sql.Rows, error)
}

// Options changes how Table writes.
type Options struct {
	// ExactCSV writes every text cell of a CSV as stored. By default a text cell that a spreadsheet would
	// take for a formula (it begins with '=', '+', '-', '@', a tab or a carriage return: a trial named
	// =HYPERLINK(...)) gets a leading apostrophe, OWASP's advice against CSV injection; pandas then reads
	// that apostrophe as part of the value. Numbers are never changed, and Parquet is always exact.
	ExactCSV bool
}

// Table writes one table of a results database to w: "trials", "metrics", "evals" or "attempts"; format "csv" or
// "parquet"; CSV text cells that look like formulas are defused (see Options).
func Table(db Querier, table, format string, w io.Writer) (rows int, err error) {
	return TableWith(db, table, format, w, Options{})
}

// TableWith is Table with options.
func TableWith(db Querier, table, format string, w io.Writer, o Options) (rows int, err error) {
	if !slices.Contains(Tables, table) {
		return 0, fmt.Errorf("export: unknown table %q (want one of %s)", table, strings.Join(Tables, ", "))
	}
	if !slices.Contains(Formats, format) {
		return 0, fmt.Errorf("export: unknown format %q (want one of %s)", format, strings.Join(Formats, ", "))
	}
	rs, err := db.Query(`SELECT * FROM ` + quote(table) + ` ORDER BY ` + primaryKey(table))
	if err != nil {
		return 0, fmt.Errorf("export %s: %w", table, err)
	}
	defer rs.Close()
	types, err := rs.ColumnTypes()
	if err != nil {
		return 0, err
	}
	cols := make([]column, len(types))
	for i, t := range types {
		cols[i] = column{t.Name(), affinity(t.DatabaseTypeName())}
	}
	var out sink
	if format == "csv" {
		out, err = newCSV(w, cols, o.ExactCSV)
	} else {
		out, err = newParquet(w, table, cols)
	}
	if err != nil {
		return 0, err
	}
	raw := make([]any, len(cols))
	ptrs := make([]any, len(cols))
	for i := range raw {
		ptrs[i] = &raw[i]
	}
	vals := make([]any, len(cols))
	for rs.Next() {
		if err := rs.Scan(ptrs...); err != nil {
			return rows, err
		}
		for i, c := range cols {
			if vals[i], err = convert(raw[i], c.kind); err != nil {
				return rows, fmt.Errorf("export %s: row %d, column %s: %w", table, rows+1, c.name, err)
			}
		}
		if err := out.row(vals); err != nil {
			return rows, err
		}
		rows++
	}
	if err := rs.Err(); err != nil {
		return rows, err
	}
	return rows, out.close()
}

// primaryKey returns the ORDER BY clause for the table: its primary key columns in key order (the same on
// SQLite and PostgreSQL).
func primaryKey(table string) string {
	keys := map[string][]string{"trials": {"id"}, "metrics": {"trial_id", "step", "name"}, "evals": {"trial_id", "protocol", "metric", "step"},
		"attempts": {"trial_id", "attempt"}}[table]
	q := make([]string, len(keys))
	for i, k := range keys {
		q[i] = quote(k)
	}
	return strings.Join(q, ", ")
}

// convert turns a value scanned from SQLite into nil, int64, float64 or string, as the column's kind says.
func convert(v any, k kind) (any, error) {
	if b, ok := v.([]byte); ok {
		v = string(b)
	}
	if v == nil {
		return nil, nil
	}
	switch k {
	case kindInt64:
		switch x := v.(type) {
		case int64:
			return x, nil
		case bool:
			if x {
				return int64(1), nil
			}
			return int64(0), nil
		case float64:
			if x == math.Trunc(x) && math.Abs(x) < 1<<63 {
				return int64(x), nil
			}
		}
		return nil, fmt.Errorf("%v (%T) in an INTEGER column", v, v)
	case kindDouble:
		switch x := v.(type) {
		case float64:
			return x, nil
		case int64:
			return float64(x), nil
		}
		return nil, fmt.Errorf("%v (%T) in a REAL column", v, v)
	}
	switch x := v.(type) {
	case string:
		return x, nil
	case int64:
		return strconv.FormatInt(x, 10), nil
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64), nil
	case bool:
		return strconv.FormatBool(x), nil
	case time.Time: // mattn/go-sqlite3 parses columns declared DATE, DATETIME or TIMESTAMP
		return x.Format(time.RFC3339Nano), nil
	}
	return fmt.Sprint(v), nil
}

// sink receives converted rows.
type sink interface {
	row(vals []any) error
	close() error
}

type csvSink struct {
	w     *csv.Writer
	rec   []string
	exact bool
}

func newCSV(w io.Writer, cols []column, exact bool) (sink, error) {
	s := &csvSink{w: csv.NewWriter(w), rec: make([]string, len(cols)), exact: exact}
	for i, c := range cols {
		s.rec[i] = c.name
	}
	return s, s.w.Write(s.rec)
}

func (s *csvSink) row(vals []any) error {
	for i, v := range vals {
		switch x := v.(type) {
		case nil:
			s.rec[i] = ""
		case int64:
			s.rec[i] = strconv.FormatInt(x, 10)
		case float64:
			s.rec[i] = strconv.FormatFloat(x, 'g', -1, 64) // shortest form that reads back to the same double
		case string:
			s.rec[i] = x
			if !s.exact && x != "" && strings.ContainsRune("=+-@\t\r", rune(x[0])) {
				s.rec[i] = "'" + x
			}
		}
	}
	return s.w.Write(s.rec)
}

func (s *csvSink) close() error {
	s.w.Flush()
	return s.w.Error()
}

// orderedGroup is a Parquet group whose fields keep the table's column order (parquet.Group sorts them
// by name).
type orderedGroup struct {
	parquet.Group
	order []string
}

func (g orderedGroup) Fields() []parquet.Field {
	fields := g.Group.Fields()
	rank := make(map[string]int, len(g.order))
	for i, n := range g.order {
		rank[n] = i
	}
	slices.SortStableFunc(fields, func(a, b parquet.Field) int { return rank[a.Name()] - rank[b.Name()] })
	return fields
}

// rowGroupRows bounds a Parquet row group, so a large metrics table is not buffered whole in memory.
const rowGroupRows = 128 << 10

type parquetSink struct {
	w     *parquet.GenericWriter[parquet.Row]
	index []int // leaf column index of each table column
	buf   []parquet.Row
}

func newParquet(w io.Writer, table string, cols []column) (sink, error) {
	g := orderedGroup{Group: parquet.Group{}}
	for _, c := range cols {
		var leaf parquet.Node
		switch c.kind {
		case kindInt64:
			leaf = parquet.Leaf(parquet.Int64Type)
		case kindDouble:
			leaf = parquet.Leaf(parquet.DoubleType)
		default:
			leaf = parquet.String()
		}
		if _, dup := g.Group[c.name]; dup {
			return nil, fmt.Errorf("export %s: two columns named %q", table, c.name)
		}
		g.Group[c.name] = parquet.Optional(leaf)
		g.order = append(g.order, c.name)
	}
	schema := parquet.NewSchema(table, g)
	s := &parquetSink{index: make([]int, len(cols))}
	for i, c := range cols {
		leaf, ok := schema.Lookup(c.name)
		if !ok {
			return nil, fmt.Errorf("export %s: column %q missing from the Parquet schema", table, c.name)
		}
		s.index[i] = leaf.ColumnIndex
	}
	s.w = parquet.NewGenericWriter[parquet.Row](w, schema, parquet.Compression(&parquet.Snappy),
		parquet.MaxRowsPerRowGroup(rowGroupRows))
	return s, nil
}

func (s *parquetSink) row(vals []any) error {
	r := make(parquet.Row, len(vals))
	for i, v := range vals {
		var pv parquet.Value
		def := 1 // optional column: definition level 1 is a value, 0 is null
		switch x := v.(type) {
		case nil:
			pv, def = parquet.NullValue(), 0
		case int64:
			pv = parquet.Int64Value(x)
		case float64:
			pv = parquet.DoubleValue(x)
		case string:
			pv = parquet.ByteArrayValue([]byte(x))
		}
		r[s.index[i]] = pv.Level(0, def, s.index[i])
	}
	s.buf = append(s.buf, r)
	if len(s.buf) == 1024 {
		return s.flush()
	}
	return nil
}

func (s *parquetSink) flush() error {
	_, err := s.w.WriteRows(s.buf)
	s.buf = s.buf[:0]
	return err
}

func (s *parquetSink) close() error {
	if err := s.flush(); err != nil {
		return err
	}
	return s.w.Close()
}
