"""Query algebra: text and image terms, each with a sign and a weight, summed into one vector.

Grammar (shell words, or one quoted string with spaced operators)::

    query   := term (("+" | "-") term)*
    term    := [weight ":"] (text | image-path | "-")
    weight  := a number, e.g. 2 or 0.5

``photoman find beach + ./sunset.jpg - people``, ``photoman find "2:red car" - blurry``,
``photoman find "beach + ./sunset.jpg - people"``. A term is an image when it names an image file
(by extension, or an existing file); ``--image PATH`` is always an image. Standard input is read
only for ``-`` given as a shell word of its own where a term is expected (first, or right after an
operator), or ``--image -``; a ``-`` between two terms is the minus operator, and inside a quoted
word ``+`` and ``-`` are always operators.
"""

from __future__ import annotations

import base64
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from photoman.errors import BadInputError
from photoman.media.formats import is_image_path
from photoman.vectors.schema import SearchFilter

Mode = Literal["auto", "text-image", "image-image", "text-caption", "image-caption", "all"]
Cutoff = Literal["auto", "none", "fixed"]
Sort = Literal["score", "date"]
MODES: tuple[str, ...] = ("text-image", "image-image", "text-caption", "image-caption", "all")
MAX_LIMIT = 10_000  # a result list longer than this is a mistake, not a query

_NUMBER = r"[+-]?(?:\d+(?:\.\d+)?|\.\d+|nan|inf(?:inity)?)"
_WEIGHT = re.compile(rf"^\s*({_NUMBER})\s*:\s*(.+)$", re.S | re.I)
_BARE_WEIGHT = re.compile(rf"^\s*({_NUMBER})\s*:\s*$", re.I)
_OPERATOR = re.compile(r"(?:^|(?<=\s))([+-])(?=\s|$)")  # a + or - standing alone inside a word
STDIN = "\0stdin"  # the token for a lone `-` shell word where a term is expected


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
        """A term from the wire, checked: a socket client may send anything."""
        if not isinstance(d, dict):
            raise BadInputError(f"a query term must be an object, not {type(d).__name__}")
        kind, value = d.get("kind"), d.get("value")
        if kind not in ("text", "image") or not isinstance(value, str):
            raise BadInputError("a query term needs kind 'text' or 'image' and a string value")
        weight, sign = d.get("weight", 1.0), d.get("sign", 1)
        if isinstance(weight, bool) or not isinstance(weight, int | float) or not math.isfinite(weight):
            raise BadInputError(f"term weight must be a finite number, not {weight!r}")
        if weight <= 0:
            raise BadInputError(f"term weight must be positive, not {weight!r}")
        if sign not in (1, -1):
            raise BadInputError(f"term sign must be 1 or -1, not {sign!r}")
        try:
            data = base64.b64decode(d["data"], validate=True) if d.get("data") else None
        except (ValueError, TypeError):
            raise BadInputError("term data must be base64 image bytes") from None
        return cls(kind, value, float(weight), int(sign), data)


def _looks_like_image(text: str) -> bool:
    path = os.path.expanduser(text)
    return is_image_path(path) and ("/" in text or os.path.exists(path) or " " not in text)


