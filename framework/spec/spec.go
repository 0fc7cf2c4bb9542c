// Package spec loads mimlab's TOML experiment specs: a top-level name, an optional base (a path relative
// to the spec, merged under it, recursively), one section per component kind and the [train], [eval] and
// [sweep] sections. Decoding is strict: an unknown key, a wrong type or an unknown component name is an
// error naming the file, the line, the key and the allowed values. Every section is decoded into its
// component's config, which fills its defaults and validates itself (Caddy-style) before anything runs.
//
// The package knows nothing of components: the caller passes the sections (registries) it resolves.
package spec

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"
	"mimlab/framework/registry"
)

// Error is a spec error: exit status 2 at the CLI.
type Error struct {
	File string
	Line int
	Msg  string
}

func (e *Error) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
	}
	if e.File != "" {
		return fmt.Sprintf("%s: %s", e.File, e.Msg)
	}
	return e.Msg
}

// IsSpecError says whether err is a spec (user input) error.
func IsSpecError(err error) bool {
	var e *Error
	return errors.As(err, &e)
}

// Raw is a spec as loaded: sections are map[string]any; Origin maps "section.key" to the file that set it.
type Raw struct {
	File   string
	Name   string
	Tree   map[string]any
	Origin map[string]string
	texts  map[string]string // file -> content, for line lookups
}

// Load reads path, merges its bases under it and applies overrides ("section.key=value", value in TOML
// syntax, or a bare string).
func Load(path string, overrides []string) (*Raw, error) {
	r := &Raw{File: path, Origin: map[string]string{}, texts: map[string]string{}}
	tree, err := r.loadFile(path, nil)
	if err != nil {
		return nil, err
	}
	r.Tree = tree
	for _, o := range overrides {
		if err := r.Set(o); err != nil {
			return nil, err
		}
	}
	name, _ := r.Tree["name"].(string)
	if name == "" {
		return nil, &Error{File: path, Msg: "name: missing; every spec needs a top-level name = \"...\""}
	}
	r.Name = name
	return r, nil
}

// MaxSpecBytes is the largest spec or base file loaded (1 MiB).
const MaxSpecBytes = 1 << 20

func (r *Raw) loadFile(path string, chain []string) (map[string]any, error) {
	abs, _ := filepath.Abs(path)
	for _, c := range chain {
		if c == abs {
			return nil, &Error{File: path, Msg: fmt.Sprintf("base: cycle of bases: %s -> %s", strings.Join(chain, " -> "), abs)}
		}
	}
	// Stat first: only a regular file of at most MaxSpecBytes is read (a FIFO would block, /dev/zero never ends).
	var text []byte
	st, err := os.Stat(path)
	switch {
	case err != nil:
	case !st.Mode().IsRegular():
		err = fmt.Errorf("not a regular file (mode %v); a spec is a TOML file", st.Mode())
	case st.Size() > MaxSpecBytes:
		err = fmt.Errorf("%d bytes; a spec is at most %d bytes (spec.MaxSpecBytes)", st.Size(), MaxSpecBytes)
	default:
		if text, err = os.ReadFile(path); err == nil && len(text) > MaxSpecBytes {
			err = fmt.Errorf("%d bytes; a spec is at most %d bytes (spec.MaxSpecBytes)", len(text), MaxSpecBytes)
		}
	}
	if err != nil {
		if len(chain) > 0 {
			return nil, &Error{File: chain[len(chain)-1], Msg: fmt.Sprintf("base = %q: %v", path, err)}
		}
		return nil, &Error{File: path, Msg: err.Error()}
	}
	r.texts[path] = string(text)
	tree := map[string]any{}
	if _, err := toml.Decode(string(text), &tree); err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			return nil, &Error{File: path, Line: pe.Position.Line, Msg: "malformed TOML: " + pe.Message}
		}
		return nil, &Error{File: path, Msg: "malformed TOML: " + err.Error()}
	}
	merged := map[string]any{}
	if b, ok := tree["base"]; ok {
		bs, ok := b.(string)
		if !ok {
			return nil, &Error{File: path, Line: lineOf(string(text), "", "base"), Msg: "base: must be a string (a path relative to this spec)"}
		}
		bp := bs
		if !filepath.IsAbs(bp) {
			bp = filepath.Join(filepath.Dir(path), bs)
		}
		if _, serr := os.Stat(bp); serr != nil {
			return nil, &Error{File: path, Line: lineOf(string(text), "", "base"), Msg: fmt.Sprintf("base = %q: %v", bs, serr)}
		}
		merged, err = r.loadFile(bp, append(chain, abs))
		if err != nil {
			return nil, err
		}
		delete(tree, "base")
	}
	mergeInto(merged, tree, "", path, r.Origin)
	return merged, nil
}

