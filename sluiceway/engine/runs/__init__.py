"""The runs service: a run's whole life (start from any protocol, the run
log, attach/reattach with cursors, stop, the disconnect policy, shutdown
wind-down, the orphan sweep) and the observers that persist and account for
it, behind one contract (``observers``)."""

from .lifecycle import close_runs, open_runs, open_store, sweep_orphans
from .log_memory import Entry, MemoryRunLog, RunLog
from .metrics import MetricsObserver
from .observers import Observer, Outcome, batch_all, end_all, outcome_of
from .recorder import Recorder
from .service import Run, Runs, Source
from .stored import StoredResponse

__all__ = [
    "Entry",
    "MemoryRunLog",
    "MetricsObserver",
    "Observer",
    "Outcome",
    "Recorder",
    "Run",
    "RunLog",
    "Runs",
    "Source",
    "StoredResponse",
    "batch_all",
    "close_runs",
    "end_all",
    "open_runs",
    "open_store",
    "outcome_of",
    "sweep_orphans",
]