def _term(raw: str, sign: int, stdin: bytes | None, stdin_ok: bool = False) -> Term:
    weight = 1.0
    if _BARE_WEIGHT.match(raw):
        raise BadInputError(f"weight {raw.strip()!r} has no term after it (e.g. '2:red car')")
    m = _WEIGHT.match(raw)
    if m:
        weight, raw = float(m.group(1)), m.group(2)
        if not math.isfinite(weight):
            raise BadInputError(f"weight must be a finite number in {m.group(0)!r}")
        if weight <= 0:
            raise BadInputError(f"weight must be positive in {m.group(0)!r} (use - to subtract a term)")
    raw = raw.strip()
    if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "\"'":
        raw = raw[1:-1].strip()
    if not raw:
        raise BadInputError("empty term in query: every + or - needs something after it")
    if any("\udc80" <= ch <= "\udcff" for ch in raw):  # bytes that are not UTF-8 (surrogate-escaped)
        raise BadInputError(f"query term {raw.encode('utf-8', 'surrogateescape')!r} is not valid UTF-8 text")
    if raw == "-":
        if not stdin_ok:
            raise BadInputError("'-' needs a term on each side (stdin is '-' as a word of its own)")
        if stdin is None:
            raise BadInputError("'-' means an image on standard input, but none was given")
        return Term("image", "-", weight, sign, stdin)
    if _looks_like_image(raw):
        path = Path(raw).expanduser()
        if not path.is_file():
            raise BadInputError(_not_a_file(path, raw))
        return Term("image", str(path.absolute()), weight, sign)
    return Term("text", raw, weight, sign)


def _tokens(words: list[str]) -> list[str]:
    """Terms and operators. `-` as a whole shell word where a term is expected is STDIN (an image on
    standard input); everywhere else, and always inside a quoted word, `+` and `-` are operators."""
    tokens: list[str] = []
    for w in words:
        if w in ("+", "-"):
            term_expected = not tokens or tokens[-1] in ("+", "-")
            tokens.append(STDIN if w == "-" and term_expected else w)
            continue
        tokens.extend(part.strip() for part in _OPERATOR.split(w) if part.strip())
    return tokens


def needs_stdin(words: list[str], images: list[str] | None = None) -> bool:
    """Whether the query reads an image from standard input (so the CLI reads it only then)."""
    return STDIN in _tokens([w for w in words if w.strip()]) or "-" in (images or [])


def parse_query(words: list[str], images: list[str] | None = None, stdin: bytes | None = None) -> list[Term]:
    """Terms from the command-line words and any --image options; raises BadInputError on bad grammar."""
    if not any(w.strip() for w in words) and not images:
        raise BadInputError("empty query: describe what you are looking for, or pass --image PATH")
    tokens = _tokens([w for w in words if w.strip()])
    terms: list[Term] = []
    sign = 1
    expect_term = True
    for tok in tokens:
        if not expect_term:
            if tok not in ("+", "-"):
                # two terms in a row: words of one text term given unquoted
                last = terms[-1]
                if last.kind != "text" or tok == STDIN or _looks_like_image(tok) or _WEIGHT.match(tok):
                    shown = "-" if tok == STDIN else tok
                    raise BadInputError(f"missing + or - between {last.value!r} and {shown!r}")
                last.value = f"{last.value} {tok}"
                continue
            sign = 1 if tok == "+" else -1
            expect_term = True
            continue
        if tok in ("+", "-"):
            where = "start with" if not terms else "have two operators in a row before"
            raise BadInputError(f"query cannot {where} {tok!r}: expected a term")
        terms.append(_term("-" if tok == STDIN else tok, sign, stdin, stdin_ok=tok == STDIN))
        expect_term = False
    if terms and expect_term:
        raise BadInputError("query ends with an operator: add a term after the last + or -")
    for img in images or []:
        terms.append(_image_term(img, stdin))
    if not terms:
        raise BadInputError("empty query: describe what you are looking for, or pass --image PATH")
    if all(t.sign < 0 for t in terms):
        raise BadInputError("a query needs at least one positive term")
    return terms


def _image_term(value: str, stdin: bytes | None) -> Term:
    """`--image VALUE`: always an image (whatever its name), a regular file or `-` for stdin."""
    if value == "-":
        if stdin is None:
            raise BadInputError("'-' means an image on standard input, but none was given")
        return Term("image", "-", 1.0, 1, stdin)
    path = Path(value).expanduser()
    if not path.is_file():
        raise BadInputError(_not_a_file(path, value))
    return Term("image", str(path.absolute()), 1.0, 1)


