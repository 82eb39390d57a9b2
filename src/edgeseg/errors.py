"""One exception type for everything a user can get wrong: its message is the one line the CLI prints; and
``Problem``, what a batch or stream command lists for each item it skipped or could not finish."""

from __future__ import annotations

import os
from typing import NamedTuple


class EdgesegError(Exception):
    """A problem with the user's input, phrased as one line that names the file and the problem."""

    def __init__(self, message: str, path: str | os.PathLike | None = None) -> None:
        self.path = None if path is None else os.fspath(path)
        self.problem = message  # the line without the path: what a list of skipped items shows beside each path
        super().__init__(f"{self.path}: {message}" if self.path is not None else message)


class Problem(NamedTuple):
    """An item a command skipped or could not finish: ``where`` (a file, argument, source or output) and the
    one-line ``problem``. A tuple: ``for where, problem in ...`` unpacks it, and JSON writes it as the pair."""

    where: str
    problem: str

    def __str__(self) -> str:
        return f"{self.where}: {self.problem}"

    def error(self) -> EdgesegError:
        """The one-line error of this problem (what a command raises when it is the only item it had)."""
        return EdgesegError(self.problem, self.where)


def first_line(exc: BaseException) -> str:
    """The first line of a library's exception message (its type name when it has none): what a one-line
    EdgesegError quotes of it."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
