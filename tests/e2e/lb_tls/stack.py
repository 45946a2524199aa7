"""The lb configuration the TLS-options tests share: every new key on one listener, a listener
without any of them, a listener with its own groups, and the plain-HTTP redirect."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from tests.e2e.lb.conftest import StartBackends, StartLb
from tests.e2e.lb.harness import OTHER_NAME, SERVER_NAME, UPSTREAM, Backend, Certs, LbProcess
from tests.support.net import free_port

DEAD_NAME = "dead.test"  # a server on the main port whose upstream listens nowhere
HSTS_MAIN = "max-age=31536000; includeSubDomains"
HSTS_OTHER = "max-age=86400"
HSTS_DEAD = "max-age=60"
ADDED = {"X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff"}
HIDDEN = ["Server", "X-Powered-By"]
OWN_GROUPS = ["P-384", "P-256"]
# What the backend adds to /status/200 when asked: the headers the lb should hide or replace.
UPSTREAM_HEADERS = {
    "Server": "backend/1.0",
    "X-Powered-By": "php/8",
    "Strict-Transport-Security": "max-age=5",
}
BANNER_PATH = "/status/200?" + "&".join(f"header={n}:{v}" for n, v in UPSTREAM_HEADERS.items())


@dataclass(frozen=True)
class Ports:
    """The lb's listeners."""

    main: int  # lb.test (HSTS, added and hidden headers), other.test (redirect), dead.test
    plain: int  # plain HTTP: 301 to HTTPS
    untouched: int  # TLS with none of the new keys
    own_groups: int  # TLS with tls.groups = OWN_GROUPS


@dataclass(frozen=True)
class OptionsLb:
    """The running lb and its ports."""

    lb: LbProcess
    ports: Ports


def _tls(certs: Certs, *, other: bool = False, **keys: Any) -> dict[str, Any]:
    pair = certs.other if other else certs.main
    return {"certificates": [{"cert": str(pair.chain), "key": str(pair.key)}], **keys}


def options_config(certs: Certs, backend: Backend) -> tuple[dict[str, Any], Ports]:
    """The configuration and its ports."""
    ports = Ports(free_port(), free_port(), free_port(), free_port())
    main = f"127.0.0.1:{ports.main}"
    servers: list[dict[str, Any]] = [
        {
            "listen": main,
            "server_name": SERVER_NAME,
            "tls": _tls(certs, hsts={"max_age": "365d", "include_subdomains": True}),
            "proxy_pass": UPSTREAM,
            "add_response_headers": ADDED,
            "hide_response_headers": HIDDEN,
        },
        {
            "listen": main,
            "server_name": OTHER_NAME,
            "tls": _tls(certs, other=True, hsts={"max_age": "1d"}),
            "redirect": f"https://{SERVER_NAME}$request_uri",
        },
        {
            "listen": main,
            "server_name": DEAD_NAME,
            "tls": _tls(certs, hsts={"max_age": 60}),
            "proxy_pass": "dead",
            "add_response_headers": {"X-Dead": "yes"},
        },
        {
            "listen": f"127.0.0.1:{ports.plain}",
            "server_name": SERVER_NAME,
            "redirect": "https://$server_name$request_uri",
        },
        {
            "listen": f"127.0.0.1:{ports.untouched}",
            "server_name": SERVER_NAME,
            "tls": _tls(certs),
            "proxy_pass": UPSTREAM,
        },
        {
            "listen": f"127.0.0.1:{ports.own_groups}",
            "server_name": SERVER_NAME,
            "tls": _tls(certs, groups=OWN_GROUPS),
            "proxy_pass": UPSTREAM,
        },
    ]
    config: dict[str, Any] = {
        "worker_processes": 1,
        "access_log": "off",
        "upstreams": {
            UPSTREAM: {"servers": [backend.address]},
            "dead": {"servers": [f"127.0.0.1:{free_port()}"], "connect_timeout": "2s"},
        },
        "servers": servers,
    }
    return config, ports


@pytest.fixture(scope="module")
def options_lb(certs: Certs, module_backends: StartBackends, module_start_lb: StartLb) -> OptionsLb:
    """The lb of `options_config` in front of one backend, shared by a module's tests."""
    config, ports = options_config(certs, module_backends(1)[0])
    return OptionsLb(module_start_lb(config), ports)
