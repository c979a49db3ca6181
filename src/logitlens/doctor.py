"""``run_doctor``: does logitlens read a model the way the model reads itself?

Run it after registering an architecture, and before a long study on a new model. Each
check compares what :func:`~logitlens.analysis.analyze` reports with numbers taken
outside logitlens's trace, from a plain forward pass of the PyTorch module (with
hooks where a hidden state is needed):

- ``adapter``: the registry entry's paths name modules that exist;
- ``last layer``: the logit lens at the last layer equals the model's own
  next-token distribution (final norm, extra projection, unembedding, soft-cap);
- ``padding``: a left-padded batch equals running each prompt alone (position ids);
- ``final norm``: at a middle layer, the logit lens equals final norm -> unembedding
  applied by hand to that layer's output, and differs from the raw lens;
- ``remote``: NDIF's request round trip (``remote="local"``) gives the local numbers;
- ``sub-layers``: the attention, MLP and head paths rebuild the residual stream, and
  ``resid_mid`` is what it says;
- ``targets`` (with a file): every target and alternative is one token.

Each check is one function, ``check_*(exam) -> Check``, listed in :data:`CHECKS`; what
they share (the model, its tolerance, a plain forward pass, the diagnoses that name the
path to fix) is the examination object they receive.

A failed check says what to fix, e.g. the path to correct in ``register(...)``.

Example:
    >>> report = run_doctor(load_model("gpt2"))
    >>> report.passed
    True
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .analysis import analyze
from .architectures import resolve
from .errors import InputError, LogitLensError, UnsupportedArchitectureError
from .lenses.base import Unembedding
from .loading import LensModel
from .residuals import layer_output
from .results import LensResult
from .studies.dataset import check_words, load_items, load_pairs

PROMPTS = (
    "Why do electricians make good swimmers? Because they know the",
    "The capital of France is",
    "Hello",
)
"""Three prompts of different lengths, so the batch is really left-padded."""

_K = 5  # top tokens compared per position


@dataclass(frozen=True)
class Check:
    """One row of the doctor's table: what was checked, the outcome, and what to fix."""

    name: str
    passed: bool
    detail: str
    fix: str = ""


@dataclass
class DoctorReport:
    """The checks run on one model; ``passed`` when every one passed."""

    model_name: str
    model_type: str
    checks: list[Check] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(check.passed for check in self.checks)

    @property
    def failures(self) -> list[Check]:
        return [check for check in self.checks if not check.passed]

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model_name,
            "model_type": self.model_type,
            "passed": self.passed,
            "checks": [dataclasses.asdict(check) for check in self.checks],
        }


def run_doctor(model: LensModel, targets_file: str | Path | None = None) -> DoctorReport:
    """Run every check on ``model`` (loaded here, not on NDIF); never raises for a failure.

    ``targets_file`` is a study items file (:func:`~logitlens.studies.load_items`) or a
    ``compare`` JSONL of ``{"prompt": ..., "target": ...}`` lines; its words are checked
    against the model's tokenizer. A file that cannot be read raises ``InputError``
    before any check runs.
    """
    if not isinstance(model, LensModel):
        raise InputError(
            f"run_doctor() needs a model from logitlens.load_model(), not {type(model).__name__}."
        )
    if model.remote is True:
        raise InputError(
            "The doctor compares logitlens with the model's own forward pass, so it needs "
            "the weights here: load the model without remote=True (--remote)."
        )
    words = None if targets_file is None else target_words(Path(targets_file))
    exam = _Exam(model)
    checks = list(CHECKS)
    if words is not None:
        checks.append(("targets", lambda exam: check_targets(exam, *words)))
    report = DoctorReport(model.name, model.config.model_type)
    crashes: dict[str, str] = {}  # error -> the first check it stopped
    for name, run in checks:
        try:
            report.checks.append(run(exam))
        except Exception as error:  # a check that crashes is a failed check, with its reason
            reason = _one_line(error)
            if reason in crashes:
                report.checks.append(Check(name, False, f"the same error as {crashes[reason]!r}"))
                continue
            crashes[reason] = name
            earlier = report.failures
            fix = (
                f"Probably the same cause as {earlier[0].name!r}: fix that first."
                if earlier
                else exam.crash_fix(error)
            )
            report.checks.append(Check(name, False, reason, fix))
    return report


