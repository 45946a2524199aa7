"""Starting and stopping `corral server`: data directory, store, certificates, audit log,
bootstrap admin, listeners, the leader election and its duties; SIGTERM/SIGINT stop it
gracefully (a second SIGINT stops at once).

Start-up order, each step failing with a message that names the file or flag and the fix:
TLS-directory and --etcd-* rules → listeners bound → data directory → store (the embedded one,
one server per data directory; or the etcd cluster of --etcd-servers) → certificates (with etcd,
the CA shared through the store) → audit log → bootstrap admin → listeners serve → election.
The lines it prints (stderr) are stable; scripts and tests read them:

    corral server: CA corral-ca@1700000000 SHA256 AB:CD:…
    corral server: bootstrap password for admin: <password> (shown once; change it after login)
    corral server: listening on http://0.0.0.0:80 and https://0.0.0.0:443
    corral server: store etcd https://10.0.0.1:2379,… (prefix /corral-ha) as host:443/1234
    corral server: leader (duties: ca-renewal, token-cleanup; lease 3f2a…, TTL 5s)
    corral server: no longer the leader (<reason>)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path

from corral import pki
from corral.server.app import build_app
from corral.server.audit import AuditLog, AuditSettings
from corral.server.auth import BOOTSTRAP_PASSWORD_ENV, bootstrap_admin
from corral.server.backend import (
    EtcdFlags,
    EtcdPlan,
    StoreStartError,
    check_etcd_flags,
    open_server_store,
)
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
from corral.server.duties import Duties, Duty, ca_renewal, token_cleanup
from corral.server.election import (
    DEFAULT_TTL_SECONDS,
    ELECTION_TTL_ENV,
    Candidate,
    Election,
)
from corral.server.https import server_url_origin
from corral.server.listeners import ListenAddresses, ListenError, Listeners
from corral.server.shared_ca import (
    SOURCE_FILE,
    SOURCE_GENERATED,
    SOURCE_NONE,
    SYSTEM_PREFIX,
    SharedCaFollower,
    load_or_create_ca,
    publish_cacerts,
    renew_ca_if_due,
)
from corral.store.base import Store, StoreError
from corral.store.lock import DataDirLock
from corral.tasks import cancel_and_wait

log = logging.getLogger("corral.server")

DEFAULT_DATA_DIR = Path("/var/lib/corral")
CERT_CHECK_INTERVAL_ENV = "CORRAL_CERT_CHECK_INTERVAL"
ELECTION_KEY = SYSTEM_PREFIX + "election/duties"


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
    etcd: EtcdFlags = field(default_factory=EtcdFlags)


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


def server_identity(https_port: int) -> str:
    """This server's name in the election: host, HTTPS port and pid (unique per process)."""
    return f"{socket.gethostname()}:{https_port}/{os.getpid()}"


def election_ttl() -> int:
    """The election lease TTL in seconds (CORRAL_ELECTION_TTL, default 5)."""
    raw = os.environ.get(ELECTION_TTL_ENV, "")
    if not raw:
        return DEFAULT_TTL_SECONDS
    if not raw.isdigit() or int(raw) < 1:
        raise StartupError(f"{ELECTION_TTL_ENV}={raw!r} is not valid: use a whole number of "
                           "seconds >= 1")
    return int(raw)


@dataclass
class Certificates:
    """What start-up decided about TLS: the serving certificates and the `cacerts` view."""

    serving: ServingCertificates
    cacerts_pem: str
    source: str  # SOURCE_GENERATED, SOURCE_FILE or SOURCE_NONE


