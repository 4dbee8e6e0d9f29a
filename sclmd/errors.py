"""Errors meant for a person, not a traceback."""

from __future__ import annotations


class SclmdError(Exception):
    """A problem the user can fix: the message says what, where, and what to do.

    The CLI prints it without a traceback and exits non-zero.
    """


class ClipRejected(Exception):
    """One input clip or image cannot be used; the run counts it and goes on."""

    def __init__(self, reason: str, path: str | None = None):
        self.reason = reason
        self.path = path
        super().__init__(f"{path}: {reason}" if path else reason)
