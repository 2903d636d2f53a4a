"""Interrupts (SIGINT, SIGTERM) as exceptions that every command handles the same way.

SIGTERM becomes :class:`Terminated` (a ``KeyboardInterrupt``), so the clean-up that
runs for Ctrl-C (temporary files removed, nothing placed) runs for it too, and the
command line exits with 143 instead of 130. Libraries that swallow a
``KeyboardInterrupt`` and return partial results (nutpie returns the draws sampled so
far) are wrapped in :func:`reraise_after`, which raises it again when they return.
"""

from __future__ import annotations

import _thread
import contextlib
import signal
import sys
import threading
from collections.abc import Iterator
from typing import Any


class Terminated(KeyboardInterrupt):
    """The process received SIGTERM."""


#: Exit codes of the command line after an interrupt (128 + signal number).
EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}


def _on_sigterm(signum: int, frame: Any) -> None:
    raise Terminated()


def install() -> None:
    """Turn SIGTERM into :class:`Terminated` (main thread only; a no-op elsewhere)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _on_sigterm)


def exit_code(err: BaseException) -> int:
    """130 for Ctrl-C, 143 for SIGTERM."""
    return EXIT_CODES[signal.SIGTERM if isinstance(err, Terminated) else signal.SIGINT]


@contextlib.contextmanager
def reraise_after() -> Iterator[None]:
    """Run a block whose callee may swallow an interrupt; raise it once the block returns.

    Examples
    --------
    >>> with reraise_after():  # doctest: +SKIP
    ...     trace = nutpie.sample(compiled)  # returns partial draws on Ctrl-C
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    seen: list[int] = []
    hooked = [False]  # True while the unraisable hook runs: raising there only prints
    timers: list[threading.Timer] = []

    def later(signum: int) -> None:
        # A signal raised here would run its handler at once, inside the hook, where the
        # interrupt is printed again instead of stopping the block (raise_signal checks
        # signals before it returns). Deliver it from another thread a moment later, when
        # the main thread is back in the block.
        timer = threading.Timer(0.05, _thread.interrupt_main, args=(signum,))
        timer.daemon = True
        timers.append(timer)
        timer.start()

    def record(signum: int, frame: Any) -> None:
        seen.append(signum)
        if hooked[0]:
            later(signum)
            return
        raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()

    old_hook = sys.unraisablehook

    def redeliver(unraisable: Any) -> None:
        # The interrupt was raised inside a callback whose exceptions Python only prints
        # ("Exception ignored in ...", e.g. a weakref callback while a model compiles): the
        # block would go on. Deliver the signal again, quietly, so it lands in the block.
        if isinstance(unraisable.exc_value, KeyboardInterrupt):
            hooked[0] = True
            try:
                later(seen[-1] if seen else signal.SIGINT)
            finally:
                hooked[0] = False
            return
        old_hook(unraisable)

    old_int = signal.signal(signal.SIGINT, record)
    old_term = signal.signal(signal.SIGTERM, record)
    sys.unraisablehook = redeliver
    try:
        yield
    finally:
        for timer in timers:
            timer.cancel()
        sys.unraisablehook = old_hook
        signal.signal(signal.SIGINT, old_int)
        signal.signal(signal.SIGTERM, old_term)
    if seen:
        raise Terminated() if seen[0] == signal.SIGTERM else KeyboardInterrupt()
