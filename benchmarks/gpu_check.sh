#!/usr/bin/env bash
# Check regnet on a GPU in one command (≤ 8 minutes on one H200, nothing fetched; docs/gpu.md):
#   (a) pytest -m gpu (tests/test_gpu.py)   (b) benchmarks/throughput.py   (c) benchmarks/decision_planes.py --models 30
# and write OUTDIR/gpu_check.json (every number, device, versions, date, commit, each test's outcome) and
# OUTDIR/gpu_check.md (the table against the targets). Exits 1 if a test or a benchmark failed.
#   bash benchmarks/gpu_check.sh OUTDIR               # on the GPU machine
#   bash benchmarks/gpu_check.sh --cpu-smoke OUTDIR   # the same script on the CPU at tiny sizes (CI runs it)
# Without Hydra installed (a machine without network), it installs the wheels carried in .whl/
# (made by benchmarks/gpu_wheels.sh). PYTHON picks the interpreter (default python3).
set -uo pipefail
usage="usage: bash benchmarks/gpu_check.sh [--cpu-smoke] OUTDIR"
smoke=0
if [ "${1:-}" = "--cpu-smoke" ]; then smoke=1; shift; fi
[ $# -eq 1 ] || { echo "$usage" >&2; exit 2; }
mkdir -p "$1" || exit 2
out=$(cd "$1" && pwd)
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

if ! "$PY" -c "import hydra, omegaconf, submitit, hydra_plugins.hydra_joblib_launcher" 2>/dev/null; then
  compgen -G ".whl/*.whl" >/dev/null || {
    echo "gpu_check: hydra-core is not installed and .whl/ holds no wheels: run benchmarks/gpu_wheels.sh where" \
         "there is network, and carry .whl/ with the checkout" >&2; exit 2; }
  site=${TMPDIR:-/tmp}/regnet-site
  "$PY" -m pip install -q --no-index --no-deps --no-compile --upgrade --target "$site" .whl/*.whl || exit 2
  export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" MPLBACKEND=Agg PYTHONUNBUFFERED=1
export REGNET_COMMIT=${REGNET_COMMIT:-$(git rev-parse HEAD 2>/dev/null || echo unknown)}

if [ $smoke = 1 ]; then
  device=cpu quick=--quick
  export CUDA_VISIBLE_DEVICES=""  # the GPU tests skip, even on a machine with one
else
  device=cuda quick=
fi
: >"$out/steps.tsv"
step() {  # step NAME TIMEOUT_S COMMAND...: run it, log to OUTDIR/NAME.log, record its exit status and seconds
  local name=$1 limit=$2 start=$SECONDS rc
  shift 2
  [ $smoke = 0 ] || limit=600  # the limits keep a GPU run inside its 8 minutes; a busy CPU may need longer
  echo "== $name: $*"
  timeout --kill-after=10 "$limit" "$@" 2>&1 | tee "$out/$name.log"
  rc=${PIPESTATUS[0]}
  printf '%s\t%s\t%s\n' "$name" "$rc" "$((SECONDS - start))" >>"$out/steps.tsv"
}
step tests 150 "$PY" -m pytest -q -rs -p no:cacheprovider -m gpu tests/test_gpu.py --junitxml="$out/tests.xml"
step throughput 300 "$PY" benchmarks/throughput.py --device "$device" $quick --out "$out/throughput.json"
step decision_planes 90 "$PY" benchmarks/decision_planes.py --models 30 --device "$device" $quick \
  --json "$out/decision_planes.json"
"$PY" benchmarks/gpu_report.py "$out" $([ $smoke = 1 ] && echo --cpu-smoke)
