"""logitlens: look inside transformer language models layer by layer.

Quick start (offline, on the bundled SmolLM2-135M)::

    import logitlens
    model = logitlens.load_model()
    result = logitlens.analyze(
        model, "Why do electricians make good swimmers? Because they know the",
        targets=" current",
    )
    result.first_layer_above(0.1), result.first_layer_top1()
"""

from .analysis import analyze, parse_layers, parse_positions
from .architectures import Architecture, get_architecture, register, supported_model_types
from .errors import (
    InputError,
    LensFileError,
    LogitLensError,
    ModelLoadError,
    UnsupportedArchitectureError,
)
from .evaluation import LensEvaluation, evaluate_lenses
from .lenses import (
    EMBED,
    LENSES,
    JacobianLens,
    Lens,
    LogitLens,
    RawLens,
    TunedLens,
    Unembedding,
    get_lens,
    load_lens,
)
from .loading import LensModel, ModelInfo, load_model
from .metrics import METRICS
from .results import LensResult, TopToken
from .targets import MultiTokenTargetWarning
from .training import JacobianFitConfig, TrainingConfig, fit_jacobian_lens, train_tuned_lens

__version__ = "0.1.0"

__all__ = [
    "EMBED",
    "LENSES",
    "METRICS",
    "Architecture",
    "InputError",
    "JacobianFitConfig",
    "JacobianLens",
    "Lens",
    "LensEvaluation",
    "LensFileError",
    "LensModel",
    "LensResult",
    "LogitLens",
    "LogitLensError",
    "ModelInfo",
    "ModelLoadError",
    "MultiTokenTargetWarning",
    "RawLens",
    "TopToken",
    "TrainingConfig",
    "TunedLens",
    "Unembedding",
    "UnsupportedArchitectureError",
    "analyze",
    "evaluate_lenses",
    "fit_jacobian_lens",
    "get_architecture",
    "get_lens",
    "load_lens",
    "load_model",
    "parse_layers",
    "parse_positions",
    "register",
    "supported_model_types",
    "train_tuned_lens",
]
