package report

import (
	"context"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"mimlab/experiment"
	"mimlab/framework/runner"
	"mimlab/framework/spec"
	"mimlab/framework/store"
	"mimlab/framework/sweep"
	"mimlab/nn/nntest"
)

// chromium returns the headless browser to open the report with (Debian's chromium package), or skips the
// test when there is none; under CI=true (where .ci/run installs it) a missing browser fails instead.
func chromium(t *testing.T) string {
	t.Helper()
	if _, err := os.Stat("/usr/bin/chromium"); err == nil {
		return "/usr/bin/chromium"
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	msg := "no chromium to open the report in (apt-get install chromium)"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg + " (CI=true: the browser must be installed)")
	}
	t.Skip(msg)
	return ""
}

// tinyReport runs report_test.go's tiny sweep (tinySweep: 2 configurations x 2 seeds) in dir and renders
// its report with every kind of figure; it returns the report's directory.
func tinyReport(t *testing.T, dir string) string {
	t.Helper()
	sp := filepath.Join(dir, "tiny.toml")
	if err := os.WriteFile(sp, []byte(tinySweep), 0o644); err != nil {
		t.Fatal(err)
	}
	raw, err := spec.Load(sp, nil)
	if err != nil {
		t.Fatal(err)
	}
	trials, err := sweep.Expand(raw, experiment.Sections())
	if err != nil {
		t.Fatal(err)
	}
	db := filepath.Join(dir, "results.db")
	st, err := store.Open(db)
	if err != nil {
		t.Fatal(err)
	}
	env := experiment.NewEnv(nntest.Go(t), "go", filepath.Join(dir, "runs"), io.Discard)
	for _, tr := range trials {
		env.AddSpec(tr.Hash, tr.Resolved)
	}
	nts := experiment.Planned{Raw: raw, Trials: trials}.NewTrials() // the rows sweep run registers
	sid, err := st.AddSweep(raw.Name, sp, nts)
	if err != nil {
		t.Fatal(err)
	}
	sum := runner.Run(context.Background(), st, sid, runner.Options{Workers: 1, Log: io.Discard}, env.Job)
	st.Close()
	if sum.Done != len(trials) {
		t.Fatalf("tiny sweep: %+v", sum)
	}
	out := filepath.Join(dir, "report")
	opt := Options{DB: db, Out: out, Backend: "go", Runs: filepath.Join(dir, "runs"), Figures: true, TSNEImages: 6, Log: io.Discard}
	if err := Generate(opt); err != nil {
		t.Fatal(err)
	}
	return out
}

// consoleErrors collects what the page reports as errors: console.error and console.assert calls,
// uncaught exceptions, and browser log entries of level error (a resource that failed to load, ...).
type consoleErrors struct {
	mu   sync.Mutex
	msgs []string
}

func (c *consoleErrors) listen(ev any) {
	var msg string
	switch e := ev.(type) {
	case *runtime.EventConsoleAPICalled:
		if e.Type != runtime.ConsoleAPICalledTypeError && e.Type != runtime.ConsoleAPICalledTypeAssert {
			return
		}
		var args []string
		for _, a := range e.Args {
			if a.Description != "" {
				args = append(args, a.Description)
			} else {
				args = append(args, string(a.Value))
			}
		}
		msg = fmt.Sprintf("console.%s: %s", e.Type, strings.Join(args, " "))
	case *runtime.EventExceptionThrown:
		d := e.ExceptionDetails
		text := d.Text
		if d.Exception != nil && d.Exception.Description != "" {
			text += " " + d.Exception.Description
		}
		msg = fmt.Sprintf("uncaught exception at %s:%d: %s", d.URL, d.LineNumber+1, text)
	case *log.EventEntryAdded:
		if e.Entry.Level != log.EntryLevelError {
			return
		}
		msg = fmt.Sprintf("browser log (%s): %s %s", e.Entry.Source, e.Entry.Text, e.Entry.URL)
	default:
		return
	}
	c.mu.Lock()
	c.msgs = append(c.msgs, msg)
	c.mu.Unlock()
}

// take returns the errors collected so far and forgets them.
func (c *consoleErrors) take() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := c.msgs
	c.msgs = nil
	return m
}

// waitImages resolves once every <img> has loaded or failed.
const waitImages = `Promise.all([...document.images].map(i => i.complete ? null :
	new Promise(r => { i.addEventListener('load', r); i.addEventListener('error', r); })))
	.then(() => document.images.length)`

// brokenImages lists the src of each <img> that did not load into a picture.
const brokenImages = `[...document.images].filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.getAttribute('src'))`

