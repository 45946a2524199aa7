"""Starting and stopping `corral server`: data directory, store, certificates, audit log,
bootstrap admin, listeners; SIGTERM/SIGINT stop it gracefully (a second SIGINT stops at once).

Start-up order, each step failing with a message that names the file or flag and the fix:
TLS-directory rules → data directory → store (one server per data directory) → certificates →
audit log → bootstrap admin → listeners. The lines it prints (stderr) are stable; scripts and
tests read them:

    corral server: CA corral-ca@1700000000 SHA256 AB:CD:…
    corral server: bootstrap password for admin: <password> (shown once; change it after login)
    corral server: listening on http://0.0.0.0:80 and https://0.0.0.0:443
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path

from corral import pki
from corral.server.api.settings import SERVER_URL_SETTING, Settings
from corral.server.app import build_app
from corral.server.audit import AuditLog, AuditSettings
from corral.server.auth import BOOTSTRAP_PASSWORD_ENV, bootstrap_admin
from corral.server.certs import (
    CHECK_INTERVAL_SECONDS,
    DEFAULT_TLS_DIR,
    GENERATED_SUBDIR,
    CertificateError,
    GeneratedCertificates,
    ProvidedCertificate,
    ServingCertificates,
    TlsPlan,
    plan_tls,
    read_cacerts,
)
from corral.server.context import ServerContext
from corral.server.https import server_url_origin
from corral.server.listeners import ListenAddresses, ListenError, Listeners
from corral.store import StoreError, open_store
from corral.store.sqlite import STORE_FILE_NAME

log = logging.getLogger("corral.server")

DEFAULT_DATA_DIR = Path("/var/lib/corral")
CERT_CHECK_INTERVAL_ENV = "CORRAL_CERT_CHECK_INTERVAL"


class StartupError(Exception):
    """The server cannot start; the message says why and what to change."""


@dataclass(frozen=True)
class ServerOptions:
    """Everything `corral server` is told on its command line and environment."""

    listen: ListenAddresses = field(default_factory=ListenAddresses)
    data_dir: Path = DEFAULT_DATA_DIR
    tls_dir: Path = DEFAULT_TLS_DIR
    no_cacerts: bool = False
    server_url: str = ""
    audit: AuditSettings = field(default_factory=AuditSettings)


def say(message: str) -> None:
    """One status line on stderr, flushed at once (scripts wait for these lines)."""
    print(f"corral server: {message}", file=sys.stderr, flush=True)


def check_server_url(value: str) -> str:
    """The --server-url value, checked: https://host[:port] or empty."""
    if value and (not value.startswith("https://") or not server_url_origin(value)):
        raise StartupError(
            f"--server-url {value!r} is not usable: give the URL clients use, such as "
            "https://rancher.example.com or https://rancher.example.com:8443"
        )
    return value.rstrip("/")


def prepare_data_dir(data_dir: Path) -> Path:
    """Create the data directory (mode 0700) and check it is writable."""
    try:
        data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise StartupError(
            f"cannot create data directory {data_dir}: {exc.strerror}: choose another --data-dir"
        ) from None
    if not os.access(data_dir, os.W_OK | os.X_OK):
        raise StartupError(f"data directory {data_dir} is not writable: fix its permissions")
    return data_dir.resolve()


def open_certificates(
    plan: TlsPlan, data_dir: Path, ctx: ServerContext
) -> tuple[ServingCertificates, str]:
    """The serving certificates and the `cacerts` PEM, as `plan` (the TLS-directory rules)
    calls for."""
    published = read_cacerts(plan.cacerts_file) if plan.cacerts_file else ""
    if plan.provided:
        return ProvidedCertificate(plan), published
    generated = GeneratedCertificates(
        data_dir / GENERATED_SUBDIR, server_url=lambda: ctx.server_url
    )
    if not plan.no_cacerts and plan.cacerts_file is None:
        published = generated.ca_pem
    say(f"CA {pki.common_name(generated.ca_cert)} SHA256 "
        f"{pki.fingerprint_sha256(generated.ca_cert)}")
    return generated, published


