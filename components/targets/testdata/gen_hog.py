#!/usr/bin/python3
"""Generates testdata/hog_skimage.json for TestHOGMatchesSkimage: scikit-image's HOG at the non-overlapping
blocks (one block = one patch) for a few small deterministic images.

Each case holds a batch of float32 images in the loader's layout (B x C x S x S, flattened), the parameters
(cell, bins, patch; k = patch // cell cells per block side) and skimage's output, computed per image as

    hog(img, orientations=bins, pixels_per_cell=(cell, cell), cells_per_block=(k, k), block_norm='L2',
        feature_vector=False, channel_axis=None)          # C == 1: img is S x S
        # or channel_axis=-1 for C == 3 (img is S x S x C)
    [::k, ::k]                                            # blocks whose top-left cell index is a multiple of k
    .reshape((S // patch) ** 2, k * k * bins)             # row-major over the patch grid

Images are float32 (as the loader gives them), so skimage works in float32 up to the gradients and returns
float32. Numbers are written as the shortest decimal that round-trips to the float32 value.

Run with Debian's scikit-image:  /usr/bin/python3 components/targets/testdata/gen_hog.py
"""
import json
import os

import numpy as np
import skimage
from skimage.feature import hog

rng = np.random.default_rng(20220101)


def f32list(a):
    return [float(str(np.float32(v))) for v in np.asarray(a, dtype=np.float32).ravel()]


def skimage_patches(img_chw, cell, bins, patch):
    c, s, _ = img_chw.shape
    k = patch // cell
    if c == 1:
        out = hog(img_chw[0], orientations=bins, pixels_per_cell=(cell, cell), cells_per_block=(k, k),
                  block_norm='L2', feature_vector=False, channel_axis=None)
    else:
        out = hog(np.ascontiguousarray(img_chw.transpose(1, 2, 0)), orientations=bins,
                  pixels_per_cell=(cell, cell), cells_per_block=(k, k), block_norm='L2',
                  feature_vector=False, channel_axis=-1)
    assert out.dtype == np.float32, out.dtype
    g = s // patch
    sel = out[::k, ::k]
    assert sel.shape == (g, g, k, k, bins), sel.shape
    return sel.reshape(g * g, k * k * bins)


def case(name, images, cell, bins, patch, note):
    images = np.asarray(images, dtype=np.float32)
    b, c, s, _ = images.shape
    expected = np.stack([skimage_patches(im, cell, bins, patch) for im in images])
    return dict(name=name, note=note, batch=b, channels=c, size=s, cell=cell, bins=bins, patch=patch,
                images=f32list(images), expected=f32list(expected))


def edges12():
    # Step edges in both directions, a diagonal ramp and a descending vertical edge.
    im = np.zeros((12, 12))
    im[:6, 3:] = 1.0          # vertical edge (orientation 0) and horizontal edge (90)
    im[6:, :] = np.add.outer(np.arange(6), np.arange(12)) / 16.0   # ramp: orientation 45
    im[8:, 9:] = -0.5         # descending steps
    return im[None]


def tiny_vertical12():
    # skimage quirk: where the row gradient is a tiny negative number and the column gradient positive,
    # rad2deg(arctan2(g_row, g_col)) % 180 rounds to exactly 180.0, which no bin [20i, 20(i+1)) accepts: the
    # pixel is dropped. Columns 0,0,1 repeating give g_col = +-1 on the zero columns, whose rows hold +-1e-30.
    col = np.tile([0.0, 0.0, 1.0], 4)
    im = np.tile(col, (12, 1))
    zero_cols = col == 0
    tiny = rng.choice([-1e-30, 0.0, 1e-30], size=(12, 12))
    im[:, zero_cols] = tiny[:, zero_cols]
    return im[None]


def main():
    cases = []
    gray12 = np.stack([rng.random((1, 12, 12)), edges12(), tiny_vertical12()])
    cases.append(case('gray12', gray12, cell=2, bins=9, patch=4,
                      note='uniform random, step edges + ramp, tiny row gradients (dropped 180-degree pixels)'))
    cases.append(case('gray28', rng.standard_normal((1, 1, 28, 28)), cell=2, bins=9, patch=4,
                      note='standardised-looking 28x28 image, the default 2x2 cells on 4x4 patches'))
    cases.append(case('odd_cell_7bins', rng.random((1, 1, 12, 12)), cell=3, bins=7, patch=6,
                      note='odd cell size, bin width 180/7 not an integer'))
    gray_rgb = np.repeat(rng.random((1, 12, 12)), 3, axis=0)   # equal channels
    r, c = np.mgrid[:12, :12]
    # Channels 0 and 1 have equal magnitudes but orientations 0 and 90 inside: argmax ties go to channel 0.
    tie_rgb = np.stack([c / 4.0, r / 4.0, (r + c) / 8.0])
    cases.append(case('rgb12', np.stack([rng.random((3, 12, 12)), gray_rgb, tie_rgb]), cell=2, bins=9,
                      patch=4, note='three channels: per pixel the channel of largest gradient magnitude, '
                                    'the first on ties'))
    cases.append(case('one_patch', rng.random((1, 1, 8, 8)), cell=4, bins=9, patch=8,
                      note='a single 8x8 patch of 2x2 cells of 4x4 pixels'))
    doc = dict(generator='gen_hog.py', skimage=skimage.__version__, numpy=np.__version__,
               call="hog(img, orientations=bins, pixels_per_cell=(cell, cell), cells_per_block=(k, k), "
                    "block_norm='L2', feature_vector=False, channel_axis=None or -1)[::k, ::k]",
               cases=cases)
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'hog_skimage.json')
    with open(path, 'w') as f:
        json.dump(doc, f, separators=(',', ':'))
        f.write('\n')
    print(path, os.path.getsize(path), 'bytes')


if __name__ == '__main__':
    main()
