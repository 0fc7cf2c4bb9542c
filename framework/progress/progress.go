// Package progress shows what a running sweep is doing. On a terminal it draws, through
// github.com/vbauerster/mpb/v8, one live line per running trial (step, loss, images/s, ETA) under a sweep
// line (done, failed, left, ETA of the sweep), with log lines printed above them; elsewhere (a file, a
// pipe, CI) it prints plain log lines, a trial's progress at most every few seconds. It knows nothing of
// models: callers report steps and outcomes.
package progress

import (
	"fmt"
	"io"
	"math"
	"strings"
	"sync"
	"time"

	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
)

// Display is a sweep's progress on one output. Its methods may be called from several goroutines.
type Display struct {
	out   io.Writer
	live  *mpb.Progress // nil: plain lines
	every time.Duration

	mu     sync.Mutex
	trials map[int64]*trial
	sweep  *mpb.Bar
	name   string
	total  int
	done   int
	failed int
	base   int // trials already done when the sweep line started
	start  time.Time
}

type trial struct {
	bar               *mpb.Bar
	name              string
	total, step, from int
	loss, ips         float64
	start, printed    time.Time
}

// New makes a display on out; live draws bars (out should be a terminal), else plain lines.
func New(out io.Writer, live bool) *Display {
	d := &Display{out: out, every: 5 * time.Second, trials: map[int64]*trial{}}
	if live {
		d.live = mpb.New(mpb.WithOutput(out), mpb.WithWidth(120), mpb.WithRefreshRate(200*time.Millisecond))
	}
	return d
}

// Live says whether bars are drawn.
func (d *Display) Live() bool { return d.live != nil }

// Write prints log lines (above the bars when live).
func (d *Display) Write(p []byte) (int, error) {
	if d.live != nil {
		return d.live.Write(p)
	}
	return d.out.Write(p)
}

// Sweep starts the sweep line: total trials, done of them already finished. mpb is never called with d.mu
// held: its render goroutine calls the decorators below, which take d.mu.
func (d *Display) Sweep(name string, total, done int) {
	d.mu.Lock()
	d.name, d.total, d.done, d.failed, d.base, d.start = name, total, done, 0, done, time.Now()
	old := d.sweep
	d.sweep = nil
	d.mu.Unlock()
	if d.live == nil {
		return
	}
	if old != nil {
		old.Abort(false)
	}
	bar := d.live.AddBar(int64(max(total, 1)),
		mpb.BarPriority(math.MaxInt), // the sweep line stays at the bottom
		mpb.PrependDecorators(decor.Any(func(decor.Statistics) string { return d.sweepLine() })),
		mpb.AppendDecorators(decor.Any(func(decor.Statistics) string { return "ETA " + d.sweepETA() })))
	bar.SetCurrent(int64(done))
	d.mu.Lock()
	d.sweep = bar
	d.mu.Unlock()
}

func (d *Display) sweepLine() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	left := d.total - d.done - d.failed
	return fmt.Sprintf("sweep %s: %d done, %d failed, %d left (%d running)", d.name, d.done, d.failed, left, len(d.trials))
}

// sweepETA extrapolates from the trials finished since the sweep line started and the running trials'
// progress.
func (d *Display) sweepETA() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	el := time.Since(d.start).Seconds()
	progress := 0.0
	for _, t := range d.trials {
		if t.total > 0 {
			progress += float64(t.step) / float64(t.total)
		}
	}
	finished := float64(d.done + d.failed - d.base)
	work := finished + progress
	left := float64(d.total-d.done-d.failed) - progress
	if work <= 0 || left <= 0 {
		return "-"
	}
	return (time.Duration(el/work*left) * time.Second).Round(time.Second).String()
}

// Step reports a trial's progress: step of total, the loss and images per second.
func (d *Display) Step(id int64, name string, step, total int, loss, ips float64) {
	d.mu.Lock()
	t, ok := d.trials[id]
	if !ok {
		t = &trial{name: name, total: total, from: step - 1, start: time.Now()}
		d.trials[id] = t
	}
	t.step, t.loss, t.ips = step, loss, ips
	print := d.live == nil && (!ok || step == total || time.Since(t.printed) >= d.every)
	if print {
		t.printed = time.Now()
	}
	bar := t.bar
	d.mu.Unlock()
	if d.live != nil && !ok {
		bar = d.live.AddBar(int64(max(total, 1)), mpb.BarRemoveOnComplete(),
			mpb.PrependDecorators(decor.Name(fmt.Sprintf("trial %d %s", id, short(name, 48)), decor.WCSyncSpaceR)),
			mpb.AppendDecorators(decor.Any(func(decor.Statistics) string { return d.trialLine(id) })))
		d.mu.Lock()
		t.bar = bar
		d.mu.Unlock()
	}
	if bar != nil {
		bar.SetCurrent(int64(step))
	}
	if print {
		fmt.Fprintf(d.out, "trial %d %s: step %d/%d loss %.4f %.0f img/s ETA %s\n", id, name, step, total, loss, ips, d.trialETA(id))
	}
}

func (d *Display) trialLine(id int64) string {
	d.mu.Lock()
	t := d.trials[id]
	if t == nil {
		d.mu.Unlock()
		return ""
	}
	step, total, loss, ips := t.step, t.total, t.loss, t.ips
	d.mu.Unlock()
	return fmt.Sprintf("step %d/%d loss %.4f %.0f img/s ETA %s", step, total, loss, ips, d.trialETA(id))
}

func (d *Display) trialETA(id int64) string {
	d.mu.Lock()
	defer d.mu.Unlock()
	t := d.trials[id]
	if t == nil || t.step <= t.from {
		return "-"
	}
	el := time.Since(t.start).Seconds()
	return (time.Duration(el/float64(t.step-t.from)*float64(t.total-t.step)) * time.Second).Round(time.Second).String()
}

// End reports a trial's outcome (done, failed, pending when interrupted): its line goes, the sweep line
// counts it.
func (d *Display) End(id int64, state string) {
	d.mu.Lock()
	t := d.trials[id]
	delete(d.trials, id)
	switch state {
	case "done":
		d.done++
	case "failed":
		d.failed++
	}
	done, failed, sweep := d.done, d.failed, d.sweep
	d.mu.Unlock()
	if t != nil && t.bar != nil {
		if state == "done" {
			t.bar.SetTotal(-1, true)
		} else {
			t.bar.Abort(true)
		}
	}
	if sweep != nil {
		sweep.SetCurrent(int64(done + failed))
	}
}

// Wait ends the live display (the sweep line stays on the screen).
func (d *Display) Wait() {
	if d.live == nil {
		return
	}
	d.mu.Lock()
	sweep := d.sweep
	var bars []*mpb.Bar
	for id, t := range d.trials {
		if t.bar != nil {
			bars = append(bars, t.bar)
		}
		delete(d.trials, id)
	}
	d.mu.Unlock()
	for _, b := range bars {
		b.Abort(true)
	}
	if sweep != nil {
		sweep.SetTotal(-1, true)
	}
	d.live.Wait()
}

// short cuts s to n runes, keeping its end (where a trial label's seed and last keys are).
func short(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return "…" + strings.TrimLeft(string(r[len(r)-n+1:]), ",")
}
