#!/usr/bin/env bash
# One-command GPU check, for a CUDA machine with torch and triton installed and no network.
#
#   benchmarks/gpu_check.sh [--wheelhouse DIR] [--skip-install] [--report FILE]
#
# 1. installs gwn_fast without network: the dependencies it lacks from DIR (default
#    ./wheelhouse, made beforehand on a networked machine by benchmarks/make_wheelhouse.sh),
#    then `pip install --no-build-isolation --no-deps .` (the build uses the installed
#    scikit-build-core and pybind11);
# 2. runs the CUDA-marked tests (`pytest -m cuda`: tests/gpu and any other);
# 3. runs `pytest --benchmark-only` with the fast sizes (kernels, coder, codec);
# 4. trains the paper's image codec for a few steps on CUDA with the Triton kernels, then
#    compresses on CUDA and decompresses on the CPU and compares (benchmarks/gpu_check.py);
# 5. writes one markdown report: FILE, else $OUT/gpu_check.md when $OUT is set, else
#    ./gpu_check.md.
# Budget: 8 minutes on one GPU (each step has its own time limit; GWN_CHECK_BUDGET=seconds
# changes the total). Without a GPU every step still runs, the CUDA parts skip with a
# reason, and the report says so: a dry run of the script itself.
# Environment: PYTHON (default python3, the one holding torch), GWN_CHECK_BUDGET, and
# GWN_COMMIT to name the commit where the copy has no .git.
# Exit status: 0 when every step passed (skips included), 1 otherwise.
set -uo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
py=${PYTHON:-python3}
wheelhouse=wheelhouse
install=1
report=""
while [ $# -gt 0 ]; do
  case "$1" in
    --wheelhouse) wheelhouse=$2; shift 2 ;;
    --skip-install) install=0; shift ;;
    --report) report=$2; shift 2 ;;
    -h | --help) sed -n '2,21p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done
if [ -z "$report" ]; then
  if [ -n "${OUT:-}" ]; then report=$OUT/gpu_check.md; else report=$root/gpu_check.md; fi
fi
mkdir -p "$(dirname "$report")"
report=$(cd "$(dirname "$report")" && pwd)/$(basename "$report")
work=$(mktemp -d)
run_dir=$(mktemp -d) # tests run from the root, one-off python from here (not the source tree)
start=$(date +%s)
budget=${GWN_CHECK_BUDGET:-480}
export PYTHONUNBUFFERED=1
# pytest without the current directory on sys.path (`python -m pytest` would put the source
# tree, which has no compiled _rans, ahead of the installed package).
pytest_main='import sys; del sys.path[0]; import pytest; sys.exit(pytest.console_main())'
export py root wheelhouse work run_dir pytest_main # read by the step functions (child shells)
steps=()   # "name|status|seconds"
failed=0
abort=""   # set when a failed step makes the later ones pointless

remaining() { echo $((budget - ($(date +%s) - start))); }

# step NAME LIMIT_SECONDS CMD...: runs CMD with a time limit (capped by what is left of the
# budget), logs to $work/NAME.log, records pass / FAIL / timeout.
step() {
  local name=$1 limit=$2; shift 2
  if [ -n "$abort" ]; then
    steps+=("$name|not run: $abort|0"); return 1
  fi
  local left; left=$(remaining)
  [ "$left" -lt "$limit" ] && limit=$left
  if [ "$limit" -le 5 ]; then
    steps+=("$name|not run: 8-minute budget spent|0"); failed=1; return 1
  fi
  echo "== $name (limit ${limit}s)"
  local t0; t0=$(date +%s)
  if declare -F "$1" >/dev/null; then # a function of this script: run it in a child bash
    timeout --kill-after=10 "$limit" bash -c "$(declare -f "$1"); $(printf '%q ' "$@")" >"$work/$name.log" 2>&1
  else
    timeout --kill-after=10 "$limit" "$@" >"$work/$name.log" 2>&1
  fi
  local rc=$?
  local dt=$(($(date +%s) - t0))
  tail -n 5 "$work/$name.log" | sed 's/^/   /'
  local status=pass
  if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then status="FAIL: timed out after ${limit}s"; failed=1
  elif [ $rc -ne 0 ]; then status="FAIL (exit $rc)"; failed=1; fi
  steps+=("$name|$status|$dt")
  return $rc
}

pyinfo() {
  (cd "$run_dir" && "$py" - <<'EOF'
import platform, torch
try:
    import triton
    tv = triton.__version__
except ImportError:
    tv = "not installed"
cuda = torch.cuda.is_available()
dev = f"{torch.cuda.get_device_name()} (CUDA {torch.version.cuda}, {torch.cuda.get_device_properties(0).total_memory / 2**30:.0f} GiB)" if cuda else "no CUDA device"
print(f"Python {platform.python_version()}, torch {torch.__version__}, triton {tv}; {dev}")
EOF
  )
}

commit=${GWN_COMMIT:-$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)}
env_line=$(pyinfo 2>&1 | tail -n 1)
has_cuda=$(cd "$run_dir" && "$py" -c 'import torch; print(int(torch.cuda.is_available()))' 2>/dev/null || echo 0)
echo "== gwn_fast GPU check, commit $commit: $env_line"

