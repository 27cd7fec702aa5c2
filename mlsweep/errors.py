"""Errors a user can fix: the CLI prints each line and exits 2, never a traceback."""

from __future__ import annotations


class UserError(ValueError):
    """Bad input (sweep file, data folder, run folder, address); one line per problem."""

    def __init__(self, *lines: str) -> None:
        super().__init__("\n".join(lines))
        self.lines = list(lines)
