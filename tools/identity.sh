#!/bin/bash
# Behaviour-identity check for refactors: run the same tiny shard build + stage-1 run and a
# 3-image evaluation with the code of TREE, and print the hashes of what they wrote.
#   tools/identity.sh TREE OUT        (TREE: a checkout, e.g. a `git worktree add` of the base)
# Compare two trees: diff <(tools/identity.sh /base /tmp/a) <(tools/identity.sh . /tmp/b)
# Only the manifests' code_version, summary.json's timing fields and timings.csv may differ.
# Uses this checkout's .venv ($PYTHON) and assets/ (make venv assets).
set -e
TREE=$(cd "$1" && pwd); OUT=$2; HERE=$(cd "$(dirname "$0")/.." && pwd)
PYTHON=${PYTHON:-$HERE/.venv/bin/python}
rm -rf "$OUT"; mkdir -p "$OUT"; OUT=$(cd "$OUT" && pwd)
cat > "$OUT/cfg.yaml" <<YAML
workdir: $OUT/work
seed: 0
data:
  root: $OUT/data
  synth: {images: 40, min_side: 96, max_side: 192, words_min: 2, words_max: 5, seed: 7}
shards: {out: $OUT/shards, samples_per_shard: 8, progress: false}
model: {backbone: hyperprior, N: 8, M: 8}
train: {epochs: 1, steps_per_epoch: 6, batch_size: 2, crop_size: 64, num_workers: 2,
        loader_workers: 0, checkpoint_every: 3}
ray: {num_cpus: 2}
pipeline: {stages: [data, shards, stage1]}
YAML
cd "$TREE"
if [ -f jobs/cli.py ]; then CLI=jobs.cli; else CLI=textboost.cli; fi  # before the move: textboost.cli
[ -e assets ] || ln -s "$HERE/assets" assets
run() { PYTHONPATH="$TREE" nice -n 10 "$PYTHON" -m $CLI "$@"; }
run pipeline "$OUT/cfg.yaml" > "$OUT/pipeline.txt" 2>&1
run evaluate configs/zoo/hp-mid.yaml "eval.models=[zoo:hp-low]" \
  "eval.baselines=[backbone,overlay,jpeg]" eval.limit=3 eval.workers=0 eval.register=false \
  eval.track=false eval.crops=1 eval.out="$OUT/eval" > "$OUT/evaluate.txt" 2>&1
cd "$OUT"
sha256sum shards/*.tar
grep -ho '"code_version": *"[^"]*"' shards/train-000000.json
PYTHONPATH="$TREE" "$PYTHON" - "$OUT/work/checkpoints/stage1.pt" <<'PY'
import hashlib, sys, torch
sd = torch.load(sys.argv[1], map_location="cpu", weights_only=False)["state_dict"]
h = hashlib.sha256()
for k in sorted(sd):
    h.update(k.encode()); h.update(sd[k].cpu().contiguous().numpy().tobytes())
print("stage-1 state_dict", h.hexdigest())
PY
(cd eval && find . -type f \( -name "*.csv" -o -name "*.json" -o -name "*.png" \) | sort | xargs sha256sum)
