"""Provider instances as data, changed while the server runs: the kinds
catalogue and form schema (``catalogue``), CRUD with per-field validation
(``admin``), atomic config and ``.env`` writes (``files``), connection tests
(``probe``), hot reload with deferred close of replaced instances
(``inflight``) and hand-edit / replica pickup (``sync``)."""
