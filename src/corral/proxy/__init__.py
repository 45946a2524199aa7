"""The Layer-7 proxy engine; `corral lb` and the per-node ingress are two configurations of it."""

from corral import _native

_native.activate()  # the mypyc-compiled hot path, when built from exactly these sources
