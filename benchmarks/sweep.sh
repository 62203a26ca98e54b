#!/usr/bin/env bash
# The evidence sweep, from one command: SB3 SAC, dense OFENet-SAC, XiNetSAC (c = 1) and small-from-scratch
# OFENet-SAC (sized to XiNetSAC's final mean counts on each task), SEEDS (default 5) seeds each, on Hopper-v5,
# HalfCheetah-v5 and Walker2d-v5 at 100k env steps. XiNetSAC prunes from step 20k (10k after learning starts)
# and folds its gates at step 70k, so the last 30% of every run trains the pruned network. Evaluations every 5k
# steps, 10 deterministic episodes; once every run is in, the statistics and plots (benchmarks/evidence.py, the
# `evidence` extra).
#
#     bash benchmarks/sweep.sh                       # a slice of at most HOURS (default 2) hours; rerun to resume
#     PIN=<commit> HOURS=2.5 WORKERS=2 bash benchmarks/sweep.sh
#
# Every finished run appends its row to runs.csv and its curve at once (commit them after each slice); an
# unfinished run resumes from its last checkpoint if the checkpoint is still on disk. Runs compared must come from
# one commit: run the sweep from a checkout of it (e.g. `git worktree add ../pinned <commit>`, then there
# `OUT=<this checkout>/benchmarks/results/evidence bash benchmarks/sweep.sh`); with PIN set, the script refuses
# any other commit.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -n "${PIN:-}" ] && [ "$(git rev-parse HEAD)" != "$(git rev-parse "$PIN")" ]; then
    echo "this checkout is at $(git rev-parse --short HEAD), the sweep is pinned at $PIN" >&2
    exit 1
fi
OUT=${OUT:-benchmarks/results/evidence}
SEEDS=${SEEDS:-0 1 2 3 4}
ENVS="Hopper-v5 HalfCheetah-v5 Walker2d-v5"
ALGOS="xinet_sac ofenet_sac sac small_ofenet_sac"
DEADLINE=$(python -c "import time; print(time.time() + 3600 * ${HOURS:-2})")
hours_left() { python -c "import time; print(max(0.0, ($DEADLINE - time.time()) / 3600))"; }
compare() {
    local left
    left=$(hours_left)
    if python -c "import sys; sys.exit(float('$left') > 0.05)"; then
        echo "slice over: rerun to resume"
        return
    fi
    # shellcheck disable=SC2086  # ALGOS and SEEDS are lists
    python -m benchmarks.compare --algos $ALGOS --seeds $SEEDS --steps 100000 \
        --pruning-end 70000 --eval-freq 5000 --eval-episodes 10 --final-episodes 10 --workers "${WORKERS:-2}" \
        --threads 1 --max-hours "$left" --out "$OUT" "$@"
}

for env in $ENVS; do
    compare --envs "$env"
done
# the statistics once every run is in (on part of the sweep they would read as results)
expected=$(($(wc -w <<< "$ENVS") * $(wc -w <<< "$ALGOS") * $(wc -w <<< "$SEEDS")))
finished=0
if [ -f "$OUT/runs.csv" ]; then
    finished=$(($(wc -l < "$OUT/runs.csv") - 1))
fi
if [ "$finished" -lt "$expected" ]; then
    echo "$finished of $expected runs finished: rerun to resume; the statistics follow the last"
    exit 0
fi
python -m benchmarks.evidence "$OUT" || echo "the statistics need the evidence extra: pip install -e '.[evidence]'"