def _one_line(error: BaseException) -> str:
    return f"{type(error).__name__}: {' '.join(str(error).split())[:300]}"


def target_words(path: Path) -> tuple[str, list[tuple[str, str, str]], int]:
    """(file name, ``(where, field, word)`` triples, item count) of a targets file.

    A study items file, or else a ``compare`` JSONL; an unreadable file raises the
    items reader's ``InputError``.
    """
    try:
        items = load_items(path)
    except InputError as items_error:
        if path.suffix.lower() != ".jsonl":
            raise
        try:
            pairs = load_pairs(path)
        except InputError:
            raise items_error from None
        words = [
            (f"line {number}", name, word)
            for number, (_, *pair_words) in enumerate(pairs, start=1)
            for name, word in zip(("target", "alternative"), pair_words, strict=True)
            if isinstance(word, str)  # a token id is one token by definition
        ]
        return path.name, words, len(pairs)
    words = [
        (item.id, name, text)
        for item in items
        for name in ("target", "alternative")
        if (text := getattr(item, name)) is not None
    ]
    return path.name, words, len(items)


class _Exam:
    """The model under examination and the measurements the checks share."""

    def __init__(self, model: LensModel) -> None:
        self.model = model
        self.module = model.module
        self.architecture = model.architecture
        floating = next(self.module.parameters()).dtype
        self.tolerance = 1e-4 if floating == torch.float32 else 2e-2
        self.device = next(self.module.parameters()).device
        self.middle = (model.n_layers - 1) // 2

    def crash_fix(self, error: Exception) -> str:
        """What to do about a check that raised ``error``."""
        if isinstance(error, LogitLensError):
            return "Follow the error's own advice."
        return (
            f"{self.register_fix('the paths')} A crash often means a path names the wrong module."
        )

    def paths(self) -> list[tuple[str, str | None]]:
        architecture = self.architecture
        return [
            ("layers", architecture.layers),
            ("final_norm", architecture.final_norm),
            ("unembed", architecture.unembed),
            *(("pre_unembed", path) for path in architecture.pre_unembed),
        ]

    def register_fix(self, what: str) -> str:
        return (
            f"Correct {what} in register(Architecture(model_types=("
            f"{self.model.config.model_type!r},), ...)): paths are dotted attributes from "
            f"the {type(self.module).__name__} module."
        )

    def options(self, **options: Any) -> dict[str, Any]:
        return {"positions": "all", "metrics": ["topk"], "k": _K, "progress": False, **options}

    def ids(self, prompt: str) -> torch.Tensor:
        ids = self.model.tokenizer(prompt, add_special_tokens=True)["input_ids"]
        return torch.tensor([ids], device=self.device)

    def forward(self, prompt: str) -> torch.Tensor:
        """The model's own logits ``[1, seq, vocab]``: a plain forward, one prompt, no padding."""
        with torch.no_grad():
            return self.module(input_ids=self.ids(prompt), use_cache=False).logits

    def own_logprobs(self, prompt: str) -> torch.Tensor:
        return self.forward(prompt)[0].float().log_softmax(-1)

    def close(self, first: torch.Tensor, second: torch.Tensor) -> bool:
        if first.shape != second.shape:
            return False
        scale = second.float().abs().max().clamp(min=1.0)
        return bool((first.float() - second.float()).abs().max() <= self.tolerance * scale)

    def head_diagnosis(self) -> tuple[str, str]:
        """Which part of the adapter makes the last layer's lens differ: (detail, fix)."""
        architecture = self.architecture
        unembedding = Unembedding(self.module, architecture, self.model.config)
        watched = {"last": resolve(self.module, architecture.layers)[-1]}
        if unembedding.unembed is not None:
            watched["unembed"] = unembedding.unembed
        with _capture(watched) as seen:
            logits = self.forward(PROMPTS[1])
        if "unembed" not in seen or seen["unembed"][1].shape != logits.shape:
            return self.unembed_diagnosis(logits)
        unembed_input, unembed_output = seen["unembed"]
        with torch.no_grad():
            capped = unembedding.cap(unembed_output)
        if not self.close(capped, logits):
            if self.close(unembed_output, logits):
                return (
                    f"the adapter soft-caps the logits ({architecture.logit_softcap!r}), "
                    "the model does not",
                    self.register_fix("logit_softcap (None)"),
                )
            field_name = _softcap_field(self.model.config, unembed_output, logits, self.close)
            if field_name is not None:
                return (
                    f"the model soft-caps its logits with config.{field_name}, the adapter "
                    "does not",
                    self.register_fix(f"logit_softcap ({field_name!r})"),
                )
            return self.unembed_diagnosis(logits)
        norm_input = seen["last"][1]
        with torch.no_grad():
            hidden = unembedding.norm(norm_input)
            for module in unembedding.pre_unembed:
                hidden = module(hidden)
        if self.close(hidden, unembed_input):
            return (
                "the adapter's final norm and unembedding reproduce the model's head on a "
                "plain forward pass, so the difference comes from the trace",
                "Rerun with --debug and report the model and the doctor's output as a bug.",
            )
        pre = [resolve(self.module, path) for path in architecture.pre_unembed]
        feeds = [module for module in pre if module is not None][:1] or [unembedding.unembed]
        with _capture({"feed": feeds[0]}) as fed:
            self.forward(PROMPTS[1])
        real_norm = self.module_giving(fed["feed"][0])
        if real_norm not in (None, architecture.final_norm) and unembedding.final_norm:
            with _capture({"step": resolve(self.module, real_norm)}) as step:
                self.forward(PROMPTS[1])
            with torch.no_grad():
                normed = unembedding.norm(norm_input)
            if self.close(normed, step["step"][0]):
                return (
                    f"the model applies {real_norm!r} between the final norm and the "
                    "unembedding, the adapter does not",
                    f"Fix register(...): pre_unembed=({real_norm!r},).",
                )
        if real_norm is not None and real_norm == architecture.final_norm:
            return (
                f"the final norm {real_norm!r} is right, but the last layer's output "
                f"(layers {architecture.layers!r}) is not what it normalises",
                self.register_fix(f"layers ({architecture.layers!r})"),
            )
        now = type(unembedding.final_norm).__name__ if unembedding.final_norm else "nothing"
        found = f"; the model's final norm is {real_norm!r}" if real_norm else ""
        return (
            f"final_norm path {architecture.final_norm!r} resolves to the wrong module "
            f"({now}){found}",
            f"Fix register(...): final_norm={real_norm!r}."
            if real_norm
            else self.register_fix(f"final_norm ({architecture.final_norm!r})"),
        )

    def unembed_diagnosis(self, logits: torch.Tensor) -> tuple[str, str]:
        real = self.module_giving(logits)
        unembed = resolve(self.module, self.architecture.unembed)
        found = f"; the logits come from {real!r}" if real else ""
        return (
            f"unembed path {self.architecture.unembed!r} resolves to "
            f"{type(unembed).__name__ if unembed is not None else 'nothing'}, which does not "
            f"produce the model's logits{found}",
            f"Fix register(...): unembed={real!r}."
            if real
            else self.register_fix(f"unembed ({self.architecture.unembed!r})"),
        )

    def module_giving(self, wanted: torch.Tensor) -> str | None:
        """The path of the innermost module whose output is ``wanted`` on ``PROMPTS[1]``."""
        found: list[str] = []

        def hook(name: str) -> Callable[..., None]:
            def compare(module: Any, args: Any, output: Any) -> None:
                output = layer_output(output)
                if isinstance(output, torch.Tensor) and self.close(output, wanted):
                    found.append(name)

            return compare

        leaves = [
            (name, module)
            for name, module in self.module.named_modules()
            if name and not any(True for _ in module.children())
        ]
        handles = [module.register_forward_hook(hook(name)) for name, module in leaves]
        try:
            self.forward(PROMPTS[1])
        finally:
            for handle in handles:
                handle.remove()
        return found[-1] if found else None