async def open_certificates(
    plan: TlsPlan, data_dir: Path, ctx: ServerContext, *, shared: bool, identity: str
) -> Certificates:
    """The serving certificates and this server's `cacerts`, as `plan` (the TLS-directory
    rules) calls for; with `shared`, the generated CA is the one in the store."""
    published = read_cacerts(plan.cacerts_file) if plan.cacerts_file else ""
    source = SOURCE_FILE if plan.cacerts_file else SOURCE_NONE
    if plan.provided:
        return Certificates(ProvidedCertificate(plan), published, source)
    directory = data_dir / GENERATED_SUBDIR
    shared_ca = None
    where = ""
    if shared:
        stored, created = await load_or_create_ca(ctx.store, identity, seed_dir=directory)
        shared_ca = (stored.cert, stored.key)
        where = " (shared, created in the store)" if created else " (shared, from the store)"
    generated = await asyncio.to_thread(
        GeneratedCertificates, directory, server_url=lambda: ctx.server_url, shared_ca=shared_ca
    )
    if not plan.no_cacerts and plan.cacerts_file is None:
        published, source = generated.ca_pem, SOURCE_GENERATED
    say(f"CA {pki.common_name(generated.ca_cert)} SHA256 "
        f"{pki.fingerprint_sha256(generated.ca_cert)}{where}")
    return Certificates(generated, published, source)


async def open_store(plan: EtcdPlan | None, data_dir: Path) -> tuple[Store, DataDirLock | None]:
    """The store, and (with etcd) the lock that keeps this data directory to one server."""
    lock = None
    if plan is not None:
        try:
            lock = DataDirLock(data_dir).acquire()
        except StoreError as exc:
            raise StartupError(str(exc)) from None
    try:
        store = await open_server_store(data_dir, plan)
    except StoreStartError as exc:
        if lock is not None:
            lock.release()
        raise StartupError(str(exc)) from None
    return store, lock


class Running:
    """A started server: its context, listeners, election, duties and background tasks."""

    def __init__(self, ctx: ServerContext, listeners: Listeners, lock: DataDirLock | None) -> None:
        self.ctx = ctx
        self.listeners = listeners
        self.lock = lock
        self.election: Election | None = None
        self.duties = Duties([], say)
        self.tasks: list[asyncio.Task[None]] = []

    async def stop(self, *, force: bool = False) -> None:
        """Hand the lead over, drain the listeners, then close the audit log and the store."""
        if self.election is not None:
            await self.election.resign()
        await self.duties.stop()
        for task in self.tasks:
            task.cancel()
        await self.listeners.stop(force=force)
        await cancel_and_wait(self.tasks)
        await self.ctx.settings.stop_following()
        await self.ctx.logins.stop_following()
        if self.ctx.audit is not None:
            await asyncio.to_thread(self.ctx.audit.close)
        await self.ctx.store.close()
        if self.lock is not None:
            self.lock.release()


def _startup_checks(options: ServerOptions) -> tuple[str, TlsPlan, EtcdPlan | None, int]:
    """Everything that can be checked before anything is opened."""
    server_url = check_server_url(options.server_url)
    try:
        plan = plan_tls(options.tls_dir, no_cacerts=options.no_cacerts)
        etcd = check_etcd_flags(options.etcd)
    except (CertificateError, StoreStartError) as exc:
        raise StartupError(str(exc)) from None
    return server_url, plan, etcd, election_ttl()


async def start(options: ServerOptions) -> Running:
    """Bring the server up, or raise StartupError with nothing left running."""
    server_url, plan, etcd, ttl = _startup_checks(options)
    listeners = Listeners(options.listen)
    try:
        listeners.bind()
    except ListenError as exc:
        raise StartupError(str(exc)) from None
    try:
        data_dir = prepare_data_dir(options.data_dir)
        store, lock = await open_store(etcd, data_dir)
    except BaseException:
        listeners.close()
        raise
    identity = server_identity(listeners.ports[1])
    ctx = ServerContext(store=store, data_dir=data_dir, server_url_flag=server_url)
    audit: AuditLog | None = None
    try:
        if etcd is not None:
            say(f"store etcd {','.join(etcd.endpoints)} (prefix {etcd.prefix}) as {identity}")
        await ctx.settings.start_following()  # a stored server-url applies without the flag
        await ctx.logins.start_following()  # authentication without store round trips
        certificates = await open_certificates(
            plan, data_dir, ctx, shared=etcd is not None, identity=identity
        )
        ctx.certificates = certificates.serving
        published = await publish_cacerts(
            store, certificates.cacerts_pem, certificates.source, identity
        )
        ctx.cacerts_pem = published.pem
        if options.audit.enabled:
            audit = ctx.audit = AuditLog(options.audit)
        password = await bootstrap_admin(ctx)
        await listeners.start(build_app(ctx), certificates.serving.ssl_context)
    except BaseException as exc:
        listeners.close()
        if audit is not None:
            audit.close()
        await ctx.settings.stop_following()
        await ctx.logins.stop_following()
        await store.close()
        if lock is not None:
            lock.release()
        if isinstance(exc, CertificateError | ListenError | StoreError):
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
    running = Running(ctx, listeners, lock)
    _start_background(running, certificates, identity, ttl, shared=etcd is not None)
    return running