def _not_a_file(path: Path, raw: str) -> str:
    """Why an image term's path cannot be read: not there, a folder, or another kind of file."""
    if not path.exists():
        return f"no such image: {raw}"
    if path.is_dir():
        return f"{raw} is a folder, not an image file"
    return f"{raw} is not a regular file (a FIFO, device or socket), not an image file"


@dataclass
class Query:
    """Everything `find` can ask; checked by :meth:`check`, JSON-able for the daemon."""

    terms: list[Term]
    mode: str = "auto"
    limit: int = 10
    filters: SearchFilter = field(default_factory=SearchFilter)
    cutoff: str = "auto"  # auto | none | fixed
    threshold: float | None = None
    sort: str = "score"  # score | date
    explain: bool = False
    include_offline: bool = False

    def check(self) -> Query:
        """Reject what cannot run, whoever sent it (the CLI, the TUI or a raw socket client)."""
        if not self.terms:
            raise BadInputError("empty query: describe what you are looking for, or pass --image PATH")
        if all(t.sign < 0 for t in self.terms):
            raise BadInputError("a query needs at least one positive term")
        if isinstance(self.limit, bool) or not isinstance(self.limit, int):
            raise BadInputError(f"--limit must be a whole number, not {self.limit!r}")
        if not 1 <= self.limit <= MAX_LIMIT:
            raise BadInputError(f"--limit must be between 1 and {MAX_LIMIT}")
        if self.cutoff not in ("auto", "none", "fixed"):
            raise BadInputError(f"unknown cutoff {self.cutoff!r}; use auto, none or fixed")
        if self.threshold is not None:
            if self.cutoff != "fixed":
                raise BadInputError("--all and --threshold contradict each other; pick one")
            if isinstance(self.threshold, bool) or not isinstance(self.threshold, int | float):
                raise BadInputError(f"--threshold must be a number, not {self.threshold!r}")
            if not (math.isfinite(self.threshold) and -1.0 <= self.threshold <= 1.0):
                raise BadInputError("--threshold must be a cosine score between -1 and 1")
        if self.sort not in ("score", "date"):
            raise BadInputError(f"unknown sort {self.sort!r}; use score or date")
        self.resolved_mode()
        return self

    def resolved_mode(self) -> str:
        kinds = {t.kind for t in self.terms if t.sign > 0}
        if self.mode == "auto":
            return "image-image" if kinds == {"image"} else "text-image"
        if self.mode not in MODES:
            raise BadInputError(f"unknown mode {self.mode!r}; use auto, {', '.join(MODES)}")
        source = self.mode.split("-")[0]
        if source in ("text", "image") and source not in kinds:
            article = "an" if source == "image" else "a"
            raise BadInputError(f"mode {self.mode} needs {article} {source} term in the query")
        return self.mode

    def to_json(self) -> dict[str, Any]:
        d = {k: v for k, v in self.__dict__.items() if k not in ("terms", "filters")}
        d["terms"] = [t.to_json() for t in self.terms]
        d["filters"] = self.filters.to_json()
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Query:
        """A checked query from the wire; anything malformed is a BadInputError, never a crash."""
        if not isinstance(d, dict):
            raise BadInputError("query must be an object")
        d = dict(d)
        terms = d.pop("terms", None)
        if not isinstance(terms, list):
            raise BadInputError("query needs a list of terms")
        filters = d.pop("filters", None) or {}
        if not isinstance(filters, dict):
            raise BadInputError("query filters must be an object")
        unknown = set(d) - {"mode", "limit", "cutoff", "threshold", "sort", "explain", "include_offline"}
        if unknown:
            raise BadInputError(f"unknown query field(s): {', '.join(sorted(unknown))}")
        try:
            flt = SearchFilter.from_json(filters)
        except (TypeError, ValueError) as exc:
            raise BadInputError(f"bad query filters: {exc}") from None
        return cls([Term.from_json(t) for t in terms], filters=flt, **d).check()
