package targets

import (
	"testing"

	"github.com/gomlx/gomlx/core/tensors"
	"mimlab/data"
)

// The hog target's host input is HOGPatches of the batch (so the skimage fixture test covers its values),
// shaped [B, N, (patch/cell)^2 * bins]; a cell that does not divide the patch is refused with the keys named.
func TestHOGTarget(t *testing.T) {
	ds := &data.Dataset{Channels: 1, Size: 12}
	f := hogFactory{HOGConfig{Name: "hog", Bins: 9}}
	tg, err := f.Prepare(Env{Data: ds, Patch: 4})
	if err != nil {
		t.Fatal(err)
	}
	h := tg.(*HOG)
	if h.Dim() != 4*9 {
		t.Fatalf("dim %d, want 36 (2x2 cells of 2 pixels, 9 bins)", h.Dim())
	}
	imgs := make([]float32, 2*12*12)
	for i := range imgs {
		imgs[i] = float32((i*7)%13) / 13
	}
	x, err := h.Input(imgs, 2)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := HOGPatches(imgs, 2, 1, 12, 4, HOGParams{Cell: 2, Bins: 9, BlockCells: 2})
	got := tensors.MustCopyFlatData[float32](x)
	if s := x.Shape(); s.Dimensions[0] != 2 || s.Dimensions[1] != 9 || s.Dimensions[2] != 36 {
		t.Fatalf("shape %v", s)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("value %d: %v, want %v", i, got[i], want[i])
		}
	}
	if _, err := (hogFactory{HOGConfig{Name: "hog", Bins: 9, Cell: 3}}).Prepare(Env{Data: ds, Patch: 4}); err == nil || err.Error() != "targets.cell = 3: must divide data.patch_size = 4" {
		t.Fatalf("got %v", err)
	}
}
