"""Files a user names for photoman to read whole (label lists, config, evaluation sets, an image on
stdin): regular files only, of a bounded size, text decoded as UTF-8. A FIFO hung the command (in the
daemon, every later one too), /dev/zero filled the memory, a binary file was a traceback."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

from photoman.errors import BadInputError, PhotomanError

MAX_TEXT_MB = 16  # a label list or caption table of hundreds of thousands of lines fits
MAX_STDIN_IMAGE_MB = 47  # it travels to the daemon base64-encoded in one 64 MB request


def read_bytes(
    path: Path | str, what: str, limit_mb: int = MAX_TEXT_MB, error: type[PhotomanError] = BadInputError
) -> bytes:
    """The file's bytes, or ``error`` with one line: not there, not a regular file, too big."""
    limit = limit_mb * 1024 * 1024
    try:
        st = os.stat(path)  # through symlinks: a link to /dev/zero is /dev/zero
        if not stat.S_ISREG(st.st_mode):
            raise error(f"{what} {path} is not a regular file")
        if st.st_size > limit:
            raise error(f"{what} {path} is {st.st_size / 1e6:.0f} MB; photoman reads at most {limit_mb} MB")
        with open(path, "rb") as f:
            data = f.read(limit + 1)  # it may have grown since
    except OSError as exc:
        raise error(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    if len(data) > limit:
        raise error(f"{what} {path} is over {limit_mb} MB; photoman reads at most that")
    return data


def read_text(
    path: Path | str, what: str, limit_mb: int = MAX_TEXT_MB, error: type[PhotomanError] = BadInputError
) -> str:
    """The file as UTF-8 text (a BOM is dropped), under the same rules as :func:`read_bytes`."""
    data = read_bytes(path, what, limit_mb, error)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise error(f"{what} {path} is not UTF-8 text (byte {exc.start} is not)") from None


def read_stdin_image() -> bytes:
    """An image piped in (`find -`), at most :data:`MAX_STDIN_IMAGE_MB`: an endless stream is refused,
    not kept."""
    limit_mb = MAX_STDIN_IMAGE_MB
    limit = limit_mb * 1024 * 1024
    data = sys.stdin.buffer.read(limit + 1)
    if len(data) > limit:
        raise BadInputError(f"the image on stdin is over {limit_mb} MB; give its path instead")
    return data
