"""The fork server the decode workers come from: started early, with their modules imported once.

A worker forked from a bare fork server imports Pillow, numpy, pillow-heif and the hashers itself
before its first photo, and the server starts only when the first worker is asked for. Started at the
top of an `index` run, with those modules preloaded, the server imports them on the other core while
this process opens the library, and each worker is ready as soon as it is forked.
"""

from __future__ import annotations

import multiprocessing as mp
import signal
import threading
from multiprocessing import forkserver
from multiprocessing.context import BaseContext

# The worker loop and everything prepare() decodes with. Python 3.11's fork server never preloads the
# main script (its own default, '__main__', looks for a key the preparation data does not carry), so
# each worker imports it again; the `photoman` command's script imports the CLI, preloaded here.
PRELOAD = ["photoman.cli", "photoman.indexing.workers"]


def start() -> BaseContext:
    """The fork server context, its server running (from the main thread) with :data:`PRELOAD`.

    Ctrl-C in a terminal signals the whole process group. The command reports it once; the fork
    server and the decode workers it forks (which inherit an ignored SIGINT) must not also die of it,
    or the pool breaks mid-shutdown and prints tracebacks."""
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)  # no effect once the server runs: it keeps what it has
    if threading.current_thread() is threading.main_thread():  # else: the daemon's indexer thread,
        # no terminal, and only the main thread may set handlers; the first worker starts the server
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            forkserver.ensure_running()
        finally:
            signal.signal(signal.SIGINT, previous)
    return ctx
