// Package sweep expands a spec's [sweep] section into trials: seeds = [...] (train.seed), [sweep.grid]
// (the Cartesian product of lists; keys are dotted paths such as "method.name"), [sweep.zip] (lists stepped
// together) and [sweep.random] (n draws from uniform, loguniform or choice, seeded). Every trial is a fully
// resolved spec whose identity is the hash of its canonical form, so two points that resolve to the same
// spec are one trial.
package sweep

import (
	"fmt"
	"math"
	"math/rand/v2"
	"regexp"
	"sort"
	"strings"

	"mimlab/framework/spec"
)

// Expanded is one point of a sweep, resolved: a trial to be. Its Name is always Point.Name(spec name); the
// store keeps the point and the base name, and everything else derives names and keys from them.
type Expanded struct {
	*spec.Resolved
	Hash string
	Base string // the spec's name (the sweep's, NAME@N for a revision)
	Name string // the trial's name: Base and its sweep point, "quickstart[method.name=cae,train.seed=1]"
	// Label is the configuration's name from [sweep] labels ("" when the spec gives none: reports then
	// build the shortest unambiguous name from the keys that differ).
	Label string
}

// zipIndex is the hidden point key that carries a point's position in [sweep.zip] to its label.
const zipIndex = "\x00zip"

type point map[string]any

// MaxTrials bounds the points one spec expands to (seeds x grid x zip x random), checked before expanding.
const MaxTrials = 100_000

// Expand resolves every point of r's sweep. Trials whose resolved specs are equal are merged.
func Expand(r *spec.Raw, sections []spec.Section) ([]Expanded, error) {
	points, err := points(r)
	if err != nil {
		return nil, err
	}
	var out []Expanded
	seen := map[string]bool{}
	for _, p := range points {
		zi, hasZip := p[zipIndex].(int)
		delete(p, zipIndex)
		tree := deepCopy(r.Tree)
		delete(tree, "sweep")
		keys := make([]string, 0, len(p))
		for k := range p {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if err := spec.SetPath(tree, k, p[k], nil, ""); err != nil {
				return nil, &spec.Error{File: r.File, Msg: fmt.Sprintf("sweep: %v", err)}
			}
		}
		res, err := r.Resolve(tree, p, sections)
		if err != nil {
			if len(p) > 0 {
				return nil, fmt.Errorf("%w (at sweep point %s)", err, spec.PointString(p))
			}
			return nil, err
		}
		res.Point = spec.Point(p)
		display, err := labelOf(r, res, zi, hasZip)
		if err != nil {
			return nil, err
		}
		h := res.Hash()
		if seen[h] {
			continue
		}
		seen[h] = true
		out = append(out, Expanded{Resolved: res, Hash: h, Base: r.Name, Name: res.Point.Name(r.Name), Label: display})
	}
	return out, nil
}

var placeholder = regexp.MustCompile(`\{([^{}]*)\}`)

// labelOf is a trial's configuration name from [sweep] labels: a list names the [sweep.zip] positions (one
// label per position); a string is a template whose {section.key} placeholders take the trial's resolved
// values ("{method.name}/{targets.name}"). "" when there is no labels key.
func labelOf(r *spec.Raw, res *spec.Resolved, zi int, hasZip bool) (string, error) {
	sw, _ := r.Tree["sweep"].(map[string]any)
	switch l := sw["labels"].(type) {
	case nil:
		return "", nil
	case []any:
		z, _ := sw["zip"].(map[string]any)
		n := -1
		for _, v := range z {
			if vs, ok := v.([]any); ok {
				n = len(vs)
			}
		}
		if !hasZip || n < 0 {
			return "", sweepErr(r, "labels = [...] names the positions of [sweep.zip], and there is none: use a template such as labels = \"{method.name}/{targets.name}\"")
		}
		if len(l) != n {
			return "", sweepErr(r, "labels has %d entries, [sweep.zip] %d positions: give one label per position", len(l), n)
		}
		seen := map[string]bool{}
		for _, x := range l {
			sx, ok := x.(string)
			if !ok || strings.TrimSpace(sx) == "" || seen[sx] {
				return "", sweepErr(r, "labels = %v: want distinct non-empty strings", l)
			}
			if err := spec.Printable("sweep.labels", sx); err != nil {
				return "", sweepErr(r, "%v", err)
			}
			seen[sx] = true
		}
		return l[zi].(string), nil
	case string:
		if err := spec.Printable("sweep.labels", l); err != nil {
			return "", sweepErr(r, "%v", err)
		}
		var bad error
		out := placeholder.ReplaceAllStringFunc(l, func(m string) string {
			key := m[1 : len(m)-1]
			sec, k, ok := strings.Cut(key, ".")
			cfg, has := res.Sections[sec]
			if ok && has {
				if v, ok := spec.Values(cfg, true)[k]; ok {
					return fmt.Sprint(v)
				}
			}
			if bad == nil {
				bad = sweepErr(r, "labels = %q: {%s} is not a key of this spec (write {section.key}, e.g. {method.name})", l, key)
			}
			return m
		})
		return out, bad
	default:
		return "", sweepErr(r, "labels: want a list of strings (one per [sweep.zip] position) or a template string such as \"{method.name}/{targets.name}\"")
	}
}

