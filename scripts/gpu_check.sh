#!/usr/bin/env bash
# The CUDA path in a few minutes on a GPU machine: bf16-autocast training of every stage on the
# bundled data, NCCL data parallelism under torchrun when there are several GPUs, then the
# benchmark on the GPU.
# Usage: make install && PATH=$PWD/.venv/bin:$PATH bash scripts/gpu_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export GX_ANALYTICS_ENABLED=False
python - <<'PY'
import torch
assert torch.cuda.is_available(), "no CUDA device visible to torch"
print("torch", torch.__version__, "cuda", torch.version.cuda, "devices", torch.cuda.device_count(),
      torch.cuda.get_device_name(0), "bf16", torch.cuda.is_bf16_supported())
PY
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python - "$work" <<'PY'
import sys, yaml
work = sys.argv[1]
params = yaml.safe_load(open("params.yaml"))
params["paths"] = {key: f"{work}/{value}" for key, value in params["paths"].items()}
params["registry"] |= {"tracking_uri": f"sqlite:///{work}/mlflow.db", "artifact_root": f"{work}/mlartifacts"}
for section in (params["pretrain"], params["transfer"]["train"]):
    section |= {"device": "cuda", "amp": "auto"}
params["transfer"]["strategies"] = ["scratch", "finetune", "sample_weighted"]
params["registry"]["strategy"] = "finetune"
params["curve"]["fractions"] = [0.2]
yaml.safe_dump(params, open(f"{work}/params.yaml", "w"), sort_keys=False)
PY
for stage in ingest validate preprocess pretrain; do
  python -m mtrec "$stage" --params "$work/params.yaml"
done
for strategy in scratch finetune sample_weighted; do
  python -m mtrec transfer "$strategy" --params "$work/params.yaml"
done
for stage in evaluate curve report; do
  python -m mtrec "$stage" --params "$work/params.yaml"
done
cat "$work/reports/results.md"
gpus=$(python -c "import torch; print(torch.cuda.device_count())")
if [ "$gpus" -gt 1 ]; then
  torchrun --standalone --nproc_per_node="$gpus" -m mtrec pretrain --params "$work/params.yaml"
  echo "NCCL data-parallel pretrain on $gpus GPUs: $(cat "$work/reports/pretrain.json")"
else
  echo "one GPU: NCCL data parallelism needs two (not exercised)"
fi
# mtrec's side of the benchmark on the GPU (bf16 autocast; torch-rechub's venv needs the
# network, so no peer column here): the same tables as benchmarks/README.md.
python benchmarks/run.py --quick-stages --repeats 2 --scales 1 4
cat benchmarks/README.md
