"""What the explorer page asks, and the warm model that answers it.

An :class:`AnalysisRequest` is the page's form, checked field by field; nothing in it
names a file or runs code: the lens is one of the names the server was started with.
:class:`Explorer` answers it with the same :func:`logitlens.analyze` call as the command
line, on a model loaded once. Requests take turns in arrival order (one at a time per
model); :meth:`Explorer.status` says what runs, how far it got and how many wait.

Example:
    >>> explorer = Explorer(load_model(), available_lenses(model))
    >>> answer = explorer.analyze(AnalysisRequest.from_json({"prompts": [pun],
    ...                                                     "target": " current"}))
    >>> answer.result.first_layer_above(0.1)
"""

from __future__ import annotations

import json
import re
import threading
import time
import warnings
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any

from ..errors import InputError, LogitLensError
from ..lens_registry import LENSES, file_lenses
from ..lenses import Lens, get_lens
from ..loading import LensModel
from ..metrics import PICTURES, REGISTRY
from ..options import check_prompts, position_items, window_positions
from ..results import LensResult
from ..targets import parse_target

if TYPE_CHECKING:
    from ..attribution import Attribution

WINDOW = 64
"""Positions shown at most when the page asks for all positions of a long prompt."""
MAX_PROMPTS = 16
"""Prompts one request may hold (each is a grid)."""
BATCH = 8
"""Prompts per :func:`analyze` call; progress is reported between calls."""
KEPT = 8
"""Answers kept for the page's downloads (the HTML report of what is on screen)."""
MAX_K = 100


@dataclass(frozen=True)
class AnalysisRequest:
    """The page's form: prompts, lens, target (and alternative), positions, grid metric, k.

    ``target``/``alternative`` are text (``" current"``) or a token id written ``id:1234``;
    empty means none. ``metric`` is the grid's colouring (:data:`logitlens.metrics.PICTURES`).
    """

    prompts: tuple[str, ...]
    lens: str = "logit"
    target: str = ""
    alternative: str = ""
    positions: str = "all"
    metric: str = "prob"
    k: int = 10
    attribution: bool = False

    @classmethod
    def from_json(cls, data: Any) -> AnalysisRequest:
        """Check the page's JSON; every problem is an :class:`InputError` naming the field."""
        if not isinstance(data, dict):
            raise InputError('The request must be a JSON object such as {"prompts": ["..."]}.')
        known = [item.name for item in fields(cls)]
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise InputError(f"Unknown request field(s) {unknown}; known: {known}.")
        prompts = data.get("prompts")
        prompts = check_prompts([prompts] if isinstance(prompts, str) else prompts)
        if len(prompts) > MAX_PROMPTS:
            raise InputError(
                f"{len(prompts)} prompts in one request; at most {MAX_PROMPTS} (one per line)."
            )
        text = {}
        for name in ("lens", "target", "alternative", "positions", "metric"):
            value = data.get(name, getattr(cls, name))
            if not isinstance(value, str):
                raise InputError(f"The field {name!r} must be text, not {value!r}.")
            text[name] = value
        k = data.get("k", cls.k)
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_K:
            raise InputError(f"k must be a whole number from 1 to {MAX_K}, not {k!r}.")
        position_items(text["positions"].strip() or "all")
        if text["metric"] not in PICTURES:
            raise InputError(
                f"Unknown grid metric {text['metric']!r}; choose from {list(PICTURES)}."
            )
        attribution = data.get("attribution", False)
        if not isinstance(attribution, bool):
            raise InputError(f"The field 'attribution' must be true or false, not {attribution!r}.")
        if attribution and not text["target"]:
            raise InputError(
                "The attribution view needs a target: fill in the target word (and an "
                "alternative, for target minus alternative)."
            )
        if text["alternative"] and not text["target"]:
            raise InputError("An alternative needs a target: fill in the target word too.")
        if text["metric"] == "logit_diff" and not text["alternative"]:
            raise InputError(
                "Colouring by logit_diff needs a target and an alternative, "
                "e.g. ' current' and ' water'."
            )
        return cls(
            prompts=tuple(prompts),
            lens=text["lens"],
            target=text["target"],
            alternative=text["alternative"],
            positions=text["positions"].strip() or "all",
            metric=text["metric"],
            k=k,
            attribution=attribution,
        )

    def key(self) -> str:
        """The request as canonical JSON (which answer a download refers to)."""
        return json.dumps(asdict(self), sort_keys=True, ensure_ascii=False)

    def metrics(self) -> list[str]:
        """What ``analyze`` computes: top-k, the final prediction's rank (bold cells), the
        grid's metric and, with a target, its rank."""
        chosen = ["topk", "final_rank"]
        chosen += [m.name for m in REGISTRY.values() if m.picture and m.picture.name == self.metric]
        if self.target:
            chosen.append("target_rank")
        return list(dict.fromkeys(chosen))