# -- 1. offline install -------------------------------------------------------------------
install_pkg() {
  local reqs
  reqs=$("$py" - <<'EOF'
try:
    import tomllib
except ImportError:
    import tomli as tomllib
m = tomllib.load(open("pyproject.toml", "rb"))
import re
reqs = m["project"]["dependencies"] + m["project"]["optional-dependencies"]["test"] + m["build-system"]["requires"]
# torch and triton are the machine's own: never reinstalled from here
print("\n".join(r for r in reqs if re.split(r"[<>=!~ ;\[]", r)[0].lower() not in ("torch", "triton")))
EOF
  ) || return 1
  echo "$reqs" >"$work/requirements.txt"
  # The torch family comes from the machine, never from the wheelhouse; compressai imports
  # torchvision, so it must be there already, built for this torch.
  (cd "$run_dir" && "$py" -c "import torchvision") || {
    echo "torchvision is missing: compressai needs it; install the torchvision built for this torch" >&2
    return 1
  }
  if [ -d "$wheelhouse" ]; then
    echo "-- dependencies from $wheelhouse (installed ones that satisfy the requirements are kept)"
    "$py" -m pip install --no-index --find-links "$wheelhouse" -r "$work/requirements.txt" || return 1
  else
    echo "-- no wheelhouse at '$wheelhouse': assuming the dependencies are installed (pip check below)"
  fi
  echo "-- gwn_fast itself"
  "$py" -m pip install --no-index --no-build-isolation --no-deps "$root" || return 1
  echo "-- pip check (informational)"
  "$py" -m pip check || true
}
if [ $install = 1 ]; then
  step install 150 install_pkg || abort="the install failed"
else
  steps+=("install|skipped (--skip-install)|0")
fi

# -- 2. import, and whether the Triton kernels can run here --------------------------------
import_check() {
  cd "$run_dir" && "$py" - <<'EOF'
import torch
import gwn_fast
from gwn_fast import kernels
print("gwn_fast", gwn_fast.__version__, "from", gwn_fast.__file__)
print("triton available:", kernels.triton_available())
if torch.cuda.is_available():
    print("triton usable on cuda:", kernels.triton_usable("cuda"))
    if not kernels.triton_usable("cuda"):
        print("WARNING: the Triton kernels cannot run on this GPU; the later steps will say where it fails")
else:
    print("no CUDA device: the Triton kernels are not usable here (CPU path only)")
EOF
}
step import 60 import_check || abort="${abort:-gwn_fast does not import}"

# -- 3. CUDA-marked tests -------------------------------------------------------------------
cuda_tests() {
  "$py" -c "$pytest_main" -q -m cuda -p no:cacheprovider -rs "$@"
  local rc=$?
  [ $rc -eq 5 ] && return 0 # none collected is not a failure
  return $rc
}
# From the root, as CI does: pytest puts tests/ on sys.path, not the source tree.
step cuda_tests 150 cuda_tests
[ "$has_cuda" = 1 ] || steps[-1]="${steps[-1]/|pass|/|pass (all skipped: no CUDA device)|}"

# -- 4. benchmarks, fast sizes --------------------------------------------------------------
step benchmarks 240 env GWN_BENCH_REPORT="$work/bench.md" "$py" -c "$pytest_main" --benchmark-only -q -p no:cacheprovider

# -- 5. training steps on CUDA with Triton, compress on CUDA, decompress on CPU -------------
step train_and_code 120 bash -c "cd '$run_dir' && '$py' '$root/benchmarks/gpu_check.py' --report '$work/train.md'"

# -- the report -----------------------------------------------------------------------------
total=$(($(date +%s) - start))
{
  echo "# gwn_fast GPU check"
  echo
  echo "$(date -u '+%Y-%m-%d %H:%M UTC'), commit $commit, $(hostname)."
  echo
  echo "$env_line"
  echo
  if [ "$has_cuda" != 1 ]; then
    echo "**No CUDA device here**: the CUDA tests and Triton rows skip with their reasons and the"
    echo "training check runs a small CPU dry run. This report checks the script, not a GPU."
    echo
  fi
  echo "| step | status | seconds |"
  echo "|---|---|---:|"
  for s in "${steps[@]}"; do
    IFS='|' read -r n st dt <<<"$s"
    echo "| $n | $st | $dt |"
  done
  echo "| total | $([ $failed = 0 ] && echo pass || echo FAIL) | $total |"
  echo
  if [ -f "$work/train.md" ]; then cat "$work/train.md"; echo; fi
  if [ -f "$work/bench.md" ]; then cat "$work/bench.md"; echo; fi
  for s in "${steps[@]}"; do # logs of the steps that did not pass, and the CUDA tests' skips
    IFS='|' read -r name st _ <<<"$s"
    [ -f "$work/$name.log" ] || continue
    case "$st" in pass*) [ "$name" = cuda_tests ] || continue ;; esac
    echo "<details><summary>log: $name (last 60 lines)</summary>"
    echo
    echo '```'
    tail -n 60 "$work/$name.log"
    echo '```'
    echo "</details>"
    echo
  done
} >"$report"
echo "== report: $report ($total s, $([ $failed = 0 ] && echo all steps passed || echo some steps FAILED))"
rm -rf "$work" "$run_dir"
exit $failed
