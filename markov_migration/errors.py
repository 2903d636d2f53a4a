"""Errors that the command line turns into one clear line and exit code 2."""

from __future__ import annotations

from pathlib import Path


class InputError(ValueError):
    """Bad user input: a model file, a panel, a fit file or a command-line value.

    The message names where the problem is (file, line or row, column) and what
    is wrong, in one line, so the command line can print it as is.

    Parameters
    ----------
    message : str
        What is wrong.
    path : str or Path, optional
        The file the problem is in.
    line : int, optional
        1-based line in a text file (model files).
    row : int, optional
        1-based data row in a panel file (the header is not counted).
    column : str, optional
        Column name in a panel file.
    """

    def __init__(
        self,
        message: str,
        *,
        path: str | Path | None = None,
        line: int | None = None,
        row: int | None = None,
        column: str | None = None,
    ) -> None:
        self.message = message
        self.path = None if path is None else str(path)
        self.line = line
        self.row = row
        self.column = column
        super().__init__(self.__str__())

    def __str__(self) -> str:
        where = []
        if self.path is not None:
            where.append(self.path)
        if self.line is not None:
            where.append(f"line {self.line}")
        if self.row is not None:
            where.append(f"row {self.row}")
        if self.column is not None:
            where.append(f"column '{self.column}'")
        prefix = ", ".join(where)
        return f"{prefix}: {self.message}" if prefix else self.message


class SpecError(InputError):
    """A model file (TOML) is invalid."""


class PanelError(InputError):
    """A panel file is invalid."""


class FitFileError(InputError):
    """A file is not a readable markov-migration fit file."""
