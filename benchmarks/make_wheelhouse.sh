#!/usr/bin/env bash
# Step 1 of the offline GPU check, on a machine WITH network access: download every wheel
# that benchmarks/gpu_check.sh needs besides torch and triton (which the GPU machine
# already has) into one folder, then copy that folder next to the checkout there.
#
#   benchmarks/make_wheelhouse.sh [DEST]          # DEST defaults to ./wheelhouse
#
# What goes in: gwn_fast's dependencies, its [test] extra and its build requirements
# (scikit-build-core, pybind11, for `pip install --no-build-isolation`), with everything
# they pull in, except the torch family and the CUDA runtime (torch, torchvision,
# torchaudio, triton, nvidia-*, cuda-*): those must come from the GPU machine's own
# install, never from here (compressai imports torchvision: the target needs the build
# matching its torch). The GPU machine's pip installs only what it lacks.
#
# Target interpreter: binary wheels are fetched for GWN_WHEELHOUSE_PYTHON (default: this
# python3's X.Y; e.g. 3.12 for a GPU image with Python 3.12) and manylinux x86_64. The
# versions are resolved with this machine's python3, so use the same minor version as the
# target when you can.
#
# A smaller wheelhouse: GWN_WHEELHOUSE_HAVE=FILE, FILE holding the target's
# `python3 -m pip list --format=freeze`, leaves out every package the target already has
# (at any version; gpu_check.sh keeps installed packages that satisfy the requirements).
set -euo pipefail
cd "$(dirname "$0")/.."
dest=${1:-wheelhouse}
py=${PYTHON:-python3}
target=${GWN_WHEELHOUSE_PYTHON:-$("$py" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')}
mkdir -p "$dest"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# 1. The requirements, read from pyproject.toml (dependencies, [test], build-system).
"$py" - >"$work/requirements.txt" <<'EOF'
try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib
meta = tomllib.load(open("pyproject.toml", "rb"))
reqs = meta["project"]["dependencies"] + meta["project"]["optional-dependencies"]["test"] + meta["build-system"]["requires"]
for r in reqs:
    print(r)
EOF
echo "== requirements (pyproject.toml):"; sed 's/^/   /' "$work/requirements.txt"

# 2. Resolve the full set (metadata only: torch's own wheel is not downloaded) ...
"$py" -m pip install -q --dry-run --ignore-installed --report "$work/report.json" -r "$work/requirements.txt"
"$py" - "$work/report.json" >"$work/pins.txt" <<'EOF'
import json, os, re, sys
def norm(name):
    return re.sub(r"[-_.]+", "-", name).lower()
skip = re.compile(r"^(torch|torchvision|torchaudio|triton|pytorch-triton.*|nvidia-.*|cuda-.*)$")
have = set()
if os.environ.get("GWN_WHEELHOUSE_HAVE"):  # the target's `pip list --format=freeze`: skip what it has
    have = {norm(re.split(r"[=<>~ ;]", line.strip())[0]) for line in open(os.environ["GWN_WHEELHOUSE_HAVE"]) if line.strip()}
for item in json.load(open(sys.argv[1]))["install"]:
    name, version = item["metadata"]["name"], item["metadata"]["version"]
    if not skip.match(norm(name)) and norm(name) not in have:
        print(f"{name}=={version}")
EOF
echo "== $(wc -l <"$work/pins.txt") packages to fetch for Python $target (torch family and CUDA runtime left out)"

# 3. ... and fetch each as a wheel for the target (pure-Python wheels fit any target).
plat=()
for tag in manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux_2_24_x86_64 manylinux_2_27_x86_64 \
  manylinux_2_28_x86_64 manylinux_2_31_x86_64 manylinux_2_34_x86_64 manylinux_2_35_x86_64 manylinux1_x86_64 any; do
  plat+=(--platform "$tag")
done
"$py" -m pip download -q --no-deps --only-binary=:all: --python-version "$target" --implementation cp \
  "${plat[@]}" -d "$dest" -r "$work/pins.txt"
echo "== wheelhouse: $dest ($(ls "$dest" | wc -l) wheels, $(du -sh "$dest" | cut -f1))"
echo "   next, on the GPU machine (no network): benchmarks/gpu_check.sh --wheelhouse $dest"
