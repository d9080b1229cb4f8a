"""The conversation store (sessions, messages, debug traces). Imports only
``sluiceway.core`` from the project."""

from .store import DEFAULT_URL, Store, Turn, message_text, new_id, normalize_url

__all__ = ["DEFAULT_URL", "Store", "Turn", "message_text", "new_id", "normalize_url"]
