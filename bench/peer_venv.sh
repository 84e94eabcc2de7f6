#!/usr/bin/env bash
# Builds the virtualenv `vthink bench peer` runs TRL in (default .venv-trl): TRL 1.16.0 on the project's CPU torch
# 2.13.0 and transformers 5.19.0, with torchvision 0.28.0 for AutoProcessor (its CUDA-linked ops cannot load on CPU
# torch; the vLLM test venv's import hook lets its pure-torch parts import). Idempotent: a stamp file skips the work
# when this script has not changed since the last successful run.
set -euo pipefail

VENV=${1:-.venv-trl}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
HOOK="$ROOT/tests/rollout_vllm/torchvision_cpu_compat.py"
STAMP="$VENV/.vthink-installed"
if [[ -f "$STAMP" && "$STAMP" -nt "$0" && "$STAMP" -nt "$HOOK" ]]; then
    exit 0
fi

test -x "$VENV/bin/python" || python3 -m venv "$VENV"
echo '*' > "$VENV/.gitignore"
PIP=("$VENV/bin/python" -m pip install -q)
CONSTRAINTS=$(mktemp)
trap 'rm -f "$CONSTRAINTS"' EXIT
cat > "$CONSTRAINTS" <<'PINS'
torch==2.13.0+cpu
torchvision==0.28.0
transformers==5.19.0
accelerate==1.16.0
datasets==5.2.0
trl==1.16.0
av==18.1.0
PINS

"${PIP[@]}" -c "$CONSTRAINTS" torch torchvision transformers accelerate datasets trl av pillow psutil
"$VENV/bin/python" "$HOOK"  # installs itself into the venv (a .pth file runs it first)
"$VENV/bin/python" -c "import trl, torch, torchvision, transformers; \
print('trl', trl.__version__, 'torch', torch.__version__, 'transformers', transformers.__version__)"
touch "$STAMP"
