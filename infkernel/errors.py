"""The one exception a user sees for a bad spec or bad input."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Where:
    """A place in spec text: 1-based line and column, and the line itself."""

    line: int
    column: int
    text: str

    def caret(self) -> str:
        return f"    {self.text}\n    {' ' * (self.column - 1)}^"


class SpecError(ValueError):
    """A spec (or an input to a compiled spec) is wrong.

    Carries the line, column and text of the offending spot when known, and
    renders them with a caret under the column::

        line 4, column 5: unknown op 'rleu', did you mean 'relu'?
            rleu
            ^
    """

    def __init__(self, message: str, where: Where | None = None, hint: str | None = None):
        self.message, self.where, self.hint = message, where, hint
        super().__init__(self._render())

    @property
    def line(self) -> int | None:
        return self.where.line if self.where else None

    @property
    def column(self) -> int | None:
        return self.where.column if self.where else None

    def _render(self) -> str:
        head = self.message
        if self.hint:
            head += f", {self.hint}" if self.hint.startswith("did you mean") else f" ({self.hint})"
        if self.where is None:
            return head
        return f"line {self.where.line}, column {self.where.column}: {head}\n{self.where.caret()}"

    def at(self, where: Where | None) -> "SpecError":
        """The same error, placed at `where` unless it already has a place."""
        if self.where is not None or where is None:
            return self
        return SpecError(self.message, where, self.hint)
