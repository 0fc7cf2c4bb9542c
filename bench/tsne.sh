#!/usr/bin/env bash
# mimlab's Barnes-Hut t-SNE against scikit-learn's TSNE on the same 2,000 x 128 input: seconds,
# trustworthiness of both, and the time ratio. Not run in CI.
set -euo pipefail
cd "$(dirname "$0")/.."
in=$(mktemp --suffix .npy)
sk=$(OMP_WAIT_POLICY=PASSIVE /usr/bin/python3 bench/tsne_sklearn.py "$in" | grep RESULT)
mm=$(MIMLAB_TSNE_INPUT="$in" go test -run '^$' -bench 'TSNE$' -benchtime 1x ./bench | grep -o 'RESULT.*' | tail -1)
echo "$sk"; echo "$mm"
s=$(echo "$sk" | sed 's/.*seconds=\([0-9.]*\).*/\1/'); m=$(echo "$mm" | sed 's/.*seconds=\([0-9.]*\).*/\1/')
echo "time ratio (mimlab / scikit-learn): $(echo "$m / $s" | bc -l | cut -c1-5)"