@dataclass
class Answer:
    """One analysis as the page gets it."""

    request: AnalysisRequest
    result: LensResult
    seconds: float
    warnings: list[str]
    byte_labels: dict[str, str]
    attribution: Attribution | None = None

    def view(self) -> dict[str, Any]:
        """The lens view's data (:func:`logitlens.pictures.report.report_data`), with the
        labels of tokens that are part of a character."""
        from ..pictures.report import attribution_data, report_data

        view = report_data(self.result)
        view["byte_labels"] = self.byte_labels
        if self.attribution is not None:
            view["attribution"] = attribution_data(self.attribution)
        return view

    def payload(self) -> dict[str, Any]:
        """The JSON for the page: the view's data, the full result (the JSON download)."""
        return {
            "view": self.view(),
            "result": self.result.to_dict(),
            "seconds": round(self.seconds, 4),
            "warnings": self.warnings,
        }


class Explorer:
    """A loaded model and its lenses, answering one request at a time, in arrival order."""

    def __init__(
        self,
        model: LensModel,
        lenses: dict[str, Lens],
        default_lens: str = "logit",
        window: int = WINDOW,
    ) -> None:
        if default_lens not in lenses:
            raise InputError(f"The lens {default_lens!r} is not among {list(lenses)}.")
        self.model = model
        self.lenses = lenses
        self.default_lens = default_lens
        self.window = window
        self._turn = threading.Condition()
        self._issued = 0
        self._serving = 0
        self._running: str | None = None
        self._progress = ""
        self._kept: OrderedDict[str, Answer] = OrderedDict()

    def info(self) -> dict[str, Any]:
        """What the page needs to draw its form."""
        return {
            "model": self.model.name,
            "n_layers": self.model.n_layers,
            "context_length": self.model.context_length,
            "remote": bool(self.model.remote),
            "lenses": list(self.lenses),
            "default_lens": self.default_lens,
            "metrics": {name: picture.label for name, picture in PICTURES.items()},
            "max_prompts": MAX_PROMPTS,
            "window": self.window,
        }

    def status(self) -> dict[str, Any]:
        """What runs now, its progress, and how many requests wait behind it."""
        with self._turn:
            busy = self._running is not None
            return {
                "running": self._running,
                "progress": self._progress,
                "waiting": self._issued - self._serving - (1 if busy else 0),
            }

    @contextmanager
    def _my_turn(self, description: str) -> Iterator[None]:
        with self._turn:
            ticket = self._issued
            self._issued += 1
            while self._serving != ticket:
                self._turn.wait()
            self._running, self._progress = description, "starting"
        try:
            yield
        finally:
            with self._turn:
                self._serving += 1
                self._running, self._progress = None, ""
                self._turn.notify_all()

    def _say(self, progress: str) -> None:
        with self._turn:
            self._progress = progress

    def lens(self, name: str) -> Lens:
        if name not in self.lenses:
            raise InputError(f"Unknown lens {name!r}: this server has {list(self.lenses)}.")
        return self.lenses[name]

    def analyze(self, request: AnalysisRequest) -> Answer:
        """Run the request on the warm model (waiting for its turn) and keep the answer."""
        lens = self.lens(request.lens)
        first = request.prompts[0]
        description = f"{len(request.prompts)} prompt(s), {request.lens} lens: {first[:40]!r}"
        with self._my_turn(description):
            start = time.perf_counter()
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                result = self._run(request, lens)
                attribution = self._attribute(request) if request.attribution else None
            seconds = time.perf_counter() - start
        answer = Answer(
            request,
            result,
            seconds,
            list(dict.fromkeys(str(w.message) for w in caught)),
            byte_labels(self.model.tokenizer, result.vocab),
            attribution,
        )
        with self._turn:
            self._kept[request.key()] = answer
            self._kept.move_to_end(request.key())
            while len(self._kept) > KEPT:
                self._kept.popitem(last=False)
        return answer

    def kept(self, request: AnalysisRequest) -> Answer:
        """The answer to ``request`` if the page was shown it lately, else a new one."""
        with self._turn:
            answer = self._kept.get(request.key())
        return answer if answer is not None else self.analyze(request)

    def _run(self, request: AnalysisRequest, lens: Lens) -> LensResult:
        from ..analysis import analyze

        prompts = list(request.prompts)
        positions: Any = request.positions
        if positions == "all":
            lengths = [len(self.model.tokenizer(p)["input_ids"]) for p in prompts]
            positions = window_positions("all", lengths, self.window)
        parts = []
        for start in range(0, len(prompts), BATCH):
            chunk = prompts[start : start + BATCH]
            self._say(f"prompts {start + 1}-{start + len(chunk)} of {len(prompts)}")
            parts.append(
                analyze(
                    self.model,
                    chunk,
                    lens=lens,
                    positions=positions,
                    k=request.k,
                    targets=_token(request.target),
                    alternatives=_token(request.alternative),
                    metrics=request.metrics(),
                    progress=False,
                )
            )
        return parts[0] if len(parts) == 1 else LensResult.concat(parts)

    def _attribute(self, request: AnalysisRequest) -> Attribution:
        """Direct logit attribution of the target (minus the alternative) at each prompt's
        last position: what each layer's attention and MLP write."""
        from ..analysis import attribute

        self._say("attribution")
        return attribute(
            self.model,
            list(request.prompts),
            target=_token(request.target),
            alternative=_token(request.alternative),
            positions="last",
            progress=False,
        )


