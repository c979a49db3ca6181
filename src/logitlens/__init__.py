"""logitlens: look inside transformer language models layer by layer.

Quick start (offline, on the bundled SmolLM2-135M)::

    import logitlens
    model = logitlens.load_model()
    result = logitlens.analyze(
        model, "Why do electricians make good swimmers? Because they know the",
        targets=" current",
    )
    result.first_layer_above(0.1), result.first_layer_top1()

Names are imported on first use (PEP 562), so ``import logitlens.errors`` and the
command line's ``--help`` do not pay for torch, transformers and nnsight.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.3.0.dev0"

_EXPORTS: dict[str, str] = {
    "analyze": "analysis",
    "parse_layers": "options",
    "parse_positions": "options",
    "Attribution": "attribution",
    "attribute": "analysis",
    "Architecture": "architectures",
    "Sublayers": "architectures",
    "get_architecture": "architectures",
    "register": "architectures",
    "supported_model_types": "architectures",
    "InputError": "errors",
    "LensFileError": "errors",
    "LogitLensError": "errors",
    "ModelLoadError": "errors",
    "OutputError": "errors",
    "UnsupportedArchitectureError": "errors",
    "LensEvaluation": "evaluation",
    "GenerationResult": "generation",
    "generate_lens": "generation",
    "evaluate_lenses": "evaluation",
    "EMBED": "lenses",
    "LENSES": "lenses",
    "Lens": "lenses",
    "LogitLens": "lenses",
    "RawLens": "lenses",
    "TunedLens": "lenses",
    "JacobianLens": "lenses",
    "load_lens": "lenses",
    "Unembedding": "lenses",
    "get_lens": "lenses",
    "LensModel": "loading",
    "ModelInfo": "loading",
    "load_model": "loading",
    "load_tokenizer": "loading",
    "METRICS": "metrics",
    "show": "pictures.notebook",
    "LensResult": "results",
    "TopToken": "results",
    "MultiTokenTargetWarning": "targets",
    "TrainingConfig": "training",
    "train_tuned_lens": "training",
    "JacobianFitConfig": "training",
    "fit_jacobian_lens": "training",
}
"""Public name -> submodule that defines it."""

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'logitlens' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
