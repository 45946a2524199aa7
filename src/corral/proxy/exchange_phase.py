"""The phases of an exchange and the moves between them, as one table (pure).

An exchange has two directions. The request direction has one fact, `request_done` (the client
has sent the whole request); everything else is the response direction's phase:

    phase       what is going on                                         may move to
    NEW         parsed; waits its turn (pipelining, an HTTP/2 batch)     CONNECTING SENT DONE
                                                                          ABANDONED
    CONNECTING  an endpoint is chosen, a connection to it is opening     CONNECTING SENT DONE
                                                                          ABANDONED
    SENT        the request is on an upstream connection, no answer yet  CONNECTING SENT
                                                                          RESPONDING TUNNEL DONE
                                                                          ABANDONED
    RESPONDING  the response head went to the client; the body streams   DONE ABANDONED
    DONE        the response is complete, or the proxy answered itself   (final)
    TUNNEL      101: the two connections are a byte tunnel now           (final)
    ABANDONED   the client left, or the response broke after it started  (final)

`CONNECTING`/`SENT` → `CONNECTING`/`SENT` is a retry (the next endpoint, or the same one on a
fresh connection after a pooled one was found closed); `DONE` from before `RESPONDING` is a
local answer (a redirect, 502/503/504). What used to be two booleans is derived:
`response_started` = `RESPONDING` or later, `response_done` = `DONE`, `TUNNEL` or
`ABANDONED`. The other flags an exchange keeps are not phases but facts for later decisions:
whether any of the request reached an endpoint (`sent_upstream`: may it be replayed?), whether
its connection came from the keep-alive pool (`reused`, `fresh_retry`: a closed pooled
connection earns one retry), whether it is counted in its endpoint's `active`, and what the
client connection does afterwards (`keep_alive`, `close_after`).
"""

from __future__ import annotations

from collections.abc import Callable
from enum import IntEnum


class Phase(IntEnum):
    """Where the response direction of an exchange is (ordered: later phases compare greater)."""

    NEW = 0
    CONNECTING = 1
    SENT = 2
    RESPONDING = 3
    DONE = 4
    TUNNEL = 5
    ABANDONED = 6


FINAL = frozenset({Phase.DONE, Phase.TUNNEL, Phase.ABANDONED})

NEXT: dict[Phase, frozenset[Phase]] = {
    Phase.NEW: frozenset({Phase.CONNECTING, Phase.SENT, Phase.DONE, Phase.ABANDONED}),
    Phase.CONNECTING: frozenset({Phase.CONNECTING, Phase.SENT, Phase.DONE, Phase.ABANDONED}),
    Phase.SENT: frozenset(
        {
            Phase.CONNECTING,
            Phase.SENT,
            Phase.RESPONDING,
            Phase.TUNNEL,
            Phase.DONE,
            Phase.ABANDONED,
        }
    ),
    Phase.RESPONDING: frozenset({Phase.DONE, Phase.ABANDONED}),
    Phase.DONE: frozenset(),
    Phase.TUNNEL: frozenset(),
    Phase.ABANDONED: frozenset(),
}


class IllegalTransition(Exception):  # not RuntimeError: mypyc compiles this module
    """An exchange was asked to move where the table does not allow (a bug in the proxy)."""


# Called with (exchange, the phase it moves to) before every move when set: the tests record
# the paths exchanges take with it (patching a method does not reach compiled code). None in
# the proxy itself.
observer: Callable[[object, Phase], None] | None = None


def check(current: Phase, following: Phase) -> Phase:
    """`following` if the table allows the move from `current`; IllegalTransition otherwise."""
    if following not in NEXT[current]:
        raise IllegalTransition(f"an exchange cannot go from {current.name} to {following.name}")
    return following
