"""sluiceway: an LLM streaming gateway and chat server."""

__version__ = "0.1.0"
