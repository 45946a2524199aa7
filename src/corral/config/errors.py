"""Configuration problems that name the file, line, key and the fix."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a configuration file, and how to fix it."""

    file: str
    line: int | None
    key: str
    message: str
    fix: str

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        key = f" {self.key}:" if self.key else ""
        fix = f" — fix: {self.fix}" if self.fix else ""
        return f"{where}:{key} {self.message}{fix}"


class ConfigError(Exception):
    """A configuration that cannot be used; carries every problem found, not just the first."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = list(problems)
        super().__init__(str(self))

    def __str__(self) -> str:
        return "\n".join(str(problem) for problem in self.problems)


def format_loc(loc: tuple[str | int, ...]) -> str:
    """Render a key path: ``("servers", 0, "tls")`` → ``"servers[0].tls"``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif out:
            out += f".{part}"
        else:
            out = str(part)
    return out
