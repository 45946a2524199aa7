"""The lb e2e fixtures (certificates, backends, lb processes) shared with tests/e2e/lb."""

from tests.e2e.lb.conftest import backends, certs, start_lb

__all__ = ["backends", "certs", "start_lb"]