# ----- the checks: each takes the examination and returns a Check (or raises) ----------


def check_adapter(exam: _Exam) -> Check:
    """The registry entry's paths name modules that exist and have the right shape."""
    problems = [
        problem
        for path_name, path in exam.paths()
        if (problem := _path_problem(exam.module, path_name, path))
    ]
    layers = resolve(exam.module, exam.architecture.layers)
    if layers is not None and not (hasattr(layers, "__len__") and len(layers) > 0):
        problems.append(
            f"layers path {exam.architecture.layers!r} resolves to a "
            f"{type(layers).__name__}, not the list of decoder layers"
        )
    unembed = resolve(exam.module, exam.architecture.unembed)
    vocab = exam.model.config.get_text_config().vocab_size
    weight = getattr(unembed, "weight", None)
    if unembed is not None and (weight is None or weight.shape[0] < vocab):
        shape = None if weight is None else tuple(weight.shape)
        problems.append(
            f"unembed path {exam.architecture.unembed!r} resolves to a "
            f"{type(unembed).__name__} with weight {shape}, not [vocab {vocab}, d_model]"
        )
    if problems:
        return Check("adapter", False, "; ".join(problems), exam.register_fix("the paths named"))
    return Check(
        "adapter",
        True,
        f"{exam.architecture.name!r}: {exam.model.n_layers} layers at "
        f"{exam.architecture.layers!r}, final norm {exam.architecture.final_norm!r}, "
        f"unembedding {exam.architecture.unembed!r}",
    )