def _start_background(
    running: Running, certificates: Certificates, identity: str, ttl: int, *, shared: bool
) -> None:
    """Per-server tasks (certificate check, following the shared CA and `cacerts`), and the
    duties: with etcd behind an election, with the embedded store on this, the only server."""
    ctx = running.ctx

    def publish(pem: str) -> None:
        ctx.cacerts_pem = pem

    follower = SharedCaFollower(ctx.store, certificates.serving, publish, say)
    running.tasks.append(asyncio.create_task(follower.run()))
    running.tasks.append(asyncio.create_task(_check_certificates(ctx, certificates, identity)))
    duties: list[Duty] = [token_cleanup(ctx.tokens)]
    if shared:  # whatever this server serves, the shared CA is renewed by whoever leads
        duties.insert(0, ca_renewal(lambda: renew_ca_if_due(ctx.store, identity)))
    running.duties = Duties(duties, say)
    names = ", ".join(running.duties.names())
    if not shared:
        running.duties.set_leading(True)
        return

    def on_change(leading: bool, detail: str) -> None:
        if leading:
            say(f"leader (duties: {names}; {detail})")
        else:
            say(f"no longer the leader ({detail})")
        running.duties.set_leading(leading)

    election = Election(ctx.store, ELECTION_KEY, Candidate(identity), ttl=ttl,
                        on_change=on_change)
    ctx.election = running.election = election
    election.start()


async def _check_certificates(ctx: ServerContext, certificates: Certificates,
                              identity: str) -> None:
    """Check this server's serving certificate every interval. A CA of its own (embedded
    store) that was replaced is published; a shared CA is the leader's (duty `ca-renewal`)."""
    interval = float(os.environ.get(CERT_CHECK_INTERVAL_ENV, "") or CHECK_INTERVAL_SECONDS)
    serving = certificates.serving
    while True:
        await asyncio.sleep(interval)
        try:
            before = serving.ca_cert if isinstance(serving, GeneratedCertificates) else None
            serving.check()  # on the loop: the SNI callback reissues on it too
            if not isinstance(serving, GeneratedCertificates) or serving.ca_cert == before:
                continue
            if certificates.source == SOURCE_GENERATED and not serving.shared:
                certificates.cacerts_pem = serving.ca_pem
                await publish_cacerts(ctx.store, serving.ca_pem, SOURCE_GENERATED, identity)
                ctx.cacerts_pem = serving.ca_pem
                say(f"new CA {pki.common_name(serving.ca_cert)} SHA256 "
                    f"{pki.fingerprint_sha256(serving.ca_cert)}")
        except asyncio.CancelledError:
            raise
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

    # gRPC's C core (the etcd client) logs TLS failures on stderr itself; the server says
    # what went wrong in its own words. GRPC_VERBOSITY=INFO shows them again.
    os.environ.setdefault("GRPC_VERBOSITY", "NONE")
    configure_logging()
    try:
        uvloop.run(serve(options))
    except StartupError as exc:
        print(f"corral server: error: {exc}", file=sys.stderr, flush=True)
        return 1
    return 0
