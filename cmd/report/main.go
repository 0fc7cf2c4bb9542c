// Command report writes report/index.html (and with --markdown report/REPORT.md) from a results database:
// curves, probe accuracies beside the reference rows, accuracy against swept axes, t-SNE, attention maps and
// reconstructions. With --fill or --check it instead rewrites or verifies the generated table blocks of a
// results document (RESULTS.md): the probe tables from the database, the attention concentration blocks
// (Fig. 6 in numbers) from the trials' checkpoints under --runs. Exit status: 0 written, 1 failed (or a check found a difference), 2 bad
// flags.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"mimlab/analysis/report"
	"mimlab/framework/store"
)

func main() {
	fs := flag.NewFlagSet("report", flag.ContinueOnError)
	db := fs.String("db", dbDefault(), "results database: a SQLite file or a postgres:// URL (default $MIMLAB_DB, else results.db)")
	sweep := fs.String("sweep", "", "only this sweep, or these (comma-separated); default: every trial (with --fill/--check: only their blocks)")
	out := fs.String("out", "report", "output folder")
	md := fs.Bool("markdown", false, "also write REPORT.md with the same tables (mean ± std over seeds)")
	backend := fs.String("backend", "auto", "backend for the model figures")
	runs := fs.String("runs", "runs", "folder of the trials' checkpoints")
	noFig := fs.Bool("no-figures", false, "skip t-SNE, attention maps and reconstructions")
	tsneImages := fs.Int("tsne-images", 40, "test images whose patches go into each t-SNE map")
	fill := fs.String("fill", "", "rewrite the generated table blocks of this Markdown file (RESULTS.md) from --db, then exit")
	watch := fs.Duration("watch", 0, "re-render whenever a trial finishes, polling this often (e.g. 10s); the page reloads itself")
	check := fs.String("check", "", "check that the generated table blocks of this Markdown file match --db; exit 1 if not")
	if err := fs.Parse(os.Args[1:]); err != nil {
		os.Exit(2)
	}
	if *fill != "" || *check != "" {
		path, isCheck := *fill, false
		if *check != "" {
			path, isCheck = *check, true
		}
		var only []string
		if *sweep != "" {
			only = strings.Split(*sweep, ",")
		}
		// Attention blocks read the trials' checkpoints (--runs, --backend); table blocks need only --db.
		sweeps, err := report.ResultsDocWith(*db, path, isCheck, &report.Models{Backend: *backend, Runs: *runs, Log: os.Stderr}, only...)
		if err != nil {
			fmt.Fprintln(os.Stderr, "report:", err)
			os.Exit(1)
		}
		verb := map[bool]string{false: "filled", true: "checked"}[isCheck]
		fmt.Fprintf(os.Stderr, "report: %s %d table blocks of %s from %s (%s)\n", verb, len(sweeps), path, shownDB(*db), strings.Join(sweeps, ", "))
		return
	}
	if err := checkRuns(*runs); err != nil {
		fmt.Fprintln(os.Stderr, "report:", err)
		os.Exit(2)
	}
	opt := report.Options{DB: *db, Sweep: *sweep, Out: *out, Markdown: *md, Backend: *backend, Runs: *runs,
		Figures: !*noFig, TSNEImages: *tsneImages, Log: os.Stderr}
	var err error
	if *watch > 0 {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		err = report.Watch(ctx, opt, *watch)
	} else {
		err = report.Generate(opt)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "report:", err)
		os.Exit(1)
	}
}

// checkRuns refuses a --runs that names something other than a folder (a folder not there yet is fine: the
// report then draws no model figures).
func checkRuns(runs string) error {
	if fi, err := os.Stat(runs); err == nil && !fi.IsDir() {
		return fmt.Errorf("--runs %s is a file, not the folder of the trials' checkpoints", runs)
	}
	return nil
}

// shownDB is --db as messages show it: a URL without its password.
func shownDB(db string) string {
	if store.IsURL(db) {
		return store.Redact(db)
	}
	return db
}

// dbDefault is --db's default: $MIMLAB_DB, else results.db.
func dbDefault() string {
	if v := os.Getenv("MIMLAB_DB"); v != "" {
		return v
	}
	return "results.db"
}