def _token(text: str) -> str | int | None:
    """A target field: empty is none, ``id:1234`` a token id, else the text itself."""
    return parse_target(text) if text else None


_BYTE_TOKEN = re.compile(r"(?:<0x[0-9A-Fa-f]{2}>)+")


def byte_labels(tokenizer: Any, vocab: dict[int, str]) -> dict[str, str]:
    """Labels for tokens that are part of a character (their text decodes to U+FFFD):
    the token's bytes, valid UTF-8 as text and the rest as ``<0xE2>``. The page shows
    these instead of a row of identical replacement characters."""
    labels = {}
    for token_id, text in vocab.items():
        if "\ufffd" not in text:
            continue
        raw = _token_bytes(str(tokenizer.convert_ids_to_tokens(int(token_id))))
        if raw is not None:
            decoded = raw.decode("utf-8", errors="surrogateescape")
            labels[str(token_id)] = "".join(
                f"<0x{ord(c) - 0xDC00:02X}>" if 0xDC80 <= ord(c) <= 0xDCFF else c for c in decoded
            )
    return labels


def _token_bytes(piece: str) -> bytes | None:
    """The bytes of a vocabulary entry: SentencePiece byte tokens (``<0xE2>``) or a byte-level
    BPE piece (GPT-2's printable alphabet); ``None`` for anything else."""
    if _BYTE_TOKEN.fullmatch(piece):
        return bytes(int(piece[i + 3 : i + 5], 16) for i in range(0, len(piece), 6))
    decoder = _byte_decoder()
    if piece and all(c in decoder for c in piece):
        return bytes(decoder[c] for c in piece)
    return None


_BYTE_DECODER: dict[str, int] = {}


def _byte_decoder() -> dict[str, int]:
    if not _BYTE_DECODER:
        from transformers.convert_slow_tokenizer import bytes_to_unicode

        _BYTE_DECODER.update({char: byte for byte, char in bytes_to_unicode().items()})
    return _BYTE_DECODER


def available_lenses(
    model: LensModel, lens: str | None = None, lens_path: str | None = None
) -> dict[str, Lens]:
    """Every lens the page can offer for ``model``: the logit and raw lenses, the lens of
    ``lens_path`` (named ``lens``, or its file's kind), and the tuned and Jacobian lenses
    the user cache holds for this model. A lens file for another model is listed too: the
    page then shows the error that :func:`logitlens.analyze` raises for it."""
    from ..lenses import load_lens

    with_files = file_lenses()
    lenses: dict[str, Lens] = {
        name: get_lens(name) for name, kind in LENSES.items() if kind not in with_files
    }
    if lens_path is not None:
        named = lens in [kind.name for kind in with_files]
        chosen = get_lens(lens, lens_path) if named else load_lens(lens_path)
        lenses[chosen.name] = chosen
    for kind in with_files:
        path = kind.cache_path(model)
        if kind.name not in lenses and path.is_file():
            try:
                lenses[kind.name] = kind.build(path)
            except LogitLensError as error:
                warnings.warn(f"Skipping the cached {kind.name} lens: {error}", stacklevel=2)
    if lens is not None and lens not in lenses:  # a lens with parameters, or an error
        lenses[lens] = get_lens(lens)
    return lenses
