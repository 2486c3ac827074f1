"""Untrusted text (file names, captions, EXIF/XMP fields, tags) shown to people without driving
their terminal.

Anyone can make a file whose name or caption holds terminal control sequences (ESC/CSI/OSC, ``\\r``,
``\\b``), bytes that are not UTF-8, or Rich markup. Every human-facing output (CLI tables and lines,
error messages, the TUI, the daemon log) passes such text through :func:`shown`; machine outputs
(``--json``, ``--ndjson``, ``-0``) carry the exact text instead.

The escapes are visible and, together, lossless (each shown text stands for exactly one original):

- ``\\\\``      a backslash; ``\\n``, ``\\r``, ``\\t`` a newline, carriage return, tab;
- ``\\xNN``    one byte: an ASCII control (``\\x1b`` ESC, ``\\x07`` BEL, ``\\x08`` BS, ``\\x7f`` DEL, …)
  or, from ``\\x80`` up, a byte of a name that is not valid UTF-8 (held by Python as a surrogate
  escape, U+DC80–U+DCFF; ``os.fsencode`` gives the bytes back);
- ``\\uNNNN``  a character that moves, hides or reorders text: C1 controls (U+0080–U+009F), the line
  and paragraph separators, bidirectional controls, and any other lone surrogate.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.text import Text

_UNSAFE = re.compile(
    "[\\\\\x00-\x1f\x7f-\x9f"  # backslash, C0 controls, DEL, C1 controls
    "\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"  # bidi marks, embeddings, overrides, isolates
    "\u2028\u2029"  # line / paragraph separator
    "\ud800-\udfff]"  # surrogates: undecodable bytes (U+DC80-U+DCFF) and strays
)
_SHORT = {"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(match: re.Match[str]) -> str:
    ch = match.group()
    code = ord(ch)
    if ch in _SHORT:
        return _SHORT[ch]
    if code < 0x80:
        return f"\\x{code:02x}"
    if 0xDC80 <= code <= 0xDCFF:  # a byte that was not UTF-8, as os.fsdecode keeps it
        return f"\\x{code - 0xDC00:02x}"
    return f"\\u{code:04x}"


def shown(text: str) -> str:
    """Untrusted text as it may reach a terminal: controls and undecodable bytes escaped visibly."""
    if not _UNSAFE.search(text):
        return text
    return _UNSAFE.sub(_escape, text)


def safe_text(text: str, style: str = "") -> Text:
    """A Rich Text of the shown text: never parsed as markup or emoji codes, whatever it holds."""
    from rich.text import Text

    return Text(shown(text), style=style)
