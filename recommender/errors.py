"""Errors raised when input breaks a data contract.

Every error names the file, the line (1-based, the header of a CSV is line 1) and the
field, so that data staff can fix the row without guessing.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RowError:
    file: str
    line: int
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: field '{self.field}': {self.message}"


class FieldError(ValueError):
    """One field of one object breaks its contract: what a row validator raises, and what
    a loader turns into a RowError (adding the file and line) or the API into a 422
    (adding the item's place in the body)."""

    def __init__(self, field: str, message: str):
        super().__init__(f"field '{field}': {message}")
        self.field, self.message = field, message


class ConfigError(ValueError):
    """A config file that cannot be used (missing, not TOML, a bad field): the message is
    one line that names the file and the field."""


class ContractError(ValueError):
    """One or more rows of a file break its contract. Nothing of the file is loaded."""

    def __init__(self, errors: list[RowError], truncated: bool = False):
        self.errors = list(errors)
        self.truncated = truncated
        lines = [str(e) for e in self.errors]
        if truncated:
            lines.append(f"(stopped at {len(self.errors)} errors; the rest of the file was not checked)")
        super().__init__("\n".join(lines))


class ErrorCollector:
    """Collects row errors up to a limit; raising is left to the caller at the end."""

    def __init__(self, file: str, max_errors: int = 1):
        self.file = file
        self.max_errors = max(1, max_errors)
        self.errors: list[RowError] = []
        self.truncated = False

    def add(self, line: int, field: str, message: str) -> None:
        if len(self.errors) < self.max_errors:
            self.errors.append(RowError(self.file, line, field, message))
        else:
            self.truncated = True

    @property
    def full(self) -> bool:
        return len(self.errors) >= self.max_errors

    def raise_if_any(self) -> None:
        if self.errors:
            stopped_early = self.truncated or (self.full and self.max_errors > 1)
            raise ContractError(self.errors, stopped_early)
