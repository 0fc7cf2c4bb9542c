package registry

import (
	"strings"
	"testing"
)

type cfg struct{ N int }

func (c *cfg) Validate() error { return nil }

func TestLookup(t *testing.T) {
	k := NewKind[int]("masking", "mimlab/components/masking")
	if _, err := k.Lookup("block"); err == nil || !strings.Contains(err.Error(), "import mimlab/components/masking") {
		t.Fatalf("empty kind: %v", err)
	}
	for _, n := range []string{"random", "block"} {
		k.Register(Entry[int]{Name: n, NewConfig: func() Config { return &cfg{} }, Build: func(Config) (int, error) { return 1, nil }})
	}
	cases := []struct {
		name    string
		wantErr string
	}{
		{"block", ""},
		{"blok", `masking.name = "blok": unknown masking; registered: block, random`},
	}
	for _, c := range cases {
		_, err := k.Lookup(c.name)
		if c.wantErr == "" && err != nil || c.wantErr != "" && (err == nil || err.Error() != c.wantErr) {
			t.Errorf("Lookup(%q) = %v, want %q", c.name, err, c.wantErr)
		}
	}
	defer func() {
		if recover() == nil {
			t.Fatal("duplicate registration did not panic")
		}
	}()
	k.Register(Entry[int]{Name: "block"})
}
