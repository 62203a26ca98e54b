#!/usr/bin/env bash
# The evidence sweep, from one command: SB3 SAC, dense OFENet-SAC, XiNetSAC and small-from-scratch OFENet-SAC
# (sized to XiNetSAC's final counts), 3 seeds each, on Hopper-v5 at 100k env steps and HalfCheetah-v5 at 50k,
# then the table (docs/benchmarks.md) and the plots.
#
#     bash benchmarks/sweep.sh            # a slice of at most HOURS (default 2) hours; rerun to resume
#     HOURS=1.5 WORKERS=2 bash benchmarks/sweep.sh
#
# Every finished run appends its row to runs.csv and its curve at once (commit them after each slice); an
# unfinished run resumes from its last checkpoint (every 10k steps) if the checkpoint is still on disk.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-benchmarks/results/sweep}
DEADLINE=$(python -c "import time; print(time.time() + 3600 * ${HOURS:-2})")
hours_left() { python -c "import time; print(max(0.0, ($DEADLINE - time.time()) / 3600))"; }
compare() {
    local left
    left=$(hours_left)
    if python -c "import sys; sys.exit(float('$left') > 0.05)"; then
        echo "slice over: rerun to resume"
        return
    fi
    python -m benchmarks.compare --algos sac ofenet_sac xinet_sac small_ofenet_sac --seeds 0 1 2 --workers "${WORKERS:-2}" \
        --max-hours "$left" --out "$OUT" "$@"
}

compare --envs Hopper-v5 --steps 100000
compare --envs HalfCheetah-v5 --steps 50000 --learning-starts 5000 --ofenet-pretrain-steps 5000
python -m benchmarks.report "$OUT"
