#!/usr/bin/env bash
# The peers extra (docs/peers.md): laplace-torch, its curvature back-ends and IVON, installed into
# the active environment without replacing its torch. laplace-torch and backpack-for-pytorch
# declare torchvision (which pins its own torch) and curvlinops declares backpack, so those four go
# in with --no-deps; their real pure-python dependencies come from the `peers` extra, installed
# under a constraint that holds torch at the version already installed.
set -euo pipefail
cd "$(dirname "$0")/.."

PIP=(python -m pip install -q --disable-pip-version-check)
torch_version="$(python -c 'import torch; print(torch.__version__.split("+")[0])')"
constraints="$(mktemp)"
trap 'rm -f "$constraints"' EXIT
echo "torch==${torch_version}" >"$constraints"

"${PIP[@]}" -c "$constraints" -e ".[peers]"
"${PIP[@]}" --no-deps \
  "laplace-torch==0.3" \
  "asdfghjkl==0.1a4" \
  "backpack-for-pytorch==1.7.1" \
  "curvlinops-for-pytorch==3.0.1"

python - "$torch_version" <<'PY'
import sys

import torch

import ivon
import laplace
from laplace.curvature import AsdlGGN, BackPackGGN, CurvlinopsGGN  # noqa: F401

want = sys.argv[1]
have = torch.__version__.split("+")[0]
if have != want:
    sys.exit(f"install_peers.sh: torch changed from {want} to {torch.__version__}")
print(f"peers: laplace {getattr(laplace, '__version__', '0.3')}, ivon, torch {torch.__version__}")
PY