def check_last_layer(exam: _Exam) -> Check:
    """The logit lens at the last layer equals the model's own next-token distribution."""
    try:
        gaps = [
            _gap(analyze(exam.model, prompt, **exam.options(layers=[-1])), 0, 0, own)
            for prompt, own in zip(PROMPTS, map(exam.own_logprobs, PROMPTS), strict=True)
        ]
    except Exception as error:  # a wrong module often crashes: still say which one
        failure = f"the last layer's logit lens fails ({_one_line(error)})"
    else:
        softcap = Unembedding(exam.module, exam.architecture, exam.model.config).softcap
        capped = f", soft-cap {softcap:g} included" if softcap else ""
        if max(gaps) <= exam.tolerance:
            return Check(
                "last layer",
                True,
                f"the logit lens at the last layer equals the model's own logits{capped} "
                f"(max |dp| {max(gaps):.1e})",
            )
        failure = (
            f"the last layer's logit lens differs from the model's own logits "
            f"(max |dp| {max(gaps):.2g})"
        )
    detail, fix = exam.head_diagnosis()
    return Check("last layer", False, f"{failure}: {detail}", fix)


def check_padding(exam: _Exam) -> Check:
    """A left-padded batch equals running each prompt alone (position ids)."""
    options = exam.options(layers=[0, exam.middle, -1])
    together = analyze(exam.model, list(PROMPTS), batch_size=len(PROMPTS), **options)
    gap = max(
        _probability_gap(together.subset([p]), analyze(exam.model, prompt, **options))
        for p, prompt in enumerate(PROMPTS)
    )
    if gap <= exam.tolerance:
        return Check(
            "padding",
            True,
            f"a left-padded batch of {len(PROMPTS)} prompts equals running each alone "
            f"(max |dp| {gap:.1e})",
        )
    return Check(
        "padding",
        False,
        f"a left-padded batch differs from running each prompt alone (max |dp| {gap:.2g}): "
        "the model does not take the padding into account (position ids or attention mask)",
        "Until the model computes positions from the attention mask, analyse one prompt "
        "per batch: analyze(..., batch_size=1) (--batch-size 1).",
    )


