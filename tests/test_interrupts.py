"""interrupts.reraise_after: an interrupt that lands where Python only prints it still stops the block."""

from __future__ import annotations

import signal
import threading
import time

import pytest

from markov_migration.interrupts import Terminated, reraise_after

pytestmark = pytest.mark.skipif(
    threading.current_thread() is not threading.main_thread(), reason="signals need the main thread"
)


class _SignalWhenCollected:
    def __init__(self, signum: int) -> None:
        self.signum = signum

    def __del__(self) -> None:
        # The handler raises here, inside __del__, where Python only prints exceptions.
        signal.raise_signal(self.signum)


def _block(signum: int) -> float:
    start = time.monotonic()
    _SignalWhenCollected(signum)  # freed at once (reference count), no collector run
    while time.monotonic() - start < 60:  # the block goes on unless interrupted again
        time.sleep(0.01)
    return time.monotonic() - start


@pytest.mark.parametrize(
    ("signum", "error"), [(signal.SIGINT, KeyboardInterrupt), (signal.SIGTERM, Terminated)]
)
def test_an_interrupt_swallowed_by_a_finalizer_is_delivered_to_the_block(capfd, signum, error):
    start = time.monotonic()
    with pytest.raises(error):
        with reraise_after():
            _block(signum)
    assert time.monotonic() - start < 30  # interrupted, not run to its end (60 s)
    err = capfd.readouterr().err
    assert "Exception ignored" not in err and "Traceback" not in err, err


def test_an_interrupt_in_the_block_is_raised_after_a_callee_swallows_it():
    def swallowing() -> str:
        try:
            signal.raise_signal(signal.SIGINT)
        except KeyboardInterrupt:
            return "partial draws"
        return "all draws"

    with pytest.raises(KeyboardInterrupt):
        with reraise_after():
            assert swallowing() == "partial draws"


def test_handlers_are_restored():
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    with reraise_after():
        pass
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before
