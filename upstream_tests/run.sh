#!/usr/bin/env bash
# Run Stable-Baselines3's, sb3-contrib's and the RL Zoo's own tests against XiNetSAC and XiNetTQC.
#
#   bash upstream_tests/run.sh [pytest options]      (from the repository root, in the environment of the package)
#
# SB3 and sb3-contrib: their test folders at the installed versions' tags are cloned into a temporary folder
# (or, without GitHub access, copied from checkouts named by UPSTREAM_SB3 and UPSTREAM_CONTRIB),
# where sb3_conftest.py (copied there as conftest.py) swaps SAC -> XiNetSAC and TQC -> XiNetTQC and keeps the
# tests that run them.
# The RL Zoo: test_zoo_commands.py runs the zoo's own train/enjoy/optimize commands (tests/test_train.py,
# test_enjoy.py, test_hyperparams_opt.py of rl-baselines3-zoo) through `python -m sb3_xinet.train` / `.enjoy`.
# Results and the tests that fail by design (unsupported inputs refused with a ValueError): docs/compatibility.md.
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
export OMP_NUM_THREADS=1
status=0

fetch_tests() {  # repository, module, local checkout: clone the tag of the installed version (default branch if none)
    local version
    version="$(python -c "import $2; print($2.__version__)")"
    if [ -n "$3" ]; then
        mkdir -p "$work/$2" && cp -r "$3/tests" "$3/pyproject.toml" "$work/$2/"
    else
        git clone --quiet --depth 1 --branch "v$version" "https://github.com/$1" "$work/$2" 2>/dev/null \
            || git clone --quiet --depth 1 "https://github.com/$1" "$work/$2"
    fi
    cp "$here/sb3_conftest.py" "$work/$2/conftest.py"
}

fetch_tests DLR-RM/stable-baselines3 stable_baselines3 "${UPSTREAM_SB3:-}"
(cd "$work/stable_baselines3" && python -m pytest -p no:cacheprovider -o addopts="" -rfE "$@" \
    tests/test_save_load.py tests/test_run.py tests/test_predict.py tests/test_train_eval_mode.py \
    tests/test_callbacks.py tests/test_deterministic.py tests/test_tensorboard.py tests/test_custom_policy.py \
    tests/test_sde.py tests/test_n_step_replay.py tests/test_spaces.py tests/test_dict_env.py tests/test_cnn.py \
    tests/test_her.py tests/test_vec_normalize.py) || status=1

fetch_tests Stable-Baselines-Team/stable-baselines3-contrib sb3_contrib "${UPSTREAM_CONTRIB:-}"
(cd "$work/sb3_contrib" && python -m pytest -p no:cacheprovider -o addopts="" -rfE "$@" \
    tests/test_run.py tests/test_save_load.py tests/test_train_eval_mode.py tests/test_deterministic.py \
    tests/test_dict_env.py tests/test_cnn.py) || status=1

python -m pytest -p no:cacheprovider -o addopts="" -rfE "$@" "$here/test_zoo_commands.py" || status=1
exit $status
