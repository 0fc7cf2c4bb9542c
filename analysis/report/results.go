package report

import (
	"errors"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"

	"mimlab/framework/store"
)

// A results document (RESULTS.md) is prose around tables generated from a results database. Each generated
// block sits between two comment lines,
//
//	<!-- mimlab:tables sweep=NAME -->
//	...
//	<!-- mimlab:end -->
//
// and holds the sweep's probe table (mean ± std over seeds, with the reference rows), the pairwise
// differences and the swept-axis tables. Fill rewrites every block from the database; Check reports each
// block whose text is not what the database gives now, so a hand-edited or stale number is caught.
//
// A block opened by `<!-- mimlab:attention sweep=NAME -->` instead holds the sweep's attention concentration
// table (Fig. 6 in numbers: central mass and entropy of the cls attention, over seeds and test images),
// computed from the trials' checkpoints, so filling or checking it needs them (ResultsDocWith's models).
var blockRE = regexp.MustCompile(`(?s)(<!-- mimlab:tables sweep=([^ ]+) -->\n)(.*?)(<!-- mimlab:end -->)`)

var attnRE = regexp.MustCompile(`(?s)(<!-- mimlab:attention sweep=([^ ]+) -->\n)(.*?)(<!-- mimlab:end -->)`)

// SweepTables renders a sweep's tables (or several sweeps', comma-separated: then without the axis tables)
// as Markdown, without figures.
func SweepTables(st *store.Store, sweep string) (string, error) {
	along, err := alongSection(st, sweep, labeler(sweep), "")
	if err != nil {
		return "", err
	}
	trials, configs, by, err := load(st, sweep)
	var secs []*section
	switch {
	case err == nil:
		probes, err := probeSection(st, configs, by, "")
		if err != nil {
			return "", err
		}
		secs = append(secs, probes)
	case !errors.Is(err, errNoFinished) || along == nil:
		return "", err
	}
	if along != nil {
		secs = append(secs, along)
	}
	if len(trials) > 0 && !strings.Contains(sweep, ",") { // an axis pooled over several sweeps would mix their other settings
		if axes := axisSection(trials, ""); axes != nil {
			secs = append(secs, axes)
		}
	}
	var b strings.Builder
	for _, s := range secs {
		for _, t := range s.tables {
			t.markdown(&b)
		}
	}
	return b.String() + "\n", nil
}

// blockIn reports whether a block's sweep list ("mask_ratio,mask_ratio_random" for a block that pools two
// sweeps) is wholly among only, so `--sweep mask_ratio,mask_ratio_random` selects that block (it used to
// compare the whole list with each name and select nothing).
func blockIn(sweep string, only []string) bool {
	for _, s := range strings.Split(sweep, ",") {
		if !slices.Contains(only, strings.TrimSpace(s)) {
			return false
		}
	}
	return true
}

// ResultsDoc fills (check false) or checks (check true) the generated blocks of the Markdown file at path
// from the database at db; with only, just the blocks of those sweeps (a document whose sections were run
// into different databases). It returns the sweeps it handled; a check that finds a difference returns an
// error naming the sweep and the first differing line.
func ResultsDoc(db, path string, check bool, only ...string) ([]string, error) {
	return ResultsDocWith(db, path, check, nil, only...)
}

// ResultsDocWith is ResultsDoc that also fills or checks the attention blocks, from the checkpoints models
// names (nil: a document with attention blocks is an error saying what to give).
func ResultsDocWith(db, path string, check bool, models *Models, only ...string) ([]string, error) {
	if err := store.CheckExists(db); err != nil {
		return nil, err
	}
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	st, err := store.OpenForReading(db)
	if err != nil {
		return nil, err
	}
	defer st.Close()
	var sweeps []string
	var firstErr error
	fillBlocks := func(src string, re *regexp.Regexp, kind string, render func(sweep string) (string, error)) string {
		return re.ReplaceAllStringFunc(src, func(m string) string {
			g := re.FindStringSubmatch(m)
			sweep := g[2]
			if len(only) > 0 && !blockIn(sweep, only) {
				return m
			}
			sweeps = append(sweeps, sweep)
			tabs, err := render(sweep)
			if err != nil {
				if firstErr == nil {
					firstErr = fmt.Errorf("%s, block %ssweep=%s: %w", path, kind, sweep, err)
				}
				return m
			}
			if check && g[3] != tabs && firstErr == nil {
				firstErr = fmt.Errorf("%s, block %ssweep=%s differs from %s: %s", path, kind, sweep, st.Path, firstDiff(g[3], tabs))
			}
			return g[1] + tabs + g[4]
		})
	}
	out := fillBlocks(string(src), blockRE, "", func(sweep string) (string, error) { return SweepTables(st, sweep) })
	out = fillBlocks(out, attnRE, "attention ", func(sweep string) (string, error) { return AttentionTables(st, sweep, models) })
	if firstErr != nil {
		return sweeps, firstErr
	}
	if len(sweeps) == 0 {
		return nil, fmt.Errorf("%s has no <!-- mimlab:tables sweep=NAME --> (or mimlab:attention) ... <!-- mimlab:end --> blocks%s", path, map[bool]string{true: " for sweep " + strings.Join(only, ","), false: ""}[len(only) > 0])
	}
	if check || out == string(src) {
		return sweeps, nil
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(out), 0o644); err != nil {
		return sweeps, err
	}
	return sweeps, os.Rename(tmp, path)
}

// firstDiff describes the first line where the document's block (have) and the database (want) differ.
func firstDiff(have, want string) string {
	h, w := strings.Split(have, "\n"), strings.Split(want, "\n")
	for i := 0; i < max(len(h), len(w)); i++ {
		var a, b string
		if i < len(h) {
			a = h[i]
		}
		if i < len(w) {
			b = w[i]
		}
		if a != b {
			return fmt.Sprintf("line %d of the block is %q, the database gives %q", i+1, a, b)
		}
	}
	return "no difference"
}
