package experiment

import (
	"fmt"
	"io"
	"sort"
	"strings"

	"mimlab/framework/spec"
	"mimlab/framework/store"
	"mimlab/framework/sweep"
)

// Planned is one spec file expanded into its trials.
type Planned struct {
	Raw    *spec.Raw
	Trials []sweep.Expanded
}

// Plan loads, resolves and cross-checks every spec (overrides applied to each); nothing touches a
// database. An error is a spec error (exit status 2 at the CLI).
func Plan(files, overrides []string) ([]Planned, error) {
	if len(files) == 0 {
		return nil, &spec.Error{Msg: "no spec files given"}
	}
	avail, err := AvailableBytes()
	if err != nil {
		return nil, &spec.Error{Msg: err.Error()}
	}
	var out []Planned
	for _, f := range files {
		raw, err := spec.Load(f, overrides)
		if err != nil {
			return nil, err
		}
		ts, err := sweep.Expand(raw, Sections())
		if err != nil {
			return nil, err
		}
		for _, t := range ts {
			if err := CheckTrial(t.Resolved, avail); err != nil {
				return nil, fmt.Errorf("%w (trial %s)", err, t.Name)
			}
		}
		out = append(out, Planned{raw, ts})
	}
	return out, nil
}

// CheckTrial is the plan's check of one resolved trial beyond what resolving checks (values, names): the
// components' cross-checks and the memory estimate against avail bytes (0 = unbounded). A worker runs the
// same check on every spec it reads from the database, so a row cannot run what the plan would refuse.
func CheckTrial(res *spec.Resolved, avail uint64) error {
	if err := CheckCross(res); err != nil {
		return err
	}
	// A batch no training split can fill is known before any image is read when the dataset's size is.
	if c := Typed(res); c.Data.BatchSize > 0 {
		d, eb := c.Data, c.Train.EffectiveBatch(c.Data.BatchSize)
		if n, ok := d.TrainSizeBound(); ok && eb > n {
			if eb != d.BatchSize {
				return &spec.Error{File: res.File, Msg: fmt.Sprintf("data.batch_size = %d x train.accum_steps = %d: an effective batch of %d, larger than the %d training images of %s (num_train, train_limit), so no step can be drawn: lower either", d.BatchSize, c.Train.AccumSteps, eb, n, d.Name)}
			}
			return &spec.Error{File: res.File, Msg: fmt.Sprintf("data.batch_size = %d: larger than the %d training images of %s (num_train, train_limit), so no batch can be drawn: lower data.batch_size to at most %d", d.BatchSize, n, d.Name, n)}
		}
	}
	return CheckMemory(res, avail)
}

// CheckStored resolves a spec read from the database and checks it as Plan checks a spec file's trials.
func CheckStored(js string) (*spec.Resolved, error) {
	res, err := ResolveStored(js)
	if err != nil {
		return nil, err
	}
	avail, err := AvailableBytes()
	if err != nil {
		return nil, err
	}
	if err := CheckTrial(res, avail); err != nil {
		return nil, fmt.Errorf("stored spec refused, as sweep plan would refuse it: %w", err)
	}
	return res, nil
}

// NewTrials are the store rows of a planned spec.
func (p Planned) NewTrials() []store.NewTrial {
	var out []store.NewTrial
	for _, t := range p.Trials {
		out = append(out, store.NewTrial{Hash: t.Hash, Base: t.Base, Spec: t.Full(), Point: t.Point, Label: t.Label})
	}
	return out
}

// changedKeys lists the dotted keys whose values differ between two spec trees.
func changedKeys(a, b map[string]any) []string {
	var out []string
	for sec, av := range a {
		am, _ := av.(map[string]any)
		bm, _ := b[sec].(map[string]any)
		if am == nil || bm == nil {
			if fmt.Sprint(av) != fmt.Sprint(b[sec]) {
				out = append(out, sec)
			}
			continue
		}
		keys := map[string]bool{}
		for k := range am {
			keys[k] = true
		}
		for k := range bm {
			keys[k] = true
		}
		for k := range keys {
			x, y := am[k], bm[k]
			if fmt.Sprint(x) != fmt.Sprint(y) {
				out = append(out, fmt.Sprintf("%s.%s: %v -> %v", sec, k, x, y))
			}
		}
	}
	sort.Strings(out)
	return out
}

// checkRevision refuses a spec whose trials differ from those already registered under its name at the same
// sweep point (an edited spec run again under the same name would otherwise be averaged with the old runs
// as seeds of one configuration). New points (more seeds, a longer grid) are fine. With newRevision the
// spec is registered as the next free NAME@N instead.
func checkRevision(st *store.Store, p Planned, newRevision bool, log io.Writer) (Planned, error) {
	conflict := func(name string) (string, error) {
		old, err := st.Trials(name)
		if err != nil {
			return "", fmt.Errorf("%s: %w", st.Path, err)
		}
		known := map[string][]store.Trial{}
		for _, t := range old {
			if t.Base == name {
				k := t.Point.Seedless().Key()
				known[k] = append(known[k], t)
			}
		}
		for _, t := range p.Trials {
			prevs := known[t.Point.Seedless().Key()]
			if len(prevs) == 0 {
				continue
			}
			nkey := t.ConfigKey()
			same := false
			for _, prev := range prevs {
				if okey := StoredConfig(prev.Spec).Key; okey == nkey {
					same = true
				}
			}
			if !same {
				otree := StoredConfig(prevs[0].Spec).Tree
				return fmt.Sprintf("at %s: %s", t.Point.Seedless().Name(t.Base), strings.Join(changedKeys(otree, t.ConfigTree()), ", ")), nil
			}
		}
		return "", nil
	}
	why, err := conflict(p.Raw.Name)
	if err != nil || why == "" {
		return p, err
	}
	if !newRevision {
		return p, &spec.Error{File: p.Raw.File, Msg: fmt.Sprintf("sweep %q already holds other trials at the same points (%s): rename the spec, or run with --as-new-revision to register it as a new revision of %q", p.Raw.Name, why, p.Raw.Name)}
	}
	base, first := p.Raw.Name, why
	for rev := 2; rev < 10000; rev++ {
		name := fmt.Sprintf("%s@%d", base, rev)
		p.Raw.Name = name
		ts, err := sweep.Expand(p.Raw, Sections())
		if err != nil {
			return p, err
		}
		p.Trials = ts
		why, err := conflict(name)
		if err != nil {
			return p, err
		}
		if why == "" {
			fmt.Fprintf(log, "sweep %s: registered as %s (the spec changed %s)\n", base, name, first)
			return p, nil
		}
	}
	return p, fmt.Errorf("sweep %s: no free revision name", base)
}
