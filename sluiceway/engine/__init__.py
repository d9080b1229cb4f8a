"""Routing, resilience, hub, agent loop and workflows: everything between a
decoded request and a provider, with no HTTP in it."""