def check_final_norm(exam: _Exam) -> Check:
    """At a middle layer, the logit lens equals final norm -> unembedding by hand, not raw."""
    prompt = PROMPTS[0]
    layer_module = resolve(exam.module, exam.architecture.layers)[exam.middle]
    with _capture({"hidden": layer_module}) as seen:
        exam.forward(prompt)
    hidden = seen["hidden"][1]
    unembedding = Unembedding(exam.module, exam.architecture, exam.model.config)
    with torch.no_grad():
        by_hand = unembedding.logits(unembedding.norm(hidden[0])).float().log_softmax(-1)
    options = exam.options(layers=[exam.middle])
    lens_gap = _gap(analyze(exam.model, prompt, **options), 0, 0, by_hand)
    raw_gap = _gap(analyze(exam.model, prompt, lens="raw", **options), 0, 0, by_hand)
    where = f"at layer {exam.middle}"
    if lens_gap > exam.tolerance:
        return Check(
            "final norm",
            False,
            f"{where}, the logit lens differs from final norm -> unembedding applied by "
            f"hand to the layer's output (max |dp| {lens_gap:.2g})",
            exam.register_fix(f"layers ({exam.architecture.layers!r})"),
        )
    missing = _path_problem(exam.module, "final_norm", exam.architecture.final_norm)
    if missing:
        return Check(
            "final norm",
            False,
            f"{where}, the logit lens is the raw lens: {missing}",
            exam.register_fix(f"final_norm ({exam.architecture.final_norm!r})"),
        )
    if unembedding.final_norm is None:
        return Check(
            "final norm",
            True,
            f"{where}, the logit lens equals the unembedding applied by hand (max |dp| "
            f"{lens_gap:.1e}); this model has no final norm, so it is the raw lens",
        )
    if raw_gap <= exam.tolerance:
        return Check(
            "final norm",
            False,
            f"{where}, the logit lens equals the raw lens: the final norm "
            f"{exam.architecture.final_norm!r} changes nothing",
            exam.register_fix(f"final_norm ({exam.architecture.final_norm!r})"),
        )
    return Check(
        "final norm",
        True,
        f"{where}, the logit lens equals final norm -> unembedding by hand (max |dp| "
        f"{lens_gap:.1e}) and differs from the raw lens (max |dp| {raw_gap:.2g})",
    )


def check_remote(exam: _Exam) -> Check:
    """NDIF's request round trip (``remote="local"``) gives the local numbers."""
    import nnsight

    import logitlens

    nnsight.register(logitlens)  # as load_model(remote=...) does: our code travels by value
    simulated = dataclasses.replace(exam.model, remote="local")
    options = exam.options(layers=[0, exam.middle, -1])
    local = analyze(exam.model, list(PROMPTS), **options)
    remote = analyze(simulated, list(PROMPTS), **options)
    gap = _probability_gap(remote, local)
    if gap <= exam.tolerance:
        return Check(
            "remote",
            True,
            f'remote="local" (NDIF\'s request round trip, in process) equals local '
            f"(max |dp| {gap:.1e})",
        )
    return Check(
        "remote",
        False,
        f'remote="local" differs from local (max |dp| {gap:.2g})',
        "Something in the adapter does not survive NDIF's serialization: register the "
        "Architecture at import time of a module NDIF can import, and rerun with --debug.",
    )


