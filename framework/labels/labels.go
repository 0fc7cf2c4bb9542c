// Package labels names configurations for people. A report or a status table shows many configurations
// side by side; naming each by all its swept keys ("decoder.name=transformer,method.align_weight=2,
// method.name=cae,...") makes the reader decode them. A configuration is named by its [sweep] labels entry
// when the spec gives one, and otherwise by the shortest set of the keys that actually differ among the
// configurations shown that still tells them apart ("cae pixel", "beit hog", "num_masked=24").
package labels

import (
	"fmt"
	"slices"
	"sort"
	"strings"
)

// Config is one configuration: Key identifies it (the full name), Point holds its swept keys (seed
// excluded) as display strings, Label its [sweep] labels entry ("" = none), Sweep its spec's name.
type Config struct {
	Key, Label, Sweep string
	Point             map[string]string
}

// priority orders keys in a name: the implementations that make a method first.
var priority = []string{"sweep", "label", "method.name", "targets.name", "masking.name", "decoder.name", "regressor.name", "encoder.name", "data.name"}

func rank(k string) (int, string) {
	if i := slices.Index(priority, k); i >= 0 {
		return i, k
	}
	if strings.HasSuffix(k, ".name") {
		return len(priority), k
	}
	return len(priority) + 1, k
}

func less(a, b string) bool {
	ra, ka := rank(a)
	rb, kb := rank(b)
	if ra != rb {
		return ra < rb
	}
	return ka < kb
}

// value is what c shows for k ("sweep" and "label" are the pseudo-keys for the spec name and the label).
func value(c Config, k string) string {
	switch k {
	case "sweep":
		return c.Sweep
	case "label":
		return c.Label
	}
	return c.Point[k]
}

// Short names each configuration (by Key): its label if given, then the fewest differing keys that make
// every name unique, values alone for ".name" keys and key=value otherwise (the key shortened to its last
// part unless two shown keys share it). A set that no choice of keys tells apart keeps the full Keys.
func Short(cs []Config) map[string]string {
	out := map[string]string{}
	if len(cs) == 0 {
		return out
	}
	seen := map[string]bool{}
	var all []string
	for _, c := range cs {
		for k := range c.Point {
			if !seen[k] {
				seen[k] = true
				all = append(all, k)
			}
		}
	}
	all = append(all, "sweep", "label")
	var varying []string
	for _, k := range all {
		vals := map[string]bool{}
		for _, c := range cs {
			vals[value(c, k)] = true
		}
		if len(vals) > 1 {
			varying = append(varying, k)
		}
	}
	sort.Slice(varying, func(i, j int) bool { return less(varying[i], varying[j]) })
	always := []string{}
	hasLabel := false
	for _, c := range cs {
		hasLabel = hasLabel || c.Label != ""
	}
	if hasLabel {
		always = append(always, "label") // a name the spec gave is always shown
	}
	var rest []string
	for _, k := range varying {
		if k != "label" {
			rest = append(rest, k)
		}
	}
	chosen, ok := smallest(cs, always, rest)
	if !ok {
		for _, c := range cs {
			out[c.Key] = c.Key
		}
		return out
	}
	shortKey := map[string]string{}
	last := map[string]int{}
	for _, k := range chosen {
		last[k[strings.LastIndex(k, ".")+1:]]++
	}
	for _, k := range chosen {
		s := k[strings.LastIndex(k, ".")+1:]
		if last[s] > 1 {
			s = k
		}
		shortKey[k] = s
	}
	for _, c := range cs {
		var parts []string
		for _, k := range chosen {
			v := value(c, k)
			switch {
			case k == "sweep" || k == "label" || strings.HasSuffix(k, ".name"):
				if v != "" {
					parts = append(parts, v)
				}
			default:
				parts = append(parts, fmt.Sprintf("%s=%s", shortKey[k], v))
			}
		}
		name := strings.Join(parts, " ")
		if name == "" {
			name = c.Sweep
			if c.Label != "" {
				name = c.Label
			}
		}
		if name == "" {
			name = c.Key
		}
		out[c.Key] = name
	}
	return out
}

// smallest finds the fewest keys of rest (with always) whose values tell every configuration apart,
// preferring keys earlier in rest; rest is capped at 12 keys (then all are used).
func smallest(cs []Config, always, rest []string) ([]string, bool) {
	unique := func(keys []string) bool {
		seen := map[string]bool{}
		for _, c := range cs {
			var b strings.Builder
			for _, k := range keys {
				b.WriteString(value(c, k))
				b.WriteByte(0)
			}
			if seen[b.String()] {
				return false
			}
			seen[b.String()] = true
		}
		return true
	}
	if len(rest) > 12 {
		keys := append(append([]string{}, always...), rest...)
		return keys, unique(keys)
	}
	for size := 0; size <= len(rest); size++ {
		var found []string
		var pick func(start int, cur []string) bool
		pick = func(start int, cur []string) bool {
			if len(cur) == size {
				keys := append(append([]string{}, always...), cur...)
				if unique(keys) {
					found = keys
					return true
				}
				return false
			}
			for i := start; i < len(rest); i++ {
				if pick(i+1, append(cur, rest[i])) {
					return true
				}
			}
			return false
		}
		if pick(0, nil) {
			sort.SliceStable(found, func(i, j int) bool { return less(found[i], found[j]) })
			return found, true
		}
	}
	return nil, false
}
