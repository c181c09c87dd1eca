#!/usr/bin/env bash
# Submits a profile's grid as N array tasks and its report as a job that waits for them:
#   cluster/submit.sh PROFILE N [RESULTS] [OUT]
# (the two sbatch lines below are all it does; README "Many machines" shows them).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
profile=${1:?usage: submit.sh PROFILE N [RESULTS] [OUT]}
n=${2:?usage: submit.sh PROFILE N [RESULTS] [OUT]}
name=$(basename "$profile" .toml)
results=${3:-results/$name}
out=${4:-reports/$name}
array=$(sbatch --parsable --array=1-"$n" "$here/grid.sbatch" "$profile" "$results")
sbatch --dependency=afterok:"${array%%;*}" "$here/report.sbatch" "$profile" "$results" "$out"
