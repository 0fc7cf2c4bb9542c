// Command report writes report/index.html (and with --markdown report/REPORT.md) from a results database:
// curves, probe accuracies beside the reference rows, accuracy against swept axes, t-SNE, attention maps and
// reconstructions. Exit status: 0 written, 1 failed, 2 bad flags.
package main

import (
	"flag"
	"fmt"
	"os"

	"mimlab/analysis/report"
)

func main() {
	fs := flag.NewFlagSet("report", flag.ContinueOnError)
	db := fs.String("db", "results.db", "results database")
	sweep := fs.String("sweep", "", "only this sweep (default: every trial)")
	out := fs.String("out", "report", "output folder")
	md := fs.Bool("markdown", false, "also write REPORT.md with the same tables (mean ± std over seeds)")
	backend := fs.String("backend", "auto", "backend for the model figures")
	runs := fs.String("runs", "runs", "folder of the trials' checkpoints")
	noFig := fs.Bool("no-figures", false, "skip t-SNE, attention maps and reconstructions")
	tsneImages := fs.Int("tsne-images", 40, "test images whose patches go into each t-SNE map")
	if err := fs.Parse(os.Args[1:]); err != nil {
		os.Exit(2)
	}
	err := report.Generate(report.Options{DB: *db, Sweep: *sweep, Out: *out, Markdown: *md, Backend: *backend, Runs: *runs,
		Figures: !*noFig, TSNEImages: *tsneImages, Log: os.Stderr})
	if err != nil {
		fmt.Fprintln(os.Stderr, "report:", err)
		os.Exit(1)
	}
}
