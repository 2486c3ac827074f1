"""Library notices for people: records of the ``photoman`` loggers shown as one escaped line each.

Its own module so that a command the daemon answers never imports ``logging``: front ends attach a
handler only when the library is about to run in their process (:class:`photoman.client.Client`'s
``before_library``), or at start (the TUI).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from photoman.textsafe import shown


class NoticeHandler(logging.Handler):
    """Library notices (records of the ``photoman`` loggers) for people: each one escaped with
    :func:`shown` and handed to ``show`` as one line, with no level or time prefix (the record's
    level comes along, for a front end that shows warnings differently).

    Front ends attach one to ``logging.getLogger("photoman")``: the CLI prints on stderr, the TUI
    shows toasts. A notice may quote a file name or a model folder, hence the escaping."""

    def __init__(self, show: Callable[[str, int], None], level: int = logging.INFO) -> None:
        super().__init__(level)
        self.show = show

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.show(shown(record.getMessage()), record.levelno)
        except Exception:  # noqa: BLE001 - logging's rule: a failing handler never breaks the caller
            self.handleError(record)
