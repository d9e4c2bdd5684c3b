#!/usr/bin/env bash
# Wheels for a GPU machine without network: the packages regnet needs that such a machine's PyTorch image may
# lack (hydra-core, omegaconf, antlr4-python3-runtime, submitit, the Hydra submitit and joblib launchers), at
# exactly the versions of the environment the test suite passes in, for CPython 3.12, into .whl/ (git-ignored).
# Carry .whl/ to that machine with the checkout; benchmarks/gpu_check.sh installs them from there when Hydra is
# missing. Run here, on a machine with network:
#   bash benchmarks/gpu_wheels.sh          # versions from $PYTHON (default: .venv/bin/python, else python3)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-$(if [ -x .venv/bin/python ]; then echo .venv/bin/python; else echo python3; fi)}
PACKAGES=(hydra-core omegaconf antlr4-python3-runtime submitit hydra-submitit-launcher hydra-joblib-launcher)
PLATFORMS=(manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64)

pins=$("$PY" - "${PACKAGES[@]}" <<'PYEOF'
import sys
from importlib.metadata import PackageNotFoundError, version

missing = []
for name in sys.argv[1:]:
    try:
        print(f"{name}=={version(name)}")
    except PackageNotFoundError:
        missing.append(name)
if missing:
    sys.exit(f"gpu_wheels: {', '.join(missing)} not installed in {sys.executable}: install regnet there first "
             "(pip install -e .) or set PYTHON=<the python the suite runs with>")
PYEOF
)
tmp=$(mktemp -d .whl.tmp.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
for pin in $pins; do
  # a published wheel for CPython 3.12 on x86-64 Linux; else (antlr4-python3-runtime 4.9.3 has only an sdist)
  # one built from the sdist, which is pure Python
  "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
      "${PLATFORMS[@]/#/--platform=}" -d "$tmp" "$pin" 2>/dev/null \
    || "$PY" -m pip wheel -q --no-deps -w "$tmp" "$pin"
done
for f in "$tmp"/*; do
  case $f in
    *-none-any.whl | *-cp312-*manylinux*.whl) ;;
    *) echo "gpu_wheels: $f is not a wheel for CPython 3.12 on x86-64 Linux" >&2; exit 1 ;;
  esac
done
rm -rf .whl && mv "$tmp" .whl && trap - EXIT
echo "gpu_wheels: $(ls .whl | wc -l) wheels in .whl/:"; ls .whl