// mergeInto writes src over dst (tables merged key by key), recording which file set each key.
func mergeInto(dst, src map[string]any, prefix, file string, origin map[string]string) {
	for k, v := range src {
		key := k
		if prefix != "" {
			key = prefix + "." + k
		}
		if sv, ok := v.(map[string]any); ok {
			dv, ok := dst[k].(map[string]any)
			if !ok {
				dv = map[string]any{}
				dst[k] = dv
			}
			mergeInto(dv, sv, key, file, origin)
			continue
		}
		dst[k] = v
		origin[key] = file
	}
}

// Set applies one override "a.b.c=value".
func (r *Raw) Set(o string) error {
	k, v, ok := strings.Cut(o, "=")
	k = strings.TrimSpace(k)
	if !ok || k == "" {
		return &Error{File: "-set", Msg: fmt.Sprintf("%q: want key.path=value", o)}
	}
	var val any
	var holder map[string]any
	if _, err := toml.Decode("v = "+strings.TrimSpace(v), &holder); err == nil {
		val = holder["v"]
	} else {
		val = strings.TrimSpace(v) // a bare word is a string: -set method.name=beit
	}
	return SetPath(r.Tree, k, val, r.Origin, "-set")
}

// SetPath sets a dotted key in a tree, creating tables on the way.
func SetPath(tree map[string]any, key string, val any, origin map[string]string, file string) error {
	parts := strings.Split(key, ".")
	m := tree
	for i, p := range parts[:len(parts)-1] {
		next, ok := m[p]
		if !ok {
			nm := map[string]any{}
			m[p] = nm
			m = nm
			continue
		}
		nm, ok := next.(map[string]any)
		if !ok {
			return &Error{File: file, Msg: fmt.Sprintf("%s: %s is not a table", key, strings.Join(parts[:i+1], "."))}
		}
		m = nm
	}
	m[parts[len(parts)-1]] = val
	if origin != nil {
		origin[key] = file
	}
	return nil
}

// lineOf finds the line of `key =` inside [section] (or at top level when section is "").
func lineOf(text, section, key string) int {
	cur := ""
	hdr := regexp.MustCompile(`^\s*\[\s*([^\]]+?)\s*\]`)
	kre := regexp.MustCompile(`^\s*"?` + regexp.QuoteMeta(key) + `"?\s*=`)
	for i, line := range strings.Split(text, "\n") {
		if m := hdr.FindStringSubmatch(line); m != nil {
			cur = strings.Trim(m[1], `"`)
			continue
		}
		if cur == section && kre.MatchString(line) {
			return i + 1
		}
	}
	return 0
}

// errAt builds an Error at the file and line that set section.key.
func (r *Raw) errAt(section, key, msg string) *Error {
	full := section + "." + key
	if key == "" {
		full = section
	}
	file := r.Origin[full]
	if file == "" {
		file = r.File
	}
	return &Error{File: file, Line: lineOf(r.texts[file], section, key), Msg: msg}
}

// Section is something a spec section decodes into: a component kind (registry.Kind) or a fixed section
// such as [train].
type Section interface {
	Name() string
	// New returns the default config of implementation impl ("" when the section names none).
	New(impl string) (registry.Config, error)
	// Default is the implementation used when the section gives no name ("" for fixed sections).
	Default() string
	// Names are the registered implementations (none for fixed sections).
	Names() []string
}

