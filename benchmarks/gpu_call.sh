#!/usr/bin/env bash
# Everything this session needs from one GPU call (issues 22 and 23), in the order that matters most, each part under
# its own time budget so that a capped call still returns what it measured. Run on the device tool with
# `carry: [".whl"]` (wheels: benchmarks/results/extract_gpu.md) and `timeout_s` 590:
#     bash benchmarks/gpu_call.sh            # writes $OUT/{gpu_test.txt,browse_*.json,extract_gpu.md,log.txt}
# Parts: (1) tests/interp/test_browser_gpu.py (GPU collector == CPU collector, exact), ~40 s; (2) the latent-browser
# build sweep at d_sae 512 (stream vs dense, 2.5M and 10M tokens), ~100 s; (3) extract_gpu.py on Pythia-1.4B and the
# Llama-8B shape until 560 s have passed; EXTRACT_MODELS overrides the models.
set -u
T0=$SECONDS
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false TQDM_DISABLE=1 \
  HF_DATASETS_DISABLE_PROGRESS_BARS=1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python3 -c "import torch, triton, pyarrow, xxhash; print('torch', torch.__version__, 'triton', triton.__version__, \
'pyarrow', pyarrow.__version__, 'xxhash', xxhash.VERSION)"
# (1) the GPU equality test: Triton compiled, not interpreted (tests/conftest.py defaults TRITON_INTERPRET to 1)
TRITON_INTERPRET=0 timeout 120 python3 -m pytest -p no:cacheprovider -o addopts="" --import-mode=importlib -m gpu \
  -q tests/interp/test_browser_gpu.py 2>&1 | tail -15 | tee "$OUT/gpu_test.txt"
# (2) browser build: streaming collector vs the dense torch loop on the GPU
timeout 150 python3 benchmarks/browse_build.py --device cuda --tokens 2500000 10000000 --methods stream dense site \
  --root /dev/shm/browse --budget-s 110 --out-json "$OUT/browse_build_gpu.json" 2>&1 | tail -20
rm -rf /dev/shm/browse
# (3) extraction at model scale
LEFT=$(( 560 - (SECONDS - T0) ))
python3 benchmarks/extract_gpu.py --model ${EXTRACT_MODELS:-pythia-1.4b llama-8b} --budget-s $(( LEFT - 90 )) \
  --out "$OUT/extract_gpu.md" 2>&1 | tee "$OUT/log.txt" | grep -v "^  " | tail -60
