package spec

import (
	"database/sql/driver"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
)

// SeedKey is the dotted key that a sweep's seeds set ([sweep] seeds = [...]). Trials that differ only in it
// are seeds of one configuration: they pool in reports and share a configuration's name. The config field
// behind it carries the tag `identity:"seed"` (checked when a spec is resolved, so the two cannot drift).
const SeedKey = "train.seed"

// Point is a trial's place in its sweep: the swept dotted keys and their values (int64, float64, bool,
// string, as Resolve produced them). It is the one value that planning, the store, status and the report
// use for a trial's point, key and name; nothing re-parses it out of a name. The store reads and writes it
// as a JSON object (it is a database/sql Scanner and Valuer).
type Point map[string]any

// ParsePoint reads a stored point (a JSON object; "" or "null" is the empty point). Integers stay int64.
func ParsePoint(js string) (Point, error) {
	js = strings.TrimSpace(js)
	if js == "" || js == "null" {
		return Point{}, nil
	}
	if !strings.HasPrefix(js, "{") {
		return nil, fmt.Errorf("sweep point %q: not a JSON object", clip(js))
	}
	m, err := FromJSON(js)
	if err != nil {
		return nil, fmt.Errorf("sweep point %q: %w", clip(js), err)
	}
	return Point(m), nil
}

func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}

// Scan implements sql.Scanner: a JSON object, or NULL for the empty point.
func (p *Point) Scan(src any) error {
	switch v := src.(type) {
	case nil:
		*p = Point{}
		return nil
	case string:
		q, err := ParsePoint(v)
		*p = q
		return err
	case []byte:
		q, err := ParsePoint(string(v))
		*p = q
		return err
	}
	return fmt.Errorf("sweep point: cannot read %T", src)
}

// Value implements driver.Valuer: the point as canonical JSON (its Key).
func (p Point) Value() (driver.Value, error) { return p.Key(), nil }

// Seedless is the point without its seed: the configuration's place in the sweep, shared by its seeds.
func (p Point) Seedless() Point {
	out := make(Point, len(p))
	for k, v := range p {
		if k != SeedKey {
			out[k] = v
		}
	}
	return out
}

// Seed is the point's seed, if the sweep sets one.
func (p Point) Seed() (any, bool) {
	v, ok := p[SeedKey]
	return v, ok
}

// Key is the point as canonical JSON (sorted keys, exact values): equal points have equal keys; labels round
// numbers, keys never do.
func (p Point) Key() string {
	if p == nil {
		return "{}"
	}
	b, err := json.Marshal(map[string]any(p))
	if err != nil { // Resolve rejects non-finite numbers, the only values that fail
		return "{}"
	}
	return string(b)
}

// String is the point as trial names show it: "method.name=cae,train.seed=1" (sorted keys, floats to 6
// significant digits).
func (p Point) String() string { return PointString(p) }

// Keys are the point's dotted keys, sorted.
func (p Point) Keys() []string {
	keys := make([]string, 0, len(p))
	for k := range p {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// Strings is the point's values as names show them (ValueString), by key.
func (p Point) Strings() map[string]string {
	out := make(map[string]string, len(p))
	for k, v := range p {
		out[k] = ValueString(v)
	}
	return out
}

// Name is the name of the trial (or, for a Seedless point, the configuration) at p in the sweep of spec
// name base: "base[k=v,...]", or base alone for the empty point.
func (p Point) Name(base string) string {
	if len(p) == 0 {
		return base
	}
	return base + "[" + p.String() + "]"
}
