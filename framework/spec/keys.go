package spec

import (
	"fmt"
	"math"
	"reflect"
	"sort"
	"strings"
)

// A config struct's TOML keys are its fields' `toml` tags (embedded structs are flattened). Extra tags:
//
//	exec:"true"      an execution-only key (backend, device): stored with the trial, left out of its identity
//	identity:"seed"  the seed (SeedKey): part of a trial's identity, left out of its configuration's (what
//	                 the seeds of one configuration share)
//	doc:"..."        one line for `sweep list` and the README tables
//	allowed:"a,b"    the allowed values of an enumerated key, for `sweep list`

// KeyInfo describes one key of a config.
type KeyInfo struct {
	Key     string
	Default any
	Doc     string
	Allowed string
	Exec    bool
	Seed    bool // tagged identity:"seed"
}

type field struct {
	key string
	v   reflect.Value
	tag reflect.StructTag
}

func fields(v reflect.Value) []field {
	for v.Kind() == reflect.Pointer {
		v = v.Elem()
	}
	var out []field
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if f.Anonymous && f.Type.Kind() == reflect.Struct {
			out = append(out, fields(v.Field(i))...)
			continue
		}
		if !f.IsExported() {
			continue
		}
		tag := strings.Split(f.Tag.Get("toml"), ",")[0]
		if tag == "" || tag == "-" {
			continue
		}
		out = append(out, field{key: tag, v: v.Field(i), tag: f.Tag})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].key < out[j].key })
	return out
}

// Keys lists a config's keys with their values in cfg (its defaults when cfg is fresh).
func Keys(cfg any) []KeyInfo {
	var out []KeyInfo
	for _, f := range fields(reflect.ValueOf(cfg)) {
		out = append(out, KeyInfo{Key: f.key, Default: plain(f.v), Doc: f.tag.Get("doc"), Allowed: f.tag.Get("allowed"), Exec: f.tag.Get("exec") == "true", Seed: f.tag.Get("identity") == "seed"})
	}
	return out
}

// fieldKeys lists a config struct's TOML keys, sorted.
func fieldKeys(cfg any) []string {
	var out []string
	for _, f := range fields(reflect.ValueOf(cfg)) {
		out = append(out, f.key)
	}
	return out
}

// Values is a config in TOML-key space: key -> plain value (int64, uint64, float64, bool, string, []any).
// Execution-only keys are included only when exec is true.
func Values(cfg any, exec bool) map[string]any { return values(cfg, exec, true) }

// values is Values, the seed (identity:"seed") left out unless seed is true.
func values(cfg any, exec, seed bool) map[string]any {
	out := map[string]any{}
	for _, f := range fields(reflect.ValueOf(cfg)) {
		if !exec && f.tag.Get("exec") == "true" {
			continue
		}
		if !seed && f.tag.Get("identity") == "seed" {
			continue
		}
		out[f.key] = plain(f.v)
	}
	return out
}

func plain(v reflect.Value) any {
	switch v.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return v.Int()
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return v.Uint()
	case reflect.Float32, reflect.Float64:
		if f := v.Float(); f != 0 {
			return f
		}
		return 0.0 // -0.0 and 0.0 are one value (JSON would write "-0", read back as the integer 0)
	case reflect.Bool:
		return v.Bool()
	case reflect.String:
		return v.String()
	case reflect.Slice, reflect.Array:
		out := make([]any, v.Len())
		for i := range out {
			out[i] = plain(v.Index(i))
		}
		return out
	}
	return fmt.Sprint(v.Interface())
}

// checkValues rejects what TOML accepts but no config means: non-finite numbers (nan, inf), and negative
// values for unsigned keys (which the decoder would wrap to 2^64-1). sec is the section as written.
func checkValues(section string, cfg any, sec map[string]any) (string, error) {
	kinds := map[string]reflect.Kind{}
	for _, f := range fields(reflect.ValueOf(cfg)) {
		kinds[f.key] = f.v.Kind()
	}
	for _, k := range sortedKeys(sec) {
		if err := finite(sec[k]); err != nil {
			return k, fmt.Errorf("%s.%s = %v: %v", section, k, sec[k], err)
		}
		switch kinds[k] {
		case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
			if i, ok := sec[k].(int64); ok && i < 0 {
				return k, fmt.Errorf("%s.%s = %d: must be >= 0", section, k, i)
			}
		}
	}
	return "", nil
}

func finite(v any) error {
	switch x := v.(type) {
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return fmt.Errorf("must be a finite number")
		}
	case []any:
		for _, e := range x {
			if err := finite(e); err != nil {
				return err
			}
		}
	case map[string]any:
		for _, e := range x {
			if err := finite(e); err != nil {
				return err
			}
		}
	}
	return nil
}

func sortedKeys(m map[string]any) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Hidden says whether r is a control character or a bidirectional control: characters that break a line
// of output or reorder what is shown.
func Hidden(r rune) bool {
	return r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || isBidi(r)
}

func isBidi(r rune) bool {
	return (r >= 0x202a && r <= 0x202e) || (r >= 0x2066 && r <= 0x2069) || r == 0x200e || r == 0x200f || r == 0x061c
}

// Printable checks that a user-given name holds printable text only: no control characters (NUL, newlines,
// tabs), no bidirectional overrides, no table separators, at most 200 bytes.
func Printable(what, s string) error {
	if s == "" {
		return fmt.Errorf("%s: must not be empty", what)
	}
	if len(s) > 200 {
		return fmt.Errorf("%s: %d bytes; at most 200", what, len(s))
	}
	for _, r := range s {
		switch {
		case isBidi(r):
			return fmt.Errorf("%s = %q: bidirectional control %U not allowed (printable text only)", what, s, r)
		case Hidden(r):
			return fmt.Errorf("%s = %q: control character %U not allowed (printable text only)", what, s, r)
		case r == '|' || r == '`' || r == '<' || r == '>' || r == '[' || r == ']':
			return fmt.Errorf("%s = %q: %q not allowed (it breaks tables and trial labels)", what, s, r)
		case r == 0xfffd:
			return fmt.Errorf("%s = %q: invalid UTF-8", what, s)
		}
	}
	return nil
}