def check_sublayers(exam: _Exam) -> Check:
    """Attention, MLP and head paths rebuild the residual; resid_mid is what it says."""
    from .analysis import attribute
    from .sublayers import is_parallel, sublayers_of

    entry = exam.architecture.sublayers
    if entry is None:
        return Check(
            "sub-layers",
            True,
            "no Sublayers entry: attribute() and site='mid' are unavailable (optional)",
        )
    try:
        sublayers_of(exam.model)
    except UnsupportedArchitectureError as error:  # post-LN: nothing to check
        return Check("sub-layers", True, str(error).split(":")[0] + ": no sub-layer parts")
    prompt = PROMPTS[0]
    top = int(exam.forward(prompt)[0, -1].argmax())
    # attribute() itself refuses paths whose parts do not rebuild the residual stream;
    # whether its final norm and unembedding are right is the "last layer" check.
    result = attribute(exam.model, prompt, target=top, heads=True, positions="all")
    parts = result.target
    gap = float(abs(parts.total() - parts.logit).max())
    heads_gap = float(abs(parts.heads.sum(2) + parts.head_bias - parts.attention).max())
    if max(gap, heads_gap) > exam.tolerance * max(1.0, float(abs(parts.logit).max())):
        return Check(
            "sub-layers",
            False,
            f"the parts sum to the model's own logit within {gap:.2g} and the heads to "
            f"their attention part within {heads_gap:.2g}",
            exam.register_fix(
                f"Sublayers(attention_out={entry.attention_out!r}, "
                f"mlp_out={entry.mlp_out!r}, heads_in={entry.heads_in!r})"
            ),
        )
    detail = (
        f"attention {entry.attention_out!r}, MLP {entry.mlp_out!r} and "
        f"{result.n_heads} heads at {entry.heads_in!r} sum to the model's own logit "
        f"(max |d| {max(gap, heads_gap):.1e}); "
    )
    if is_parallel(exam.model):
        return Check("sub-layers", True, detail + "a parallel block: no resid_mid")
    mid_gap = _resid_mid_gap(exam, prompt)
    if mid_gap > exam.tolerance:
        return Check(
            "sub-layers",
            False,
            f"the input of {entry.resid_mid!r} is not the layer input plus its attention "
            f"output (max |d| {mid_gap:.2g})",
            exam.register_fix(f"Sublayers(resid_mid={entry.resid_mid!r})"),
        )
    return Check("sub-layers", True, detail + f"resid_mid is the input of {entry.resid_mid!r}")


def _resid_mid_gap(exam: _Exam, prompt: str) -> float:
    """Largest |resid_mid - (layer input + attention part)| in the middle layer."""
    entry = exam.architecture.sublayers
    layer = resolve(exam.module, exam.architecture.layers)[exam.middle]
    seen: dict[str, torch.Tensor] = {}

    def keep(name: str, value: Any) -> None:
        tensor = layer_output(value)
        seen[name] = tensor.detach().float().reshape(-1, tensor.shape[-1])

    handles = [
        layer.register_forward_pre_hook(
            lambda _m, args, kwargs: keep("input", args[0] if args else kwargs["hidden_states"]),
            with_kwargs=True,
        ),
        resolve(layer, entry.attention_out).register_forward_hook(
            lambda _m, _args, output: keep("attention", output)
        ),
        resolve(layer, entry.resid_mid).register_forward_pre_hook(
            lambda _m, args: keep("mid", args[0])
        ),
    ]
    try:
        exam.forward(prompt)
    finally:
        for handle in handles:
            handle.remove()
    rebuilt = seen["input"] + seen["attention"]
    if rebuilt.shape != seen["mid"].shape:
        return float("inf")
    return float((rebuilt - seen["mid"]).abs().max())


def check_targets(
    exam: _Exam, label: str, words: list[tuple[str, str, str]], n_items: int
) -> Check:
    """Every target and alternative of a targets file is one token."""
    report = check_words(words, exam.model.tokenizer, exam.model.name, n_items)
    if report.ok:
        return Check(
            "targets",
            True,
            f"all {report.n_words} targets and alternatives of {label} are single tokens",
        )
    shown = ", ".join(
        f"{word.text!r} ({word.item_id} {word.field}: {' | '.join(map(repr, word.tokens))})"
        for word in report.multi_token[:3]
    )
    more = len(report.multi_token) - 3
    return Check(
        "targets",
        False,
        f"{len(report.multi_token)} of {report.n_words} words of {label} are several "
        f"tokens: {shown}" + (f" and {more} more" if more > 0 else ""),
        "A lens reads only a word's first token: choose single-token words for this "
        f"tokenizer (`logitlens dataset check {label} -m MODEL` lists them all).",
    )


