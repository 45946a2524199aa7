"""Which CPU runs what: the proxy under test, the backend, and the load (wrk + idle client)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

PLACEMENTS = ("proxy-alone", "proxy+backend", "none")
DEFAULT_PLACEMENT = "proxy-alone"


@dataclass(frozen=True)
class Placement:
    """CPU numbers for each role; None means the kernel places that process."""

    name: str
    proxy: int | None
    backend: int | None
    load: int | None

    def describe(self) -> str:
        """One human line, for the report's header."""
        if self.proxy is None:
            return "no CPU pinning (the kernel places every process)"
        if self.proxy == self.backend:
            return (
                f"proxy and backend pinned to CPU {self.proxy}, "
                f"wrk and the idle-connection client to CPU {self.load}"
            )
        return (
            f"proxy pinned alone to CPU {self.proxy}; backend, wrk and the idle-connection "
            f"client to CPU {self.load}"
        )


def choose_placement(name: str, available: Sequence[int]) -> Placement:
    """The placement called `name` on these CPUs; no pinning at all with fewer than two."""
    if name not in PLACEMENTS:
        raise ValueError(f"unknown placement {name!r}; choose one of {', '.join(PLACEMENTS)}")
    cpus = sorted(available)
    if name == "none" or len(cpus) < 2:
        return Placement("none", None, None, None)
    first, last = cpus[0], cpus[-1]
    if name == "proxy+backend":
        return Placement(name, first, first, last)
    return Placement(name, first, last, last)
