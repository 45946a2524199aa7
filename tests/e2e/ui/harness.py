"""The web UI's test system: a real `corral server` (generated bootstrap password, API audit
log on) behind a real `corral lb` (TLS for FQDN, HTTP/2), and Debian's chromium driven by
Playwright, resolving FQDN to 127.0.0.1 and trusting the lb's test certificate by its key.

Screenshots go to a temporary directory (printed), or to $CORRAL_UI_SCREENSHOTS when set (how
the pictures in docs/ui.md are made).
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, sync_playwright

from tests.e2e.server.core_harness import (
    FQDN,
    CorralLb,
    CorralServer,
    process_output,
    start_corral_lb,
    start_server,
)
from tests.support.net import wait_until

CHROMIUM = "/usr/bin/chromium"
PASSWORD_LINE = re.compile(r"bootstrap password for admin: (\S+) \(shown once")
NEW_ADMIN_PASSWORD = "corral-ui-admin-password-1"
VIEWPORT = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
UI_TIMEOUT_MS = 15_000


def spki_sha256(cert_pem: bytes) -> str:
    """base64 SHA-256 of a certificate's public key, the form of chromium's
    --ignore-certificate-errors-spki-list (the test lb's certificate is trusted by its key,
    nothing else is)."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    der = cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(der).digest()).decode()


@dataclass
class UiSystem:
    """The running system and the browser the tests share."""

    server: CorralServer
    lb: CorralLb
    playwright: Playwright
    browser: Browser
    shots: Path
    base_dir: Path
    bootstrap_password: str
    admin_password: str = ""  # set once the first login changed it
    request_urls: list[str] = field(default_factory=list)
    console: list[str] = field(default_factory=list)
    contexts: list[BrowserContext] = field(default_factory=list)
    secrets: list[str] = field(default_factory=list)  # token secrets that must appear nowhere
    past_output: str = ""  # what servers stopped by restart_server printed

    @property
    def base_url(self) -> str:
        """The URL a person types: https://FQDN:<lb port>."""
        return f"https://{FQDN}:{self.lb.tls_port}"

    def http(self, **kwargs: Any) -> httpx.Client:
        """An httpx client to the lb (HTTP/2) that trusts its CA and resolves FQDN to 127.0.0.1."""
        context = ssl.create_default_context(cafile=str(self.lb.ca))
        transport = httpx.HTTPTransport(verify=context, http2=True)
        return httpx.Client(base_url=self.base_url, timeout=15,
                            transport=_Resolving(transport, self.lb.tls_port), **kwargs)

    def new_context(self, *, viewport: dict[str, int] | None = None) -> BrowserContext:
        """A fresh browser context (its own cookies) that records every request URL and console
        line (checked for secrets later)."""
        context = self.browser.new_context(
            viewport=viewport or VIEWPORT,  # type: ignore[arg-type]
            base_url=self.base_url,
        )
        context.grant_permissions(["clipboard-read", "clipboard-write"], origin=self.base_url)
        context.set_default_timeout(UI_TIMEOUT_MS)
        context.on("request", lambda request: self.request_urls.append(request.url))
        context.on("console", lambda message: self.console.append(message.text))
        self.contexts.append(context)
        return context

    def shot(self, page: Page, name: str, *, full_page: bool = False) -> Path:
        """A PNG of the page in the screenshot directory."""
        path = self.shots / f"{name}.png"
        page.screenshot(path=str(path), full_page=full_page)
        return path

    def login(self, page: Page, username: str, password: str) -> None:
        """Log in through the login page (leaves the page wherever the UI sends it)."""
        page.goto("/login")
        page.get_by_label("Username").fill(username)
        page.get_by_label("Password").fill(password)
        page.get_by_role("button", name="Log in").click()
        page.wait_for_function("() => !location.pathname.startsWith('/login')")

    def admin_token(self) -> str:
        """A fresh API token of admin (through the lb)."""
        with self.http() as client:
            response = client.post("/v3-public/localProviders/local?action=login",
                                   json={"username": "admin", "password": self.admin_password})
        response.raise_for_status()
        token = str(response.json()["token"])
        self.secrets.append(token.partition(":")[2])
        return token

    def ensure_admin_password(self) -> str:
        """The admin password after the first login's change (made through the API when the
        first-login test did not run)."""
        if not self.admin_password:
            with self.http() as client:
                login = client.post("/v3-public/localProviders/local?action=login",
                                    json={"username": "admin", "password": self.bootstrap_password})
                login.raise_for_status()
                token = login.json()["token"]
                client.post("/v3/users?action=changepassword",
                            headers={"Authorization": f"Bearer {token}"},
                            json={"currentPassword": self.bootstrap_password,
                                  "newPassword": NEW_ADMIN_PASSWORD}).raise_for_status()
            self.admin_password = NEW_ADMIN_PASSWORD
        return self.admin_password

    def restart_server(self) -> None:
        """Start the server again on the same ports and data directory (after a test stopped
        it)."""
        self.past_output += self.server.output()
        self.server = start_server(
            self.base_dir / "server-again", data_dir=self.server.data_dir,
            tls_dir=self.server.tls_dir, ports=(self.server.http_port, self.server.https_port),
            env=self.server.env,
        )

    def outputs(self) -> str:
        """Everything the server and the lb printed."""
        return self.past_output + self.server.output() + process_output(self.lb.proc)


