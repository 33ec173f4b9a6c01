#!/usr/bin/env bash
# Every benchmark plus a paper-scale MNIST training, on one CUDA GPU, within 10 minutes.
#
#   bash benchmarks/gpu.sh                                   # CUDA, paper sizes
#   DATA_DIR=/data bash benchmarks/gpu.sh                    # where mnist/ lives
#   DEVICE=cpu SCALE=tiny ALLOW_BUSY=1 OUT=/tmp/b bash benchmarks/gpu.sh   # smoke run (a test)
#
# Environment: DEVICE (default cuda), SCALE (paper | tiny), OUT (default
# benchmarks/results/gpu), DATA_DIR (default $BBH_DATA, else ../shared/data, else shared/data
# when that has mnist/), ALLOW_BUSY=1 to measure on a busy machine (the records say busy),
# EPOCHS of the MNIST training (default 5). Each benchmark runs under its own time limit (they
# sum to 9.5 minutes) and writes $OUT/<name>.json (and a .png where it draws one); step_time,
# bbh_scaling and predict rewrite their record after every case ("complete": false until the
# end), so one cut short by its limit keeps what it measured. A failure of one does not stop
# the others; the exit status is non-zero if any failed. At SCALE=tiny the method and
# configuration lists are cut to a few, so that the test suite can run the whole flow.
set -uo pipefail
cd "$(dirname "$0")/.."

DEVICE="${DEVICE:-cuda}"
SCALE="${SCALE:-paper}"
OUT="${OUT:-benchmarks/results/gpu}"
if [ -z "${DATA_DIR:-}" ]; then
  DATA_DIR="${BBH_DATA:-../shared/data}"
  [ -d "$DATA_DIR/mnist" ] || [ ! -d shared/data/mnist ] || DATA_DIR=shared/data
fi
EPOCHS="${EPOCHS:-5}"
PY="${PYTHON:-python}"
mkdir -p "$OUT"

common=(--device "$DEVICE" --scale "$SCALE")
[ "${ALLOW_BUSY:-0}" = "1" ] && common+=(--allow-busy)
if [ "$SCALE" = "tiny" ]; then
  common+=(--repeats 1 --warmup 0 --threads 1)
  methods=(--methods mc_dropout "bbh recommended")
  configs=(--configs "bbh recommended" --samples 1)
  predict_args=(--samples 4 --nets lenet)
  sf_args=(--samples 2)
  mnist_args=(--tiny-steps 2 --eval-samples 2)
  limits=(600 600 600 600 600 600)
else
  methods=()
  configs=()
  predict_args=(--repeats 3 --warmup 1 --nets lenet cifar_resnet resnet18)
  sf_args=()
  mnist_args=(--data-dir "$DATA_DIR" --epochs "$EPOCHS")
  limits=(170 150 90 30 40 90)   # seconds: step_time scaling predict external sampled mnist
fi

failed=()
run() {  # run NAME LIMIT_SECONDS ARGS...
  local name="$1" limit="$2"
  shift 2
  echo "== $name (limit ${limit}s)" >&2
  local start=$SECONDS
  if ! timeout "$limit" "$PY" "$@"; then
    echo "!! $name failed or ran past ${limit}s" >&2
    failed+=("$name")
  fi
  echo "   $name took $((SECONDS - start))s" >&2
}

if [ "$DEVICE" != "cpu" ] && command -v nvidia-smi >/dev/null; then
  nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1
fi

step_nets=()
[ "$SCALE" = "tiny" ] && step_nets=(--nets lenet resnet18)
run step_time "${limits[0]}" benchmarks/step_time.py "${common[@]}" "${methods[@]}" \
  "${step_nets[@]}" --out "$OUT/step_time.json"
run bbh_scaling "${limits[1]}" benchmarks/bbh_scaling.py "${common[@]}" "${configs[@]}" \
  --out "$OUT/bbh_scaling.json"
run predict "${limits[2]}" benchmarks/predict.py "${common[@]}" "${methods[@]}" \
  "${predict_args[@]}" --out "$OUT/predict.json"
run external "${limits[3]}" benchmarks/external.py "${common[@]}" --out "$OUT/external.json"
run sampled_forward "${limits[4]}" benchmarks/sampled_forward.py "${common[@]}" "${sf_args[@]}" \
  --out "$OUT/sampled_forward.json"
if [ "$SCALE" = "tiny" ] || [ -d "$DATA_DIR/mnist" ]; then
  run mnist_training "${limits[5]}" benchmarks/mnist_training.py "${common[@]}" \
    "${mnist_args[@]}" --out "$OUT/mnist_training.json"
else
  echo "!! mnist_training: no MNIST under DATA_DIR=$DATA_DIR (set DATA_DIR)" >&2
  failed+=(mnist_training)
fi

if [ ${#failed[@]} -gt 0 ]; then
  echo "failed: ${failed[*]}" >&2
  exit 1
fi
echo "all benchmarks written to $OUT" >&2
