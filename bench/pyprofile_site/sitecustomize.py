"""Imported by Python at start-up when ``bench.pyprofile`` puts this
directory on PYTHONPATH, and only then active (``SLUICEWAY_PYPROFILE`` set):
SIGUSR1 starts cProfile on the main thread (the event loop's), SIGUSR2 stops
it and writes the stats to ``$SLUICEWAY_PYPROFILE.<n>``."""

import os
import signal

_OUT = os.environ.get("SLUICEWAY_PYPROFILE")

if _OUT:
    import cProfile

    _state: dict = {"prof": None, "n": 0}

    def _start(signum, frame) -> None:
        prof = cProfile.Profile()
        _state["prof"] = prof
        prof.enable()

    def _stop(signum, frame) -> None:
        prof = _state["prof"]
        if prof is None:
            return
        prof.disable()
        _state["prof"] = None
        _state["n"] += 1
        path = f"{_OUT}.{_state['n']}"
        prof.dump_stats(path + ".tmp")
        os.replace(path + ".tmp", path)  # whole, or not there yet

    signal.signal(signal.SIGUSR1, _start)
    signal.signal(signal.SIGUSR2, _stop)
