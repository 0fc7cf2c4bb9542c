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
	"reflect"
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

func (r *Raw) loadFile(path string, chain []string) (map[string]any, error) {
	abs, _ := filepath.Abs(path)
	for _, c := range chain {
		if c == abs {
			return nil, &Error{File: path, Msg: fmt.Sprintf("base: cycle of bases: %s -> %s", strings.Join(chain, " -> "), abs)}
		}
	}
	text, err := os.ReadFile(path)
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
}

// Resolved is a fully resolved trial spec: every section decoded, defaulted and validated.
type Resolved struct {
	Name     string
	File     string
	Sections map[string]registry.Config
	// Point is the sweep point that made this trial (dotted key -> value), for display.
	Point map[string]any
}

// fieldKeys lists a config struct's TOML keys.
func fieldKeys(cfg any) []string {
	t := reflect.TypeOf(cfg)
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	var out []string
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if f.Anonymous { // an embedded config's keys are the section's own
			out = append(out, fieldKeys(reflect.New(f.Type).Interface())...)
			continue
		}
		if tag := strings.Split(f.Tag.Get("toml"), ",")[0]; tag != "" && tag != "-" {
			out = append(out, tag)
		}
	}
	sort.Strings(out)
	return out
}

// Resolve decodes every section of tree strictly into the configs of sections, fills defaults and
// validates. Top-level keys other than name, base and the known sections are errors.
func (r *Raw) Resolve(tree map[string]any, sections []Section) (*Resolved, error) {
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
	res := &Resolved{Name: r.Name, File: r.File, Sections: map[string]registry.Config{}}
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
		if err := cfg.Validate(); err != nil {
			key := ""
			if m := regexp.MustCompile(`^` + regexp.QuoteMeta(s.Name()) + `\.([a-z_]+)`).FindStringSubmatch(err.Error()); m != nil {
				key = m[1]
			}
			return nil, r.errAt(s.Name(), key, err.Error())
		}
		res.Sections[s.Name()] = cfg
	}
	return res, nil
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

// Canonical is the resolved spec as canonical JSON (sections in name order, every field, defaults included);
// execution-only keys (train.backend, train.device) are left out so that moving a trial to another backend
// does not change its identity.
func (res *Resolved) Canonical() string {
	m := map[string]any{"name": res.Name}
	for k, v := range res.Sections {
		b, _ := json.Marshal(v)
		var obj map[string]any
		json.Unmarshal(b, &obj)
		if k == "train" {
			delete(obj, "Backend")
			delete(obj, "Device")
		}
		m[k] = obj
	}
	b, _ := json.Marshal(m)
	return string(b)
}

// Full is the resolved spec as JSON, execution keys included (stored with the trial).
func (res *Resolved) Full() string {
	m := map[string]any{"name": res.Name}
	for k, v := range res.Sections {
		m[k] = v
	}
	b, _ := json.MarshalIndent(m, "", "  ")
	return string(b)
}

// Hash is the trial identity: sha256 of Canonical, 16 hex digits.
func (res *Resolved) Hash() string {
	h := sha256.Sum256([]byte(res.Canonical()))
	return hex.EncodeToString(h[:])[:16]
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
		v := p[k]
		s := fmt.Sprint(v)
		if f, ok := v.(float64); ok {
			s = strconv.FormatFloat(f, 'g', 6, 64)
		}
		parts = append(parts, k+"="+s)
	}
	return strings.Join(parts, ",")
}
