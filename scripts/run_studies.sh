#!/usr/bin/env bash
# The studies of docs/explanation/findings.md: the bundled dataset on the bundled models, offline.
# Writes runs/studies/<model>/ (Parquet + manifest; rerunning resumes), the summaries,
# the comparison and docs/images/study_*.png. Each prompt is also continued greedily
# (GENERATE tokens, default 3) for what the model actually says.
# Usage: bash scripts/run_studies.sh [MODELS...]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
GENERATE=${GENERATE:-3}
models=("$@")
[ ${#models[@]} -gt 0 ] || models=(smollm2 gemma3-270m)
dirs=()
for model in "${models[@]}"; do
  out="runs/studies/$model"
  start=$(date +%s)
  "$PY" -m logitlens study --model "$model" --out "$out" --generate "$GENERATE" --no-progress > "runs/studies/$model.txt"
  echo "$model: $(( $(date +%s) - start )) s" | tee -a runs/studies/timings.txt
  "$PY" -m logitlens study summary "$out" --json > "runs/studies/$model.json"
  "$PY" -m logitlens study summary "$out" --plot "docs/images/study_${model}_trajectories.png" \
    --depth-plot "docs/images/study_${model}_depths.png" --report "runs/studies/$model.html"
  dirs+=("$out")
done
"$PY" -m logitlens study compare "${dirs[@]}" --plot docs/images/study_compare.png
