"""Servers the bench starts. ``handwritten`` runs in kerve's venv (``python -m
bench.servers.handwritten``); the peer servers run by path in their own venvs."""
