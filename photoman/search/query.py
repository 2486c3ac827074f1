"""Query algebra: text and image terms, each with a sign and a weight, summed into one vector.

Grammar (shell words, or one quoted string with spaced operators)::

    query   := term (("+" | "-") term)*
    term    := [weight ":"] (text | image-path | "-")
    weight  := a number, e.g. 2 or 0.5

``photoman find beach + ./sunset.jpg - people``, ``photoman find "2:red car" - blurry``,
``photoman find "beach + ./sunset.jpg - people"``. A term is an image when it names an image file
(by extension, or an existing file); ``-`` alone as a term (or ``--image -``) reads image bytes
from standard input.
"""

from __future__ import annotations

import base64
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from photoman.errors import BadInputError
from photoman.media.decode import is_image_path

_WEIGHT = re.compile(r"^\s*([+-]?\d+(?:\.\d+)?)\s*:\s*(.+)$", re.S)
_SPLIT = re.compile(r"\s+([+-])\s+")


@dataclass
class Term:
    """One query term: text, an image file, or image bytes (stdin)."""

    kind: str  # "text" | "image"
    value: str  # text, or absolute image path ("-" for bytes)
    weight: float = 1.0
    sign: int = 1
    data: bytes | None = None

    @property
    def label(self) -> str:
        head = f"{'-' if self.sign < 0 else '+'}{self.weight:g}:"
        return head + (f'"{self.value}"' if self.kind == "text" else ("<stdin>" if self.data else self.value))

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"kind": self.kind, "value": self.value, "weight": self.weight, "sign": self.sign}
        if self.data is not None:
            d["data"] = base64.b64encode(self.data).decode()
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Term:
        data = base64.b64decode(d["data"]) if d.get("data") else None
        return cls(d["kind"], d["value"], float(d.get("weight", 1.0)), int(d.get("sign", 1)), data)


def _looks_like_image(text: str) -> bool:
    path = os.path.expanduser(text)
    return is_image_path(path) and ("/" in text or os.path.exists(path) or " " not in text)


def _term(raw: str, sign: int, stdin: bytes | None) -> Term:
    weight = 1.0
    m = _WEIGHT.match(raw)
    if m:
        weight, raw = float(m.group(1)), m.group(2)
        if weight <= 0:
            raise BadInputError(f"weight must be positive in {m.group(0)!r} (use - to subtract a term)")
    raw = raw.strip()
    if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "\"'":
        raw = raw[1:-1].strip()
    if not raw:
        raise BadInputError("empty term in query: every + or - needs something after it")
    if raw == "-":
        if stdin is None:
            raise BadInputError("'-' means an image on standard input, but none was given")
        return Term("image", "-", weight, sign, stdin)
    if _looks_like_image(raw):
        path = Path(raw).expanduser()
        if not path.is_file():
            raise BadInputError(f"no such image: {raw}")
        return Term("image", str(path.absolute()), weight, sign)
    return Term("text", raw, weight, sign)


def parse_query(words: list[str], images: list[str] | None = None, stdin: bytes | None = None) -> list[Term]:
    """Terms from the command-line words and any --image options; raises BadInputError on bad grammar."""
    if not any(w.strip() for w in words) and not images:
        raise BadInputError("empty query: describe what you are looking for, or pass --image PATH")
    words = [w for w in words if w.strip()]
    tokens: list[str] = []
    for w in words:
        if w in ("+", "-") and tokens and tokens[-1] not in ("+", "-"):
            tokens.append(w)  # an operator given as its own shell word (a lone '-' first is stdin)
            continue
        parts = _SPLIT.split(f" {w} ".strip()) if (" + " in w or " - " in w) else [w]
        tokens.extend(parts)
    terms: list[Term] = []
    sign = 1
    expect_term = True
    for tok in tokens:
        if not expect_term:
            if tok not in ("+", "-"):
                # two terms in a row: words of one text term given unquoted
                last = terms[-1]
                if last.kind != "text" or _looks_like_image(tok):
                    raise BadInputError(f"missing + or - between {last.value!r} and {tok!r}")
                last.value = f"{last.value} {tok}"
                continue
            sign = 1 if tok == "+" else -1
            expect_term = True
            continue
        if tok in ("+", "-") and tok != "-":
            raise BadInputError(f"query cannot have {tok!r} there: expected a term")
        terms.append(_term(tok, sign, stdin))
        expect_term = False
    if terms and expect_term:
        raise BadInputError("query ends with an operator: add a term after the last + or -")
    for img in images or []:
        terms.append(_term(img, 1, stdin))
    if not terms:
        raise BadInputError("empty query: describe what you are looking for, or pass --image PATH")
    if all(t.sign < 0 for t in terms):
        raise BadInputError("a query needs at least one positive term")
    return terms
