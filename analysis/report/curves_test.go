package report

import (
	"path/filepath"
	"slices"
	"testing"

	"mimlab/framework/store"
)

// The curves draw whatever a method logs (its MetricNames), not a fixed list: a teacher method's
// latent_loss and teacher_std are drawn, and the trainer's grad_norm and lr are not.
func TestCurvesDrawEveryMetricAMethodLogs(t *testing.T) {
	st, err := store.Open(filepath.Join(t.TempDir(), "r.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := st.AddSweep("s", "s.toml", []store.NewTrial{{Hash: "a1", Name: "s[x]", Spec: "{}"}, {Hash: "b2", Name: "s[y]", Spec: "{}"}}); err != nil {
		t.Fatal(err)
	}
	trials, err := st.Trials("s")
	if err != nil {
		t.Fatal(err)
	}
	logged := [][]string{{"loss", "grad_norm", "lr", "latent_loss", "teacher_std"}, {"loss", "grad_norm", "lr", "target_loss", "my_metric"}}
	var infos []trialInfo
	for i, tr := range trials {
		for _, step := range []int{1, 10} {
			var ms []store.Metric
			for _, n := range logged[i] {
				ms = append(ms, store.Metric{Step: step, Name: n, Value: float64(step)})
			}
			if err := st.AddMetrics(tr.ID, ms); err != nil {
				t.Fatal(err)
			}
		}
		infos = append(infos, trialInfo{Trial: tr})
	}
	for i, want := range [][]string{{"loss", "latent_loss", "teacher_std"}, {"loss", "my_metric", "target_loss"}} {
		got, err := curveMetricNames(st, infos[i:i+1])
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, want) {
			t.Errorf("trial %d: curves of %v, want %v", i, got, want)
		}
	}
}
