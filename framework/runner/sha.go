package runner

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
)

func fileSHA(path string) (string, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return "", 0, err
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

// FileSHA is the hex sha256 of a file, as recorded for artifacts.
func FileSHA(path string) (string, error) {
	s, _, err := fileSHA(path)
	return s, err
}
