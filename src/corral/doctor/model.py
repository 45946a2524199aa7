"""What doctor checks and what it found: the target, each check's result, the whole report."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from urllib.parse import urlsplit

DEFAULT_IDLE_S = 75.0  # longer than NGINX's default proxy_read_timeout of 60 s
DEFAULT_TIMEOUT_S = 10.0
DEFAULT_HTTP_PORT = 80
HTTPS_PORT = 443


class Status(StrEnum):
    """A check's outcome; only FAIL counts towards the exit status."""

    PASS = "pass"
    FAIL = "fail"
    WARN = "warn"  # works, but something needs attention soon (expiry, an untested part)
    SKIP = "skip"  # not run, or nothing to check here


@dataclass(frozen=True, slots=True)
class Fix:
    """How to mend a failure: the NGINX directive and the `corral lb` key, or (for what is not
    the load balancer's doing) one sentence."""

    nginx: str = ""
    corral_lb: str = ""
    other: str = ""

    def line(self) -> str:
        """The one `fix:` line of the report (without the `fix: ` prefix)."""
        parts = []
        if self.nginx:
            parts.append(f"NGINX: {self.nginx}")
        if self.corral_lb:
            parts.append(f"corral lb: {self.corral_lb}")
        if self.other:
            parts.append(self.other)
        return " | ".join(parts)


@dataclass(frozen=True, slots=True)
class CheckResult:
    """One line of the report: which check, its outcome, what it saw, and the fix if any."""

    id: str
    title: str
    status: Status
    saw: str
    fix: Fix | None = None


@dataclass(frozen=True, slots=True)
class Target:
    """The install doctor looks at and how (from the command line)."""

    fqdn: str
    port: int = HTTPS_PORT
    http_port: int | None = DEFAULT_HTTP_PORT  # None: no port-80 check
    ca_file: Path | None = None
    nodes: tuple[str, ...] = ()
    idle_s: float = DEFAULT_IDLE_S
    token: str | None = field(default=None, repr=False)  # never printed
    ca_checksum: str | None = None
    no_cacerts: bool = False
    timeout_s: float = DEFAULT_TIMEOUT_S

    @property
    def authority(self) -> str:
        """`fqdn` or `fqdn:port` as it goes into a URL and the Host header."""
        host = f"[{self.fqdn}]" if ":" in self.fqdn else self.fqdn
        return host if self.port == HTTPS_PORT else f"{host}:{self.port}"

    @property
    def url(self) -> str:
        """`https://fqdn[:port]`."""
        return f"https://{self.authority}"

    def https_url(self, path: str) -> str:
        """An https URL of this install."""
        return self.url + path

    def http_url(self, path: str) -> str:
        """The plain-HTTP URL of `path` on the port-80 listener."""
        host = f"[{self.fqdn}]" if ":" in self.fqdn else self.fqdn
        port = "" if self.http_port == DEFAULT_HTTP_PORT else f":{self.http_port}"
        return f"http://{host}{port}{path}"

    @property
    def is_address(self) -> bool:
        """True when the URL names an IP address instead of a DNS name."""
        try:
            ipaddress.ip_address(self.fqdn)
        except ValueError:
            return False
        return True


class TargetError(ValueError):
    """A URL or option doctor cannot use; the message says which and how to write it."""


def parse_url(text: str) -> tuple[str, int]:
    """`https://FQDN[:port][/]` → (fqdn lower-case, port); TargetError otherwise."""
    parts = urlsplit(text.strip())
    example = "write it as https://rancher.example.com (or https://rancher.example.com:8443)"
    if parts.scheme != "https":
        raise TargetError(f"URL {text!r}: the scheme must be https; {example}")
    if parts.username or parts.password:
        raise TargetError(f"URL {text!r}: no user or password in the URL; use --token")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise TargetError(f"URL {text!r}: no path or query, just the origin; {example}")
    try:
        port = parts.port or HTTPS_PORT
    except ValueError:
        raise TargetError(f"URL {text!r}: the port is not a number in 1-65535") from None
    if not parts.hostname:
        raise TargetError(f"URL {text!r}: no host name; {example}")
    return parts.hostname.lower().rstrip("."), port


def parse_node(text: str) -> str:
    """`http://n1` or `https://n1:8443` (no path) → the URL without a trailing slash."""
    parts = urlsplit(text.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise TargetError(
            f"--nodes {text!r}: each node is a URL such as http://10.0.0.11 or http://node-1:80"
        )
    if parts.path not in ("", "/") or parts.query:
        raise TargetError(f"--nodes {text!r}: give the node's origin only (doctor adds /healthz)")
    try:
        _ = parts.port
    except ValueError:
        raise TargetError(f"--nodes {text!r}: the port is not a number in 1-65535") from None
    return f"{parts.scheme}://{parts.netloc}"


@dataclass(frozen=True, slots=True)
class Report:
    """Every check's result, in the catalogue's order."""

    url: str
    results: tuple[CheckResult, ...]

    @property
    def failed(self) -> int:
        """How many checks failed (the exit status)."""
        return sum(1 for result in self.results if result.status is Status.FAIL)

    def counts(self) -> dict[Status, int]:
        """Number of results per status."""
        counts = dict.fromkeys(Status, 0)
        for result in self.results:
            counts[result.status] += 1
        return counts

    def get(self, check_id: str) -> CheckResult:
        """The result of one check (KeyError when it is not in the report)."""
        for result in self.results:
            if result.id == check_id:
                return result
        raise KeyError(check_id)
