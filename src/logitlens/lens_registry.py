"""The lens registry: one :class:`LensKind` entry per kind of lens, by name.

An entry says the lens's name, what it computes (one phrase, for ``--help``), the class
that implements it and whether that class is read from a lens file (tuned, Jacobian).
Everything else derives from :data:`LENSES`: ``get_lens`` and ``load_lens``, the
command line's ``--lens`` names, help and checks, the user-cache lookup of a lens file,
and ``lens eval``'s choices.

A lens's **parameters** are the fields of its class, written as a dataclass; the
command line sets them as ``--lens NAME:key=value,key=value`` (``lens eval -l`` too),
Python as ``get_lens("NAME:key=value")`` or by building the object. They are part of
the lens's :meth:`~logitlens.lenses.Lens.identify`, so a resumed run with another
setting is refused.

Adding a lens of your own is one file: a dataclass subclass of
:class:`~logitlens.lenses.Lens` and one :func:`register_lens` call::

    @dataclass
    class ScaledLens(Lens):
        name: ClassVar[str] = "scaled"
        temperature: float = 1.0

        def project(self, unembedding, hidden, layers):
            return unembedding.logits(unembedding.norm(hidden)) / self.temperature

    register_lens(LensKind("scaled", "logit lens over a temperature", ScaledLens))

The built-in entries name their class as ``"module:Class"``, so this module, and with
it the command line's ``--help``, never imports torch.
"""

from __future__ import annotations

import dataclasses
import importlib
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import InputError
from .paths import cache_dir

if TYPE_CHECKING:
    from .lenses.base import Lens
    from .loading import LensModel

_TRUE, _FALSE = ("true", "yes", "1", "on"), ("false", "no", "0", "off")


@dataclass(frozen=True)
class LensKind:
    """One kind of lens: its name, what it computes, its class, and whether it is a file.

    ``lens`` is the class, or ``"module:Class"`` for a class imported on first use.
    ``cache_suffix`` names the model's file of this lens in the user cache (lenses
    with a file only): ``<model><suffix>.safetensors``.
    """

    name: str
    summary: str
    lens: type[Lens] | str
    needs_file: bool = False
    cache_suffix: str | None = None

    def lens_class(self) -> type[Lens]:
        """The class that implements this lens (imported here when named by a string)."""
        if not isinstance(self.lens, str):
            return self.lens
        module, _, attribute = self.lens.partition(":")
        return getattr(importlib.import_module(module), attribute)

    def parameters(self) -> dict[str, type]:
        """The lens's parameters and their types: the fields of its dataclass."""
        cls = self.lens_class()
        if not dataclasses.is_dataclass(cls):
            return {}
        hints = typing.get_type_hints(cls)
        return {field.name: hints[field.name] for field in dataclasses.fields(cls) if field.init}

    def build(
        self, path: str | Path | None = None, values: Mapping[str, Any] | None = None
    ) -> Lens:
        """The lens: read from ``path`` (a lens with a file), or built from ``values``, its
        parameters (as text, ``{"temperature": "2"}``, or as values)."""
        cls = self.lens_class()
        arguments = self.arguments(values or {})
        if self.needs_file:
            if path is None:
                raise InputError(
                    f"The {self.name} lens needs a trained lens file: pass its path (analyze: "
                    f"tuned_path=...; CLI: --lens-path PATH); make one with "
                    f"`{getattr(cls, 'make_command', 'logitlens tuned train')}`."
                )
            return cls.load(path)  # type: ignore[attr-defined]
        try:
            return cls(**arguments)
        except TypeError as error:  # a parameter without a default
            raise InputError(
                f"The {self.name} lens cannot be built from {dict(values or {})!r} ({error}): "
                f"give its parameters as --lens {self.name}:key=value,... "
                f"(its parameters: {', '.join(self.parameters()) or 'none'})."
            ) from None

    def arguments(self, values: Mapping[str, str]) -> dict[str, Any]:
        """``values`` (text, as on the command line) as the types of the lens's parameters."""
        types = self.parameters()
        arguments = {}
        for key, text in values.items():
            if key not in types:
                known = ", ".join(types) or "none"
                raise InputError(
                    f"The {self.name} lens has no parameter {key!r} (its parameters: {known}). "
                    f"Write --lens {self.name}:key=value,..."
                )
            arguments[key] = _convert(self.name, key, text, types[key])
        return arguments

    def cache_path(self, model: LensModel) -> Path:
        """Where training puts ``model``'s file of this lens (``logitlens tuned train``)."""
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in model.name)
        suffix = f".{self.name}" if self.cache_suffix is None else self.cache_suffix
        return cache_dir() / "lenses" / f"{safe}{suffix}.safetensors"

    def cached(self, model: LensModel) -> Lens:
        """``model``'s file of this lens from the user cache, or a clear error."""
        path = self.cache_path(model)
        if not path.is_file():
            command = getattr(self.lens_class(), "make_command", "logitlens tuned train")
            raise InputError(
                f"No {self.name} lens for {model.name} in the user cache ({path}); make one "
                f"with `{command}`, or pass a lens file (--lens-path PATH; lens eval: "
                "--lens PATH)."
            )
        return self.build(path)


