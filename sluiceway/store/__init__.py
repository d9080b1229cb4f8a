"""The conversation store (sessions, messages, debug traces). Imports only
``sluiceway.core`` from the project."""

from .store import ANY, DEFAULT_URL, Owner, Store, Trace, Turn, message_text, new_id, normalize_url, owns

__all__ = ["ANY", "DEFAULT_URL", "Owner", "Store", "Trace", "Turn", "message_text", "new_id", "normalize_url", "owns"]
