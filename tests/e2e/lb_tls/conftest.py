"""Fixtures for the TLS-options tests of `corral lb` (key-exchange groups, HSTS, response
headers): the HTTP/1.1 suite's certificates, backends and lb processes (tests/e2e/lb/conftest.py),
and `options_lb`, one lb with every option, shared by the tests of a module (stack.py)."""

from __future__ import annotations

from tests.e2e.lb.conftest import (  # noqa: F401  (fixtures and the report hook, re-exported)
    _shared_lb_output,
    backends,
    certs,
    module_backends,
    module_start_lb,
    pytest_runtest_makereport,
    start_lb,
)
from tests.e2e.lb_tls.stack import options_lb  # noqa: F401  (a fixture, re-exported)
