#!/usr/bin/env bash
# Fresh machine to first result: set up, then the electricians pun on the bundled model.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/logitlens demo "$@"
