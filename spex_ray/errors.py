"""Errors a run reports to its user in one line (the CLI prints the message, no traceback)."""

from __future__ import annotations


class RunError(RuntimeError):
    """A run cannot go on for a reason outside the code: the cluster cannot host its actors,
    an engine does not start (a model path that does not exist), ...; the message says
    which and what to do."""
