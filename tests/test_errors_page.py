"""docs/errors.md cannot drift: every message it quotes still occurs in the source.

In the page's tables the first column quotes a message in backticks, with ``…`` for the
parts that name the user's value. Each piece between the ``…`` must occur in one string
literal (or one literal part of an f-string) under src/logitlens.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "errors.md"


def source_strings() -> list[str]:
    """Every string literal of the package; an f-string's literal parts joined by NUL."""
    strings = []
    for path in (ROOT / "src" / "logitlens").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                strings.append(node.value)
            elif isinstance(node, ast.JoinedStr):
                strings.append(
                    "\0".join(
                        part.value if isinstance(part, ast.Constant) else "" for part in node.values
                    )
                )
    return strings


def quoted_messages() -> list[str]:
    """The backticked messages in the first column of the "Message starts with" tables."""
    messages, in_table = [], False
    for line in PAGE.read_text(encoding="utf-8").splitlines():
        if line.startswith("| Message starts with |"):
            in_table = True
        elif not line.startswith("|"):
            in_table = False
        elif in_table:
            messages += re.findall(r"`([^`]+)`", line.split(" | ")[0])[:1]
    return messages


def pieces(message: str) -> list[str]:
    """The fixed parts of a message: split at ``…``, trimmed of quotes and short glue."""
    parts = (part.strip().strip("'\"").strip() for part in message.split("…"))
    return [part for part in parts if len(part) >= 4]


def test_the_page_quotes_many_messages():
    messages = quoted_messages()
    assert len(messages) >= 60, f"only {len(messages)} messages found on {PAGE}"
    assert all(pieces(message) for message in messages)


def test_every_quoted_message_occurs_in_the_source():
    strings = source_strings()
    missing = [
        (message, piece)
        for message in quoted_messages()
        for piece in pieces(message)
        if not any(piece in string for string in strings)
    ]
    assert not missing, f"docs/errors.md quotes text that src/logitlens no longer has: {missing}"


def test_the_check_can_fail():
    assert not any("Prompt is on fire" in string for string in source_strings())