def _convert(lens: str, key: str, text: Any, wanted: type) -> Any:
    """A parameter value written as text, as the type its lens declares."""
    if not isinstance(text, str):
        return text
    try:
        if wanted is bool:
            if text.lower() not in (*_TRUE, *_FALSE):
                raise ValueError
            return text.lower() in _TRUE
        return wanted(text)
    except (TypeError, ValueError):
        name = getattr(wanted, "__name__", str(wanted))
        raise InputError(
            f"Bad value {text!r} for the {lens} lens's parameter {key!r}: expected {name}."
        ) from None


LENSES: dict[str, LensKind] = {
    kind.name: kind
    for kind in (
        LensKind(
            "logit", "final norm, then unembedding; default", "logitlens.lenses.base:LogitLens"
        ),
        LensKind("raw", "unembedding without the final norm", "logitlens.lenses.base:RawLens"),
        LensKind(
            "tuned",
            "a learned translator per layer",
            "logitlens.lenses.tuned:TunedLens",
            needs_file=True,
            cache_suffix="",
        ),
        LensKind(
            "jacobian",
            "the average Jacobian per layer",
            "logitlens.lenses.jacobian:JacobianLens",
            needs_file=True,
            cache_suffix=".jlens",
        ),
    )
}
"""Every kind of lens, by name, in the order ``--help`` lists them (built-in ones here;
:func:`register_lens` adds yours)."""


def register_lens(kind: LensKind) -> LensKind:
    """Add (or replace) a kind of lens; from then on every entry point knows it."""
    LENSES[kind.name] = kind
    return kind


def kind_named(spec: str) -> LensKind:
    """The entry a lens name or ``NAME:key=value`` spec names, or a clear error."""
    name = spec.partition(":")[0] if isinstance(spec, str) else None
    if name not in LENSES:
        raise InputError(f"Unknown lens {spec!r}. Choose one of: {', '.join(LENSES)}.")
    return LENSES[name]


def parse_lens_spec(spec: str) -> tuple[LensKind, dict[str, Any]]:
    """``"scaled:temperature=2"`` -> the ``scaled`` entry and ``{"temperature": 2.0}``."""
    kind = kind_named(spec)
    values: dict[str, str] = {}
    _, colon, rest = spec.partition(":")
    for part in rest.split(",") if colon else []:
        key, equals, value = part.partition("=")
        if not equals or not key.strip():
            raise InputError(
                f"Bad lens {spec!r}: write its parameters as {kind.name}:key=value,key=value."
            )
        values[key.strip()] = value.strip()
    return kind, kind.arguments(values) if values else {}


def file_lenses() -> list[LensKind]:
    """The kinds of lens read from a lens file."""
    return [kind for kind in LENSES.values() if kind.needs_file]


def lens_help() -> str:
    """The ``--lens`` help: every name, which need a file, and how to set parameters."""
    files = " and ".join(kind.name for kind in file_lenses())
    return (
        ", ".join(f"{kind.name} ({kind.summary})" for kind in LENSES.values())
        + f". {files}: --lens-path, or the model's file in the user cache. "
        "Parameters: NAME:key=value,key=value."
    )
