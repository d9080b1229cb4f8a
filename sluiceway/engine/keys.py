"""Virtual API keys for the command line: the store's key records, reached
through the engine (the CLI never imports the store)."""

from ..store.keys import create_key, list_keys, revoke_key
from .runs.lifecycle import open_store

__all__ = ["create_key", "list_keys", "open_store", "revoke_key"]
