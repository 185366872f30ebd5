"""User-facing errors: every failure a user can fix is a BertcliError with one clear line."""

from __future__ import annotations

from pathlib import Path


class BertcliError(Exception):
    """An error the user can act on: says what went wrong, where, and how to fix it.

    `exit_code` 1 is a failure of the run; 2 is bad usage (conflicting or invalid options).
    """

    exit_code = 1

    def __init__(
        self,
        message: str,
        *,
        file: str | Path | None = None,
        line: int | None = None,
        row: int | None = None,
        column: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.message = message
        self.file = None if file is None else str(file)
        self.line = line
        self.row = row
        self.column = column
        self.hint = hint
        super().__init__(str(self))

    def __str__(self) -> str:
        where = []
        if self.file is not None:
            where.append(self.file if self.line is None else f"{self.file}:{self.line}")
        if self.row is not None:
            where.append(f"row {self.row}")
        if self.column is not None:
            where.append(f"column {self.column!r}")
        text = (", ".join(where) + ": " if where else "") + self.message
        if self.hint:
            text += f" ({self.hint})"
        return text


class UsageError(BertcliError):
    """Options that cannot work together or values out of range."""

    exit_code = 2


class DataError(BertcliError):
    """Input data that cannot be read or does not fit the task."""


class ModelError(BertcliError):
    """A model or tokenizer that cannot be found, loaded or saved."""


class Interrupted(BertcliError):
    """The run was stopped (Ctrl-C); the state needed to resume was saved."""

    exit_code = 130
