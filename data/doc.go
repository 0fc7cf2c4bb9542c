// Package data provides mimlab's labelled image datasets (mnist, fashion-mnist, imagefolder, synthetic),
// registered under the kind "data", their augmentations, and a loader that yields float32 batches in an
// order fixed by the seed and prepares the next batch in the background.
//
// Images are held as float32 in [0,1], NCHW, already at the spec's image_size. A batch is a pure function
// of (seed, step): a resumed trial sees exactly the batches it would have seen. This package must never
// download anything: MNIST ships in a Go module, Fashion-MNIST in a Debian package.
package data