func sweepErr(r *spec.Raw, msg string, args ...any) error {
	return &spec.Error{File: r.File, Msg: "sweep: " + fmt.Sprintf(msg, args...)}
}

func points(r *spec.Raw) ([]point, error) {
	sw, _ := r.Tree["sweep"].(map[string]any)
	pts := []point{{}}
	if sw == nil {
		return pts, nil
	}
	for k := range sw {
		switch k {
		case "seeds", "grid", "zip", "random", "labels":
		default:
			return nil, sweepErr(r, "unknown key %q; allowed: seeds, grid, zip, random, labels", k)
		}
	}
	if err := oneAxisPerKey(r, sw); err != nil {
		return nil, err
	}
	// grid
	if g, ok := sw["grid"].(map[string]any); ok {
		keys := sortedKeys(g)
		for _, k := range keys {
			vals, ok := g[k].([]any)
			if !ok || len(vals) == 0 {
				return nil, sweepErr(r, "grid %q: want a non-empty list", k)
			}
			if len(pts)*len(vals) > MaxTrials {
				return nil, sweepErr(r, "grid: more than %d points (at %q); split the sweep into several specs", MaxTrials, k)
			}
			var next []point
			for _, p := range pts {
				for _, v := range vals {
					q := clone(p)
					q[k] = v
					next = append(next, q)
				}
			}
			pts = next
		}
	} else if sw["grid"] != nil {
		return nil, sweepErr(r, "grid must be a table of lists ([sweep.grid])")
	}
	// zip
	if z, ok := sw["zip"].(map[string]any); ok {
		keys := sortedKeys(z) // (a key also in the grid was refused by oneAxisPerKey)
		n := -1
		for _, k := range keys {
			vals, ok := z[k].([]any)
			if !ok || len(vals) == 0 {
				return nil, sweepErr(r, "zip %q: want a non-empty list", k)
			}
			if n >= 0 && len(vals) != n {
				return nil, sweepErr(r, "zip lists must have one length: %q has %d, others %d", k, len(vals), n)
			}
			n = len(vals)
		}
		if n > 0 && len(pts)*n > MaxTrials {
			return nil, sweepErr(r, "zip: more than %d points; split the sweep into several specs", MaxTrials)
		}
		if n > 0 {
			var next []point
			for _, p := range pts {
				for i := 0; i < n; i++ {
					q := clone(p)
					for _, k := range keys {
						q[k] = z[k].([]any)[i]
					}
					q[zipIndex] = i
					next = append(next, q)
				}
			}
			pts = next
		}
	} else if sw["zip"] != nil {
		return nil, sweepErr(r, "zip must be a table of lists ([sweep.zip])")
	}
	// random
	if rd, ok := sw["random"].(map[string]any); ok {
		draws, err := randomPoints(r, rd)
		if err != nil {
			return nil, err
		}
		if len(pts)*len(draws) > MaxTrials {
			return nil, sweepErr(r, "random: more than %d points; split the sweep into several specs", MaxTrials)
		}
		var next []point
		for _, p := range pts {
			for _, d := range draws {
				q := clone(p)
				for k, v := range d {
					q[k] = v
				}
				next = append(next, q)
			}
		}
		pts = next
	} else if sw["random"] != nil {
		return nil, sweepErr(r, "random must be a table ([sweep.random])")
	}
	// seeds
	if s, ok := sw["seeds"]; ok {
		seeds, ok := s.([]any)
		if !ok || len(seeds) == 0 {
			return nil, sweepErr(r, "seeds: want a non-empty list of integers")
		}
		if len(pts)*len(seeds) > MaxTrials {
			return nil, sweepErr(r, "seeds: more than %d points; split the sweep into several specs", MaxTrials)
		}
		// Seeds are the outer loop: every configuration's first seed comes before any second seed, so a sweep
		// stopped part-way (or read while it runs) has each configuration once before it has any twice.
		var next []point
		for _, sd := range seeds {
			v, ok := sd.(int64)
			if !ok || v < 0 {
				return nil, sweepErr(r, "seeds: %v is not a non-negative integer", sd)
			}
			for _, p := range pts {
				q := clone(p)
				q[spec.SeedKey] = v
				next = append(next, q)
			}
		}
		pts = next
	}
	return pts, nil
}

