"""HTTP: routes, streaming responses and middleware. The only layer that
knows about HTTP."""