// Uses is a section config that says which other sections its trials leave unread (a method that needs no
// targets and no regressor). An unused section resolves to its "none" implementation when the kind has one
// (else to its default), enters neither the trial's identity nor its stored spec, and may not be set beside
// the config that declares it: keys of it from a base spec, or from a sweep axis over that config's own
// implementation (a zip of methods), are dropped; keys set in the spec's own file or with -set are an error.
type Uses interface {
	Unused() []string
}

// Resolved is a fully resolved trial spec: every section decoded, defaulted and validated.
type Resolved struct {
	Name     string
	File     string
	Sections map[string]registry.Config
	// Unused are the sections the trial does not read (Uses): resolved, but out of Tree, Canonical and Hash.
	Unused map[string]bool
	// Point is the sweep point that made this trial (dotted key -> value).
	Point Point
	// Origin says where each "section.key" was set (file:line), for errors about several keys at once.
	Origin map[string]string
}

// Where says where section.key was set ("file:line"), or "default" when nothing set it.
func (res *Resolved) Where(key string) string {
	if w, ok := res.Origin[key]; ok {
		return w
	}
	return "default"
}

// origin names the source of a key: a file, "-set", or the sweep axis that set it.
func (r *Raw) origin(key string, point map[string]any) string {
	if _, ok := point[key]; ok {
		return "sweep:" + key
	}
	return r.Origin[key]
}

// where is "file:line" of a key (or the sweep axis), for Resolved.Origin.
func (r *Raw) where(section, key string, point map[string]any) string {
	o := r.origin(section+"."+key, point)
	if strings.HasPrefix(o, "sweep:") {
		return fmt.Sprintf("%s ([sweep] %q)", r.File, section+"."+key)
	}
	if o == "" {
		return ""
	}
	if l := lineOf(r.texts[o], section, key); l > 0 {
		return fmt.Sprintf("%s:%d", o, l)
	}
	return o
}

// Resolve decodes every section of tree strictly into the configs of sections, fills defaults and
// validates. Top-level keys other than name, base and the known sections are errors. point is the sweep
// point applied to tree (nil for none): it says which keys a sweep axis set.
//
// A key that the chosen implementation lacks but another implementation of the same kind has is dropped
// when it was set somewhere else than the section's name (a base spec written for another implementation,
// or a zipped sweep axis that only some of the zipped implementations use); set beside the name, it is an
// error.
func (r *Raw) Resolve(tree map[string]any, point map[string]any, sections []Section) (*Resolved, error) {
	known := map[string]Section{}
	var names []string
	for _, s := range sections {
		known[s.Name()] = s
		names = append(names, s.Name())
	}
	sort.Strings(names)
	for k, v := range tree {
		switch k {
		case "name", "sweep":
			continue
		}
		if _, ok := known[k]; !ok {
			return nil, r.errAt("", k, fmt.Sprintf("unknown section or key %q; allowed: name, base, %s, sweep", k, strings.Join(names, ", ")))
		}
		if _, ok := v.(map[string]any); !ok {
			return nil, r.errAt("", k, fmt.Sprintf("%s must be a table ([%s])", k, k))
		}
	}
	if err := Printable("name", r.Name); err != nil {
		return nil, r.errAt("", "name", err.Error())
	}
	res := &Resolved{Name: r.Name, File: r.File, Sections: map[string]registry.Config{}, Point: point, Origin: map[string]string{}}
	for _, s := range sections {
		sec, _ := tree[s.Name()].(map[string]any)
		impl := s.Default()
		if n, ok := sec["name"]; ok {
			ns, ok := n.(string)
			if !ok {
				return nil, r.errAt(s.Name(), "name", fmt.Sprintf("%s.name must be a string", s.Name()))
			}
			impl = ns
		}
		cfg, err := s.New(impl)
		if err != nil {
			return nil, r.errAt(s.Name(), "name", err.Error())
		}
		if err := checkSeedTag(s.Name(), impl, cfg); err != nil {
			return nil, err
		}
		sec, err = r.dropForeign(s, impl, cfg, sec, point)
		if err != nil {
			return nil, err
		}
		if key, err := checkValues(s.Name(), cfg, sec); err != nil {
			return nil, r.errAt(s.Name(), key, err.Error())
		}
		if len(sec) > 0 {
			var buf bytes.Buffer
			if err := toml.NewEncoder(&buf).Encode(sec); err != nil {
				return nil, r.errAt(s.Name(), "", fmt.Sprintf("[%s]: %v", s.Name(), err))
			}
			md, err := toml.Decode(buf.String(), cfg)
			if err != nil {
				key := badKey(err.Error(), sec)
				return nil, r.errAt(s.Name(), key, fmt.Sprintf("%s.%s: wrong type: %v", s.Name(), key, cleanTypeErr(err)))
			}
			if und := md.Undecoded(); len(und) > 0 {
				key := und[0].String()
				return nil, r.errAt(s.Name(), key, fmt.Sprintf("%s.%s: unknown key; allowed: %s", s.Name(), key, strings.Join(fieldKeys(cfg), ", ")))
			}
		}
		for k := range sec {
			if w := r.where(s.Name(), k, point); w != "" {
				res.Origin[s.Name()+"."+k] = w
			}
		}
		if err := cfg.Validate(); err != nil {
			key := ""
			if m := regexp.MustCompile(`^` + regexp.QuoteMeta(s.Name()) + `\.([a-z_0-9]+)`).FindStringSubmatch(err.Error()); m != nil {
				key = m[1]
			}
			return nil, r.errAt(s.Name(), key, err.Error()+r.locate(s.Name(), key, err.Error(), cfg, point))
		}
		res.Sections[s.Name()] = cfg
	}
	if err := r.applyUnused(res, tree, point, sections); err != nil {
		return nil, err
	}
	return res, nil
}

