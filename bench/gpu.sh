#!/usr/bin/env bash
# The one prepared GPU check: the CUDA tests, then the embeddings benchmark in fp16 and bf16 against the
# in-process ceiling. Run from the repository root on a CUDA machine; results land in $OUT (default out/gpu).
set -euo pipefail
OUT="${OUT:-out/gpu}"
mkdir -p "$OUT"
export HF_HUB_OFFLINE=1
python -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name(0))" \
  | tee "$OUT/device.txt"
python -m pytest -q -p no:cacheprovider tests/gpu 2>&1 | tee "$OUT/tests-gpu.txt"
for dtype in float16 bfloat16; do
  CHUNKSERVE_DEVICE=cuda CHUNKSERVE_DTYPE="$dtype" python -m service.cli bench --spawn --raw \
    --concurrency 1,8,32,64,256 --requests 2000 --raw-inputs 1024 --out "$OUT/embeddings-$dtype.json" \
    2>&1 | grep -v "Loading\|Writing" | tee "$OUT/embeddings-$dtype.txt"
done
