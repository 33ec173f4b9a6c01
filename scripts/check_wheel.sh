#!/usr/bin/env bash
# The release as a user gets it: build the sdist and the wheel (python -m build), check that the
# wheel holds every package data file of src/bbh (configs, embedded data, references, templates,
# py.typed), install the wheel alone into a fresh virtual environment (its dependencies from the
# package index, torch pinned to the 2.13.0 CPU build), and run `bbh demo` from a folder outside
# the checkout, so that it imports the installed wheel and reads the data inside it.
#
#   bash scripts/check_wheel.sh            # needs `build` (the dev extra has it)
#
# PYTHON picks the interpreter (default python3), BBH_TORCH the torch requirement
# (default torch==2.13.0). The work goes to a temporary folder removed at the end, or to
# BBH_WHEEL_CHECK_DIR (a new or empty folder, kept: CI's throwaway clone uses one, since removing
# a venv that holds torch takes this disk a minute and more). Exits non-zero on any error; prints
# the seconds each stage took.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
python=${PYTHON:-python3}
torch_req=${BBH_TORCH:-torch==2.13.0}
if [ -n "${BBH_WHEEL_CHECK_DIR:-}" ]; then
  mkdir -p "$BBH_WHEEL_CHECK_DIR"
  tmp=$(cd "$BBH_WHEEL_CHECK_DIR" && pwd)
  if [ -n "$(ls -A "$tmp")" ]; then
    echo "check_wheel: BBH_WHEEL_CHECK_DIR=$tmp is not empty" >&2
    exit 1
  fi
else
  tmp=$(mktemp -d "${TMPDIR:-/tmp}/bbh-wheel.XXXXXX")
fi
# The folder bbh demo runs in and writes to: never inside the checkout.
outside=$(mktemp -d "${TMPDIR:-/tmp}/bbh-wheel-demo.XXXXXX")
cleanup() {
  rm -rf "$outside"
  if [ -z "${BBH_WHEEL_CHECK_DIR:-}" ]; then rm -rf "$tmp"; fi
}
trap cleanup EXIT
unset PYTHONPATH
t0=$SECONDS

stage() { echo "check_wheel: $1 ($((SECONDS - t0)) s)"; }

if ! "$python" -m build --outdir "$tmp/dist" "$root" >"$tmp/build.log" 2>&1; then
  cat "$tmp/build.log" >&2
  echo "check_wheel: python -m build failed" >&2
  exit 1
fi
wheels=("$tmp"/dist/*.whl)
sdists=("$tmp"/dist/*.tar.gz)
[ "${#wheels[@]}" -eq 1 ] && [ -f "${wheels[0]}" ] && [ -f "${sdists[0]}" ] || {
  echo "check_wheel: expected one wheel and one sdist in $tmp/dist" >&2
  exit 1
}
wheel=${wheels[0]}
stage "built $(basename "$wheel") and $(basename "${sdists[0]}")"

# Package data: every file under src/bbh that is not Python source must be in the wheel.
"$python" - "$root" "$wheel" <<'PY'
import subprocess
import sys
import zipfile
from pathlib import Path

root, wheel = Path(sys.argv[1]), sys.argv[2]
try:
    listed = subprocess.run(
        ["git", "-C", str(root), "ls-files", "src/bbh"],
        check=True, capture_output=True, text=True,
    ).stdout.split()
except (OSError, subprocess.CalledProcessError):
    listed = [str(p.relative_to(root)) for p in (root / "src/bbh").rglob("*") if p.is_file()]
wanted = {
    p.removeprefix("src/") for p in listed if not p.endswith((".py", ".pyc")) and "__pycache__" not in p
}
have = set(zipfile.ZipFile(wheel).namelist())
missing = sorted(wanted - have)
if missing:
    sys.exit(f"check_wheel: the wheel lacks package data: {missing}")
print(f"check_wheel: the wheel holds all {len(wanted)} package data files")
PY

"$python" -m venv "$tmp/venv"
"$tmp/venv/bin/pip" install -q --disable-pip-version-check "$torch_req" "$wheel"
stage "installed the wheel into a fresh venv"

cd "$outside"
"$tmp/venv/bin/python" - "$root" <<'PY'
import sys
from pathlib import Path

import bbh

root, where = Path(sys.argv[1]).resolve(), Path(bbh.__file__).resolve()
if root / "src" in where.parents:
    sys.exit(f"check_wheel: bbh was imported from the checkout ({where}), not the wheel")
if Path(sys.prefix).resolve() not in where.parents:
    sys.exit(f"check_wheel: bbh was imported from {where}, outside the fresh venv")
print(f"check_wheel: bbh {bbh.__version__} from {where.parent}")
PY
"$tmp/venv/bin/bbh" --version
"$tmp/venv/bin/bbh" demo --out "$outside/demo" --quiet
for f in report.md report.html; do
  [ -s "$outside/demo/$f" ] || { echo "check_wheel: bbh demo wrote no $f" >&2; exit 1; }
done
stage "bbh demo ran from the wheel"