// applyUnused resolves the sections a config declares unused (Uses) to their "none" implementation (or
// default), refusing them when they were set beside the declaring config (see Uses).
func (r *Raw) applyUnused(res *Resolved, tree map[string]any, point map[string]any, sections []Section) error {
	for _, decl := range sections {
		u, ok := res.Sections[decl.Name()].(Uses)
		if !ok {
			continue
		}
		implKey := decl.Name() + ".name"
		impl, _ := Values(res.Sections[decl.Name()], false)["name"].(string)
		for _, name := range u.Unused() {
			var s Section
			for _, x := range sections {
				if x.Name() == name {
					s = x
				}
			}
			if s == nil || name == decl.Name() {
				return fmt.Errorf("spec: %s %q declares %q unused, which is not another section", decl.Name(), impl, name)
			}
			sec, _ := tree[name].(map[string]any)
			keys := make([]string, 0, len(sec))
			for k := range sec {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			_, declSwept := point[implKey]
			for _, k := range keys {
				o := r.origin(name+"."+k, point)
				explicit := o == "-set" || (o == r.File && o != "") || (strings.HasPrefix(o, "sweep:") && !declSwept)
				if explicit {
					return r.errAt(name, k, fmt.Sprintf("%s.%s: %s %q does not use [%s]; remove it (the section enters no identity of this %s)", name, k, implKey, impl, name, decl.Name()))
				}
			}
			pick := s.Default()
			for _, n := range s.Names() {
				if n == "none" {
					pick = "none"
				}
			}
			cfg, err := s.New(pick)
			if err != nil {
				return r.errAt(name, "name", err.Error())
			}
			if err := cfg.Validate(); err != nil {
				return r.errAt(name, "", err.Error())
			}
			res.Sections[name] = cfg
			for k := range res.Origin {
				if strings.HasPrefix(k, name+".") {
					delete(res.Origin, k)
				}
			}
			if res.Unused == nil {
				res.Unused = map[string]bool{}
			}
			res.Unused[name] = true
		}
	}
	return nil
}

// locate names where the other keys a validation message mentions were set, when that is another place than
// the key the error is reported at: "(data.image_size = 28 at base/mnist.toml:8)".
func (r *Raw) locate(section, key, msg string, cfg registry.Config, point map[string]any) string {
	var parts []string
	vals := Values(cfg, true)
	for _, k := range fieldKeys(cfg) {
		if k == key || k == "name" || !regexp.MustCompile(`(^|[^a-z_.])(`+regexp.QuoteMeta(section)+`\.)?`+regexp.QuoteMeta(k)+`($|[^a-z_])`).MatchString(msg) {
			continue
		}
		w := r.where(section, k, point)
		if w == "" {
			w = "default"
		}
		parts = append(parts, fmt.Sprintf("%s.%s = %v at %s", section, k, vals[k], w))
	}
	if len(parts) == 0 {
		return ""
	}
	return " (" + strings.Join(parts, "; ") + ")"
}

// dropForeign removes the keys of sec that belong to another implementation of the kind and were not set
// beside the section's name (see Resolve).
func (r *Raw) dropForeign(s Section, impl string, cfg registry.Config, sec map[string]any, point map[string]any) (map[string]any, error) {
	if len(sec) == 0 || len(s.Names()) == 0 {
		return sec, nil
	}
	own := map[string]bool{}
	for _, k := range fieldKeys(cfg) {
		own[k] = true
	}
	var foreign []string
	for k := range sec {
		if !own[k] {
			foreign = append(foreign, k)
		}
	}
	if len(foreign) == 0 {
		return sec, nil
	}
	sort.Strings(foreign)
	others := map[string]string{}
	for _, other := range s.Names() {
		if other == impl {
			continue
		}
		oc, err := s.New(other)
		if err != nil {
			continue
		}
		for _, k := range fieldKeys(oc) {
			if _, ok := others[k]; !ok {
				others[k] = other
			}
		}
	}
	nameOrigin := r.origin(s.Name()+".name", point)
	out := map[string]any{}
	for k, v := range sec {
		out[k] = v
	}
	for _, k := range foreign {
		owner, ok := others[k]
		if !ok {
			continue // an unknown key: the strict decode names it
		}
		keyOrigin := r.origin(s.Name()+"."+k, point)
		_, nameSwept := point[s.Name()+".name"]
		explicit := nameOrigin == "" || keyOrigin == nameOrigin || keyOrigin == "-set" ||
			(strings.HasPrefix(keyOrigin, "sweep:") && !nameSwept) // a sweep axis over a key the fixed implementation lacks
		if explicit {
			return nil, r.errAt(s.Name(), k, fmt.Sprintf("%s.%s: not a key of %s %q (it belongs to %q); allowed: %s", s.Name(), k, s.Name(), impl, owner, strings.Join(fieldKeys(cfg), ", ")))
		}
		delete(out, k)
	}
	return out, nil
}

func badKey(msg string, sec map[string]any) string {
	keys := make([]string, 0, len(sec))
	for k := range sec {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return len(keys[i]) > len(keys[j]) })
	for _, k := range keys {
		if strings.Contains(msg, "'"+k+"'") || strings.Contains(msg, `"`+k+`"`) || strings.Contains(msg, " "+k+" ") || strings.Contains(msg, "."+k) {
			return k
		}
	}
	return ""
}

