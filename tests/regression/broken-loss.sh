#!/usr/bin/env bash
# Shows the regression guard fails on a broken loss (issue 27): a copy of this checkout with
# the triplet targets swapped (normal images pulled to the ones-vector, anomalies to the
# origin) is built and its `regress --profile ci --only table1` must exit 1. Never touches this
# checkout or its build: the copy builds in a copy of the target dir (only eidn recompiles).
# Usage: bash tests/regression/broken-loss.sh   (or `just guard-broken-loss`); ~5 min.
set -euo pipefail
cd "$(dirname "$0")/../.."
target="${CARGO_TARGET_DIR:-$HOME/.cache/eidn-target}"
data="${EIDN_DATA_DIR:-$(cd .. && pwd)/shared/datasets}"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

git ls-files -co --exclude-standard -z | xargs -0 cp --parents -t "$tmp"
file=src/model/eidn/batch.rs
good='out.fill(if *a { 1.0 } else { 0.0 });'
grep -qF "$good" "$tmp/$file" || { echo "the targets line moved: update $0"; exit 2; }
sed -i 's/out.fill(if \*a { 1.0 } else { 0.0 });/out.fill(if *a { 0.0 } else { 1.0 });/' "$tmp/$file"
echo "== broken copy: $file targets swapped"
if [ -d "$target/release" ]; then
    mkdir -p "$tmp/target" && cp -r "$target/release" "$tmp/target/"
fi
(cd "$tmp" && CARGO_TARGET_DIR="$tmp/target" cargo build --release --quiet)
# Floors only (an empty golden folder), so the demonstration holds on any CPU.
set +e
(cd "$tmp" && "$tmp/target/release/eidn" --data-dir "$data" regress --profile ci --only table1 \
    --results "$tmp/results" --thresholds tests/regression/thresholds.toml \
    --golden "$tmp/no-golden" --quiet) 2>&1 | tee "$tmp/regress.log"
code=${PIPESTATUS[0]}
set -e
failed=$(grep -c "FAIL mnist one-vs-rest class . @ 1% eidn/origin_distance: mean AUC .* < threshold" "$tmp/regress.log" || true)
if [ "$code" -eq 1 ] && [ "$failed" -eq 4 ]; then
    echo "== the guard failed the broken loss (exit 1), naming all 4 MNIST EIDN cells, as it must"
else
    echo "== the guard did NOT fail the broken loss as it must (exit $code, $failed of 4 cells named)"
    exit 1
fi
