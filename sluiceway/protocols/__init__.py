"""Client-facing wire protocols: one module each, with decode_request,
an Encoder (canonical event batches → SSE bytes) and encode_error."""