func cleanTypeErr(err error) string {
	s := err.Error()
	if i := strings.LastIndex(s, ": "); i >= 0 && strings.Contains(s, "toml:") {
		return strings.TrimSpace(s[i+2:])
	}
	return s
}

// Tree is the resolved spec in TOML-key space: {"name": ..., section: {key: value}}, every key of the chosen
// implementations with its value (defaults included); execution-only keys only when exec is true.
func (res *Resolved) Tree(exec bool) map[string]any { return res.tree(exec, true) }

func (res *Resolved) tree(exec, seed bool) map[string]any {
	m := map[string]any{"name": res.Name}
	for k, v := range res.Sections {
		if !res.Unused[k] {
			m[k] = values(v, exec, seed)
		}
	}
	return m
}

// checkSeedTag refuses a config that tags a key other than SeedKey as the seed: reports and sweeps would pool
// trials by one key and name them by another.
func checkSeedTag(section, impl string, cfg any) error {
	for _, k := range Keys(cfg) {
		if k.Seed && section+"."+k.Key != SeedKey {
			return fmt.Errorf("spec: %s implementation %q tags %s.%s identity:\"seed\"; only %s may be the seed", section, impl, section, k.Key, SeedKey)
		}
	}
	return nil
}

// ConfigTree is Tree without execution-only keys and without the seed: what the seeds of one
// configuration share.
func (res *Resolved) ConfigTree() map[string]any { return res.tree(false, false) }