// layoutJS measures the page: the extent of each caption's text (a Range's box, which covers text that
// overflows its element too) against every other caption's text and every image; captions whose text is
// wider than their element; and the document's width against the viewport's.
const layoutJS = `(() => {
	const caps = [...document.querySelectorAll('figcaption')].map(c => {
		const r = document.createRange(); r.selectNodeContents(c);
		return {el: c, box: r.getBoundingClientRect(), what: 'caption "' + c.textContent.trim() + '"'};
	});
	const imgs = [...document.images].map(i => ({el: i, box: i.getBoundingClientRect(), what: 'image ' + i.getAttribute('src')}));
	const overlaps = [];
	const hit = (a, b) => Math.min(a.right, b.right) - Math.max(a.left, b.left) > 1 && Math.min(a.bottom, b.bottom) - Math.max(a.top, b.top) > 1;
	caps.forEach((a, i) => {
		for (const b of [...caps.slice(i + 1), ...imgs]) {
			if (a.box.width > 0 && b.box.width > 0 && hit(a.box, b.box)) overlaps.push(a.what + ' overlaps ' + b.what);
		}
	});
	const overflow = caps.filter(c => c.el.scrollWidth > c.el.clientWidth + 1).map(c => c.what + ' (' + c.el.scrollWidth + ' px of text in ' + c.el.clientWidth + ' px)');
	return {overlaps, overflow, captions: caps.length, docWidth: document.documentElement.scrollWidth, viewWidth: window.innerWidth};
})()`

type layout struct {
	Overlaps, Overflow  []string
	Captions            int
	DocWidth, ViewWidth int
}

// The report opens in a real browser without errors at a wide and a narrow window: no console error or
// exception, every image loads, no figure caption overlaps another caption or an image. A full-page
// screenshot at each width goes to the test's temp dir and, when MIMLAB_SCREENSHOT_DIR is set, there as
// report-WIDTH.png for a person to look at.
func TestReportInBrowser(t *testing.T) {
	bin := chromium(t)
	dir := t.TempDir()
	out := tinyReport(t, dir)
	page := (&url.URL{Scheme: "file", Path: filepath.Join(out, "index.html")}).String()

	var errs consoleErrors
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(bin), chromedp.NoSandbox, chromedp.Headless,
		chromedp.Flag("disable-gpu", true), chromedp.WindowSize(1400, 1000))
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	ctx, cancel := chromedp.NewContext(allocCtx, chromedp.WithListener(errs.listen))
	defer cancel()
	// The first Run starts the browser, which lives as long as its context: no timeout on this one.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("starting %s: %v", bin, err)
	}
	shots := os.Getenv("MIMLAB_SCREENSHOT_DIR")
	for _, width := range []int64{1400, 900} {
		t.Run(fmt.Sprintf("%dpx", width), func(t *testing.T) {
			wctx, wcancel := context.WithTimeout(ctx, 2*time.Minute)
			defer wcancel()
			if err := chromedp.Do(wctx, chromedp.EmulateViewport(width, 1000), chromedp.Navigate(page)); err != nil {
				t.Fatalf("opening %s: %v", page, err)
			}
			n, err := chromedp.Run(wctx, chromedp.Evaluate[int](waitImages, chromedp.EvalAwaitPromise))
			if err != nil {
				t.Fatal(err)
			}
			if n == 0 {
				t.Error("the report has no images")
			}
			broken, err := chromedp.Run(wctx, chromedp.Evaluate[[]string](brokenImages))
			if err != nil {
				t.Fatal(err)
			}
			for _, src := range broken {
				t.Errorf("image did not load (complete && naturalWidth > 0 is false): %s", src)
			}
			lay, err := chromedp.Run(wctx, chromedp.Evaluate[layout](layoutJS))
			if err != nil {
				t.Fatal(err)
			}
			if lay.Captions == 0 {
				t.Error("the report has no figure captions")
			}
			for _, o := range lay.Overlaps {
				t.Errorf("overlap: %s", o)
			}
			for _, o := range lay.Overflow {
				t.Logf("caption text wider than its figure: %s", o)
			}
			if lay.DocWidth > lay.ViewWidth {
				t.Logf("the page is %d px wide in a %d px window (scrolls sideways)", lay.DocWidth, lay.ViewWidth)
			}
			png, err := chromedp.Run(wctx, chromedp.FullScreenshot(100))
			if err != nil {
				t.Fatal(err)
			}
			name := fmt.Sprintf("report-%d.png", width)
			if err := os.WriteFile(filepath.Join(dir, name), png, 0o644); err != nil {
				t.Fatal(err)
			}
			if shots != "" {
				if err := os.MkdirAll(shots, 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(shots, name), png, 0o644); err != nil {
					t.Fatal(err)
				}
				t.Logf("screenshot: %s", filepath.Join(shots, name))
			}
			// The evaluations above came back after any event the page sent before them: errs is complete.
			for _, e := range errs.take() {
				t.Errorf("%s", e)
			}
			t.Logf("%d images, %d captions, page %d px wide", n, lay.Captions, lay.DocWidth)
		})
	}
}