class _Resolving(httpx.BaseTransport):
    """Sends requests for FQDN to 127.0.0.1 (keeping Host and SNI as FQDN)."""

    def __init__(self, inner: httpx.HTTPTransport, port: int) -> None:
        self.inner = inner
        self.port = port

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        request.extensions = {**request.extensions, "sni_hostname": FQDN}
        request.url = request.url.copy_with(host="127.0.0.1")
        request.headers["Host"] = f"{FQDN}:{self.port}"
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()


def server_env(audit_dir: Path) -> dict[str, str]:
    """No CORRAL_BOOTSTRAP_PASSWORD (so the password is generated and must be changed), the
    audit log at level 2 (request bodies, redacted), a ping every second on /v3/subscribe."""
    return {
        "CORRAL_BOOTSTRAP_PASSWORD": "",
        "AUDIT_LEVEL": "2",
        "AUDIT_LOG_PATH": str(audit_dir / "corral-api-audit.log"),
        "CORRAL_SUBSCRIBE_PING_SECONDS": "1",
    }


def running_system(base: Path, shots: Path) -> Iterator[UiSystem]:
    """Start the server, the lb and chromium; yield; stop them all (generator for a fixture)."""
    server = start_server(base / "server", env=server_env(base / "audit"))
    lb: CorralLb | None = None
    playwright: Playwright | None = None
    system: UiSystem | None = None
    try:
        match = wait_until(lambda: PASSWORD_LINE.search(server.output()), timeout=15,
                           what="the bootstrap password line")
        assert match is not None
        lb = start_corral_lb(base / "lb", server.http_port)
        cert_pem = (base / "lb" / "fullchain.pem").read_bytes()
        playwright = sync_playwright().start()
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                f"--host-resolver-rules=MAP {FQDN} 127.0.0.1",
                f"--ignore-certificate-errors-spki-list={spki_sha256(cert_pem)}",
            ],
        )
        system = UiSystem(server, lb, playwright, browser, shots, base, match.group(1))
        yield system
        for context in system.contexts:
            context.close()
        browser.close()
    finally:
        if playwright is not None:
            playwright.stop()
        if lb is not None:
            lb.stop()
            print(f"--- corral lb output ---\n{process_output(lb.proc)[-4000:]}")
        final = system.server if system is not None else server  # the restarted one, if any
        final.stop()
        print(f"--- corral server output ---\n{final.output()[-6000:]}")


def screenshot_dir(default: Path) -> Path:
    """$CORRAL_UI_SCREENSHOTS (created) or `default`."""
    wanted = os.environ.get("CORRAL_UI_SCREENSHOTS")
    path = Path(wanted) if wanted else default
    path.mkdir(parents=True, exist_ok=True)
    return path