// oneAxisPerKey refuses a key swept by two axes ([sweep.grid], [sweep.zip], [sweep.random.params], and
// seeds, which sweeps train.seed): a later axis would overwrite the earlier one's values at every point,
// silently dropping that axis.
func oneAxisPerKey(r *spec.Raw, sw map[string]any) error {
	owner := map[string]string{}
	add := func(axis string, keys []string) error {
		for _, k := range keys {
			if prev, ok := owner[k]; ok {
				return sweepErr(r, "%q is swept by both %s and %s (a base's sweep is merged in): a key may be swept by one of them", k, prev, axis)
			}
			owner[k] = axis
		}
		return nil
	}
	for _, axis := range []struct{ name, label string }{{"grid", "[sweep.grid]"}, {"zip", "[sweep.zip]"}} {
		if m, ok := sw[axis.name].(map[string]any); ok {
			if err := add(axis.label, sortedKeys(m)); err != nil {
				return err
			}
		}
	}
	if rd, ok := sw["random"].(map[string]any); ok {
		if ps, ok := rd["params"].(map[string]any); ok {
			if err := add("[sweep.random.params]", sortedKeys(ps)); err != nil {
				return err
			}
		}
	}
	if _, ok := sw["seeds"]; ok {
		return add("[sweep] seeds", []string{spec.SeedKey})
	}
	return nil
}

func randomPoints(r *spec.Raw, rd map[string]any) ([]point, error) {
	for k := range rd {
		if k != "n" && k != "seed" && k != "params" {
			return nil, sweepErr(r, "random: unknown key %q; allowed: n, seed, params", k)
		}
	}
	n, ok := rd["n"].(int64)
	if !ok || n < 1 || n > MaxTrials {
		return nil, sweepErr(r, "random.n = %v: want an integer in [1, %d]", rd["n"], MaxTrials)
	}
	seed, _ := rd["seed"].(int64)
	params, ok := rd["params"].(map[string]any)
	if !ok || len(params) == 0 {
		return nil, sweepErr(r, "random.params: want a table of \"key.path\" = { dist = \"uniform\" | \"loguniform\" | \"choice\", ... }")
	}
	rng := rand.New(rand.NewPCG(uint64(seed), 0x7377656570))
	keys := sortedKeys(params)
	out := make([]point, n)
	for i := range out {
		out[i] = point{}
		for _, k := range keys {
			d, ok := params[k].(map[string]any)
			if !ok {
				return nil, sweepErr(r, "random.params %q: want { dist = ..., ... }", k)
			}
			dist, _ := d["dist"].(string)
			switch dist {
			case "uniform", "loguniform":
				lo, ok1 := num(d["low"])
				hi, ok2 := num(d["high"])
				if !ok1 || !ok2 || hi < lo || (dist == "loguniform" && lo <= 0) {
					return nil, sweepErr(r, "random.params %q: %s wants numbers low <= high (> 0 for loguniform)", k, dist)
				}
				u := rng.Float64()
				if dist == "uniform" {
					out[i][k] = lo + u*(hi-lo)
				} else {
					out[i][k] = math.Exp(math.Log(lo) + u*(math.Log(hi)-math.Log(lo)))
				}
			case "choice":
				vals, ok := d["values"].([]any)
				if !ok || len(vals) == 0 {
					return nil, sweepErr(r, "random.params %q: choice wants values = [...]", k)
				}
				out[i][k] = vals[rng.IntN(len(vals))]
			default:
				return nil, sweepErr(r, "random.params %q: dist = %q; allowed: uniform, loguniform, choice", k, dist)
			}
		}
	}
	return out, nil
}

func num(v any) (float64, bool) {
	switch x := v.(type) {
	case int64:
		return float64(x), true
	case float64:
		return x, true
	}
	return 0, false
}

func sortedKeys(m map[string]any) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func clone(p point) point {
	q := point{}
	for k, v := range p {
		q[k] = v
	}
	return q
}

func deepCopy(m map[string]any) map[string]any {
	out := map[string]any{}
	for k, v := range m {
		if sub, ok := v.(map[string]any); ok {
			out[k] = deepCopy(sub)
		} else {
			out[k] = v
		}
	}
	return out
}

// Describe is a one-line summary of a trial list.
func Describe(ts []Expanded) string {
	var b strings.Builder
	for _, t := range ts {
		fmt.Fprintf(&b, "%s  %s\n", t.Hash, t.Name)
	}
	return b.String()
}