class Running:
    """A started server: its context, listeners and background tasks."""

    def __init__(self, ctx: ServerContext, listeners: Listeners) -> None:
        self.ctx = ctx
        self.listeners = listeners
        self.tasks: list[asyncio.Task[None]] = []

    async def stop(self, *, force: bool = False) -> None:
        """Drain the listeners, then close the audit log and the store."""
        for task in self.tasks:
            task.cancel()
        await self.listeners.stop(force=force)
        if self.ctx.audit is not None:
            await asyncio.to_thread(self.ctx.audit.close)
        await self.ctx.store.close()


async def start(options: ServerOptions) -> Running:
    """Bring the server up, or raise StartupError with nothing left running."""
    server_url = check_server_url(options.server_url)
    try:
        plan = plan_tls(options.tls_dir, no_cacerts=options.no_cacerts)
    except CertificateError as exc:
        raise StartupError(str(exc)) from None
    listeners = Listeners(options.listen)
    try:
        listeners.bind()
    except ListenError as exc:
        raise StartupError(str(exc)) from None
    try:
        data_dir = prepare_data_dir(options.data_dir)
        store = open_store(f"sqlite://{data_dir / STORE_FILE_NAME}")
    except (StoreError, OSError) as exc:
        listeners.close()
        raise StartupError(str(exc)) from None
    except StartupError:
        listeners.close()
        raise
    ctx = ServerContext(store=store, data_dir=data_dir, server_url=server_url)
    audit: AuditLog | None = None
    try:
        if not server_url:  # a stored server-url applies when the flag is not given
            ctx.server_url = await Settings(ctx, store).value(SERVER_URL_SETTING)
        ctx.certificates, ctx.cacerts_pem = open_certificates(plan, data_dir, ctx)
        if options.audit.enabled:
            audit = ctx.audit = AuditLog(options.audit)
        password = await bootstrap_admin(ctx)
        await listeners.start(build_app(ctx), ctx.certificates.ssl_context)
    except BaseException as exc:
        listeners.close()
        if audit is not None:
            audit.close()
        await store.close()
        if isinstance(exc, CertificateError | ListenError):
            raise StartupError(str(exc)) from None
        raise
    if password is not None:
        if os.environ.get(BOOTSTRAP_PASSWORD_ENV):
            say(f"bootstrap password for admin: taken from {BOOTSTRAP_PASSWORD_ENV}")
        else:
            say(f"bootstrap password for admin: {password} (shown once; change it after login)")
    http_port, https_port = listeners.ports
    address = options.listen.bind_address
    shown = f"[{address}]" if ":" in address else address
    say(f"listening on http://{shown}:{http_port} and https://{shown}:{https_port}")
    running = Running(ctx, listeners)
    running.tasks.append(asyncio.create_task(_renew_certificates(ctx)))
    return running


async def _renew_certificates(ctx: ServerContext) -> None:
    """Check the serving certificate every interval; a replaced generated CA is republished."""
    interval = float(os.environ.get(CERT_CHECK_INTERVAL_ENV, "") or CHECK_INTERVAL_SECONDS)
    certificates = ctx.certificates
    while True:
        await asyncio.sleep(interval)
        try:
            published_ca = isinstance(certificates, GeneratedCertificates) and (
                ctx.cacerts_pem == certificates.ca_pem
            )
            certificates.check()
            if published_ca and ctx.cacerts_pem != certificates.ca_pem:
                ctx.cacerts_pem = certificates.ca_pem
                say(f"new CA {pki.common_name(certificates.ca_cert)} SHA256 "
                    f"{pki.fingerprint_sha256(certificates.ca_cert)}")
        except Exception:
            log.exception("checking the serving certificate failed; will try again")


async def serve(options: ServerOptions) -> None:
    """Run until SIGTERM or SIGINT, then stop gracefully."""
    running = await start(options)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal() -> None:
        if stop.is_set():
            running.listeners.force()
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)
    try:
        await stop.wait()
        say("stopping")
        await running.stop()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(sig)
    say("stopped")


def configure_logging() -> None:
    """Log lines on stderr; uvicorn's own start/stop chatter only when something is wrong."""
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("uvicorn.error").setLevel(logging.WARNING)


def run(options: ServerOptions) -> int:
    """Run the server on a uvloop event loop; returns the process exit code."""
    import uvloop

    configure_logging()
    try:
        uvloop.run(serve(options))
    except StartupError as exc:
        print(f"corral server: error: {exc}", file=sys.stderr, flush=True)
        return 1
    return 0
