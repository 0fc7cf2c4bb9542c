package experiment_test

import (
	"strings"
	"testing"

	"mimlab/experiment"
)

// train.precision: its values, its refusal on ort before anything is registered, and its place in the
// trial's identity (bf16 changes the numbers, so a bf16 trial is another trial).
func TestTrainPrecision(t *testing.T) {
	const qs = "../experiments/quickstart.toml"
	cases := []struct {
		name     string
		sets     []string
		exec     experiment.ExecOptions
		resolved string // the backend a run resolved to ("" = judge the options)
		want     string // "" = accepted; else in the error
	}{
		{"fp32 on ort", []string{"train.precision=fp32"}, experiment.ExecOptions{Backend: "ort"}, "", ""},
		{"bf16 on go", []string{"train.precision=bf16"}, experiment.ExecOptions{Backend: "go"}, "", ""},
		{"bf16 on cuda", []string{"train.precision=bf16"}, experiment.ExecOptions{Device: "cuda"}, "", ""},
		{"bf16 on ort", []string{"train.precision=bf16"}, experiment.ExecOptions{Backend: "ort"}, "",
			`quickstart.toml: train.precision = "bf16": backend ort cannot run it`},
		{"bf16, auto resolved to ort", []string{"train.precision=bf16"}, experiment.ExecOptions{}, "ort", "backends that can: go, xla"},
		{"bf16 in the spec beside backend ort", []string{"train.precision=bf16", "train.backend=ort"}, experiment.ExecOptions{}, "", "backend ort cannot run it"},
		{"fp16", []string{"train.precision=fp16"}, experiment.ExecOptions{}, "", `train.precision = "fp16": allowed values are fp32, bf16`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ps, err := experiment.Plan([]string{qs}, c.sets)
			if err == nil {
				err = c.exec.CheckPrecision(ps[0], c.resolved)
			}
			if c.want == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want one saying %q", err, c.want)
			}
		})
	}

	hashes := map[string]string{}
	for _, p := range []string{"fp32", "bf16"} {
		ps, err := experiment.Plan([]string{qs}, []string{"train.precision=" + p})
		if err != nil {
			t.Fatal(err)
		}
		res := ps[0].Trials[0].Resolved
		if !strings.Contains(res.Canonical(), `"precision":"`+p+`"`) {
			t.Fatalf("train.precision = %s is not in the trial's identity: %s", p, res.Canonical())
		}
		hashes[p] = res.Hash()
	}
	if hashes["fp32"] == hashes["bf16"] {
		t.Fatalf("fp32 and bf16 trials share the identity %s", hashes["fp32"])
	}
}