// ConfigKey is ConfigTree as canonical JSON: two trials are seeds of one configuration exactly when their
// ConfigKeys are equal.
func (res *Resolved) ConfigKey() string {
	b, err := json.Marshal(res.ConfigTree())
	if err != nil { // only non-finite numbers fail, and Resolve rejects them
		panic(fmt.Errorf("spec: configuration key: %w", err))
	}
	return string(b)
}

// Canonical is the trial's identity in TOML-key space: the resolved spec as JSON with sorted keys, only the
// keys of the chosen implementations, execution-only keys (train.backend, train.device) left out. It does
// not depend on Go field names, and adding a key to one implementation changes no other's identity.
func (res *Resolved) Canonical() string {
	b, err := json.Marshal(res.Tree(false))
	if err != nil { // only non-finite numbers fail, and Resolve rejects them
		panic(fmt.Errorf("spec: canonical form: %w", err))
	}
	return string(b)
}

// Full is the resolved spec as JSON in TOML-key space, execution keys included (stored with the trial;
// ResolveStored reads it back).
func (res *Resolved) Full() string {
	b, _ := json.MarshalIndent(res.Tree(true), "", "  ")
	return string(b)
}

// Hash is the trial identity: sha256 of Canonical, 16 hex digits.
func (res *Resolved) Hash() string {
	h := sha256.Sum256([]byte(res.Canonical()))
	return hex.EncodeToString(h[:])[:16]
}

// FromJSON turns a stored spec (Full) back into a tree that Resolve accepts: JSON numbers become int64 when
// they are integers and float64 otherwise.
func FromJSON(js string) (map[string]any, error) {
	d := json.NewDecoder(strings.NewReader(js))
	d.UseNumber()
	var m map[string]any
	if err := d.Decode(&m); err != nil {
		return nil, err
	}
	return fromJSON(m).(map[string]any), nil
}

func fromJSON(v any) any {
	switch x := v.(type) {
	case json.Number:
		if i, err := x.Int64(); err == nil {
			return i
		}
		f, _ := x.Float64()
		return f
	case map[string]any:
		for k, e := range x {
			x[k] = fromJSON(e)
		}
		return x
	case []any:
		for i, e := range x {
			x[i] = fromJSON(e)
		}
		return x
	}
	return v
}

// ResolveTree rebuilds a resolved spec from a tree (FromJSON of a stored spec), strictly.
func ResolveTree(file string, tree map[string]any, sections []Section) (*Resolved, error) {
	name, _ := tree["name"].(string)
	r := &Raw{File: file, Name: name, Tree: tree, Origin: map[string]string{}, texts: map[string]string{}}
	return r.Resolve(tree, nil, sections)
}

// PointString formats the sweep point for trial names: "method.name=cae,train.seed=1".
func PointString(p map[string]any) string {
	keys := make([]string, 0, len(p))
	for k := range p {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, k+"="+ValueString(p[k]))
	}
	return strings.Join(parts, ",")
}

// ValueString formats one sweep value as trial names, status and reports show it (floats to 6 significant
// digits, so 0.1+0.2 reads 0.3 everywhere).
func ValueString(v any) string {
	if f, ok := v.(float64); ok {
		return strconv.FormatFloat(f, 'g', 6, 64)
	}
	return fmt.Sprint(v)
}
