// Package registry holds mimlab's typed registries: kind -> name -> factory. A component package registers
// its implementations from init() (as a database/sql driver does); a spec names them. An unknown name gets
// an error listing the registered names of that kind, and a kind with nothing registered says which package
// to import.
//
// The registry knows nothing of CAE, ViTs or images: C is a component's config type, T what it builds.
// Registries are the only global mutable state mimlab has, and they are written only during init.
package registry

import (
	"fmt"
	"sort"
	"strings"
	"sync"
)

// Config is what a component's config must do: fill its defaults (done by the factory's NewConfig) and
// validate itself before anything runs.
type Config interface {
	Validate() error
}

// Entry is one registered implementation.
type Entry[T any] struct {
	Name string
	Doc  string
	// NewConfig returns a fresh config pointer holding the defaults; the spec decodes the section into it.
	NewConfig func() Config
	// Build makes the component from a validated config.
	Build func(cfg Config) (T, error)
	// Default makes this the implementation a spec gets when its section names none (one per kind).
	Default bool
}

// Kind is the registry of one component kind (masking, encoder, ...).
type Kind[T any] struct {
	name    string
	def     string
	hint    string
	mu      sync.RWMutex
	entries map[string]Entry[T]
}

// NewKind makes a registry for a kind; hint names the package whose import registers the implementations.
func NewKind[T any](name, hint string) *Kind[T] {
	return &Kind[T]{name: name, hint: hint, entries: map[string]Entry[T]{}}
}

// WithDefault sets the implementation a spec gets when its section names none, for a kind built in a test;
// components declare theirs at registration (Entry.Default). Like Register, it belongs to init time.
func (k *Kind[T]) WithDefault(name string) *Kind[T] {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.def = name
	return k
}

// Default is the implementation used when the section gives no name.
func (k *Kind[T]) Default() string {
	k.mu.RLock()
	defer k.mu.RUnlock()
	return k.def
}

// New returns a fresh default config of implementation name.
func (k *Kind[T]) New(name string) (Config, error) {
	e, err := k.Lookup(name)
	if err != nil {
		return nil, err
	}
	return e.NewConfig(), nil
}

// Build makes the implementation a validated config names; cfg must come from New.
func (k *Kind[T]) Build(name string, cfg Config) (T, error) {
	e, err := k.Lookup(name)
	if err != nil {
		var zero T
		return zero, err
	}
	return e.Build(cfg)
}

// Doc is an implementation's one-line description ("" for an unknown name).
func (k *Kind[T]) Doc(name string) string {
	k.mu.RLock()
	defer k.mu.RUnlock()
	return k.entries[name].Doc
}

// Name is the kind's name (its spec section).
func (k *Kind[T]) Name() string { return k.name }

// Register adds an implementation; registering a name twice panics (a programming error found at init).
func (k *Kind[T]) Register(e Entry[T]) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if _, dup := k.entries[e.Name]; dup {
		panic(fmt.Sprintf("registry: %s %q registered twice", k.name, e.Name))
	}
	if e.Default {
		if k.def != "" {
			panic(fmt.Sprintf("registry: %s %q and %q both registered as the default", k.name, k.def, e.Name))
		}
		k.def = e.Name
	}
	k.entries[e.Name] = e
}

// Names lists the registered names, sorted.
func (k *Kind[T]) Names() []string {
	k.mu.RLock()
	defer k.mu.RUnlock()
	out := make([]string, 0, len(k.entries))
	for n := range k.entries {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Lookup finds an implementation by name.
func (k *Kind[T]) Lookup(name string) (Entry[T], error) {
	k.mu.RLock()
	e, ok := k.entries[name]
	k.mu.RUnlock()
	if ok {
		return e, nil
	}
	names := k.Names()
	if len(names) == 0 {
		return e, fmt.Errorf("%s %q: no %s is registered (import %s)", k.name, name, k.name, k.hint)
	}
	return e, fmt.Errorf("%s.name = %q: unknown %s; registered: %s", k.name, name, k.name, strings.Join(names, ", "))
}