CHECKS: tuple[tuple[str, Callable[[_Exam], Check]], ...] = (
    ("adapter", check_adapter),
    ("last layer", check_last_layer),
    ("padding", check_padding),
    ("final norm", check_final_norm),
    ("remote", check_remote),
    ("sub-layers", check_sublayers),
)
"""The doctor's checks in the order they run (``targets`` joins them with a file)."""


# ----- what the checks share ------------------------------------------------------------


@contextlib.contextmanager
def _capture(modules: dict[str, Any]) -> Iterator[dict[str, tuple[torch.Tensor, torch.Tensor]]]:
    """Each module's last (first input, hidden output), from plain forward hooks."""
    seen: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def hook(name: str) -> Callable[..., None]:
        def keep(module: Any, args: tuple, kwargs: dict, output: Any) -> None:
            first = args[0] if args else kwargs.get("hidden_states")
            seen[name] = (first, layer_output(output))

        return keep

    handles = [
        module.register_forward_hook(hook(name), with_kwargs=True)
        for name, module in modules.items()
    ]
    try:
        yield seen
    finally:
        for handle in handles:
            handle.remove()


def _path_problem(root: Any, name: str, path: str | None) -> str | None:
    """Why a dotted path names no attribute of ``root`` (``None`` values are allowed)."""
    if path is None:
        return None
    node = root
    walked: list[str] = []
    for part in path.split("."):
        if node is None or not hasattr(node, part):
            return f"{name} path {path!r}: {'.'.join(walked) or 'the model'} has no {part!r}"
        node = getattr(node, part)
        walked.append(part)
    return None


def _gap(result: LensResult, prompt: int, layer: int, reference: torch.Tensor) -> float:
    """Max |p| difference between a result's top-k and reference log-probs ``[seq, vocab]``.

    The reference's probabilities of the result's top tokens, and its own top-1, are
    compared with the result's, at every position of ``prompt``.
    """
    n = reference.shape[0]
    ids = torch.from_numpy(result.top_ids[prompt, layer, :n]).to(reference.device)
    probs = torch.from_numpy(result.top_probs[prompt, layer, :n]).to(reference.device)
    expected = reference.exp()
    at_ids = (expected.gather(-1, ids) - probs).abs().max()
    top1 = (expected.max(-1).values - probs[:, 0]).abs().max()
    return float(max(at_ids, top1))


def _probability_gap(first: LensResult, second: LensResult) -> float:
    """Max |p| difference of two results' top-k probabilities (sorted, so ties may swap)."""
    a, b = first.top_probs, second.top_probs
    if a.shape != b.shape:
        columns = min(a.shape[2], b.shape[2])
        a, b = a[:, :, :columns], b[:, :, :columns]
    if a.shape != b.shape:
        return float("inf")
    difference = abs(torch.from_numpy(a).nan_to_num(0.0) - torch.from_numpy(b).nan_to_num(0.0))
    return float(difference.max())


def _softcap_field(
    config: Any,
    logits: torch.Tensor,
    wanted: torch.Tensor,
    close: Callable[[torch.Tensor, torch.Tensor], bool],
) -> str | None:
    """The config field whose value, as a soft-cap of ``logits``, gives ``wanted``."""
    text_config = config.get_text_config()
    for name, value in vars(text_config).items():
        numeric = isinstance(value, (int, float)) and value > 0
        if "softcap" in name and numeric and close(torch.tanh(logits / value) * value, wanted):
            return name
    return None
