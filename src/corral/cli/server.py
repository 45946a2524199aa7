"""`corral server`: run the management server; `backup` / `restore` its data directory."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from corral.server.audit_settings import (
    DEFAULT_AUDIT_LOG_PATH,
    DEFAULT_MAX_AGE_DAYS,
    DEFAULT_MAX_BACKUPS,
    DEFAULT_MAX_SIZE_MB,
    AuditSettings,
)
from corral.server.certs import DEFAULT_TLS_DIR

DEFAULT_ETCD_PREFIX = "/corral-ha"  # the same as corral.server.backend.DEFAULT_ETCD_PREFIX

DEFAULT_DATA_DIR = Path("/var/lib/corral")  # the same as corral.server.runtime.DEFAULT_DATA_DIR

# (flag, environment variable) of the audit options, in AuditSettings.from_env's names
AUDIT_FLAGS = {
    "audit_level": "AUDIT_LEVEL",
    "audit_log_path": "AUDIT_LOG_PATH",
    "audit_log_maxage": "AUDIT_LOG_MAXAGE",
    "audit_log_maxbackup": "AUDIT_LOG_MAXBACKUP",
    "audit_log_maxsize": "AUDIT_LOG_MAXSIZE",
}

EXAMPLES = """\b
Examples:
  corral server                                   # ports 80/443, data in /var/lib/corral
  corral server --http-listen-port 8080 --https-listen-port 8443 --data-dir ./data
  corral server --no-cacerts                      # TLS by a recognised CA at the load balancer
  corral server --etcd-servers https://10.0.0.1:2379,https://10.0.0.2:2379 --etcd-cafile ca.pem \\
    --etcd-certfile client.pem --etcd-keyfile client-key.pem   # HA: the store is etcd
  AUDIT_LEVEL=1 corral server                     # API audit log (see --audit-*)
  corral server backup --data-dir /var/lib/corral --out corral-backup.tar.gz
  corral server restore --data-dir /var/lib/corral --from corral-backup.tar.gz
"""

NOTES = """\b
TLS directory (--tls-dir): cert.pem + key.pem (+ cacerts.pem, or --no-cacerts) to serve your
own certificate; cacerts.pem alone when TLS is terminated elsewhere with a private CA; nothing
to let the server generate its CA (kept in <data-dir>/tls/, or in etcd with --etcd-servers).

\b
HA (Rancher's HA guide): give every server the same --etcd-* flags; they share users, tokens,
settings and the generated CA through etcd, and elect one of them for the duties that run once.
Without --etcd-servers the store is embedded in --data-dir. See docs/server.md, "HA".
"""

EPILOG = NOTES + "\n" + EXAMPLES  # the help ends with the examples, as every verb's does

BACKUP_EPILOG = """\b
Examples:
  corral server backup --out corral-backup.tar.gz     # the default data directory
  corral server backup --data-dir ./data --out backup.tar.gz
  corral server backup --data-dir /var/lib/corral --out /backups/corral-$(date +%F).tar.gz
"""

RESTORE_EPILOG = """\b
Examples:
  corral server restore --from corral-backup.tar.gz   # into the (empty) default data directory
  corral server restore --data-dir ./data --from backup.tar.gz
  corral server restore --data-dir /var/lib/corral --from corral-backup.tar.gz --force
"""


def _audit_settings(values: dict[str, str | None]) -> AuditSettings:
    """AuditSettings from the --audit-* values (each already defaulted from its AUDIT_* variable
    by click), checked by AuditSettings' own rules; a bad value names its flag and variable."""
    env: dict[str, str] = {}
    for key, value in values.items():
        if value is None or value == "":
            continue
        try:
            AuditSettings.from_env({AUDIT_FLAGS[key]: value})
        except ValueError as exc:
            flag = "--" + key.replace("_", "-")
            raise click.BadParameter(str(exc), param_hint=f"{flag} / {AUDIT_FLAGS[key]}") from None
        env[AUDIT_FLAGS[key]] = value
    return AuditSettings.from_env(env)


@click.group(
    invoke_without_command=True,
    short_help="The management server (v3 API, events, shell, audit log).",
    epilog=EPILOG,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.option("--http-listen-port", type=click.IntRange(0, 65535), metavar="PORT", default=80,
              show_default=True, envvar="CORRAL_HTTP_LISTEN_PORT", show_envvar=True,
              help="Plain-HTTP port (redirects to HTTPS unless X-Forwarded-Proto is https).")
@click.option("--https-listen-port", type=click.IntRange(0, 65535), metavar="PORT", default=443,
              show_default=True, envvar="CORRAL_HTTPS_LISTEN_PORT", show_envvar=True,
              help="HTTPS port.")
@click.option("--bind-address", metavar="ADDRESS", default="0.0.0.0", show_default=True,
              envvar="CORRAL_BIND_ADDRESS", show_envvar=True,
              help="Address both listeners bind (:: for IPv4 and IPv6).")
@click.option("--data-dir", type=click.Path(path_type=Path), default=DEFAULT_DATA_DIR,
              show_default=True, envvar="CORRAL_DATA_DIR", show_envvar=True,
              help="Where the server keeps its store and generated certificates.")
@click.option("--tls-dir", type=click.Path(path_type=Path), default=DEFAULT_TLS_DIR,
              show_default=True, envvar="CORRAL_TLS_DIR", show_envvar=True,
              help="Directory you put cert.pem, key.pem and cacerts.pem in.")
@click.option("--no-cacerts", is_flag=True, default=False, envvar="CORRAL_NO_CACERTS",
              show_envvar=True,
              help="Publish no CA (the certificate is signed by a recognised CA).")
@click.option("--server-url", metavar="URL", default="", envvar="CORRAL_SERVER_URL",
              show_envvar=True,
              help="The https URL clients use; overrides the stored server-url setting.")
@click.option("--etcd-servers", metavar="URLS", default="", envvar="CORRAL_ETCD_SERVERS",
              show_envvar=True,
              help="Comma-separated etcd client URLs (https://host:2379,…): the store is that etcd "
                   "cluster (HA). Without it the store is embedded in --data-dir.")
@click.option("--etcd-cafile", type=click.Path(path_type=Path), default=None,
              envvar="CORRAL_ETCD_CAFILE", show_envvar=True,
              help="CA certificate (PEM) that signed the etcd servers' certificates.")
@click.option("--etcd-certfile", type=click.Path(path_type=Path), default=None,
              envvar="CORRAL_ETCD_CERTFILE", show_envvar=True,
              help="Client certificate (PEM) for etcd's mutual TLS (with --etcd-keyfile).")
@click.option("--etcd-keyfile", type=click.Path(path_type=Path), default=None,
              envvar="CORRAL_ETCD_KEYFILE", show_envvar=True,
              help="Private key (PEM) of --etcd-certfile.")
@click.option("--etcd-prefix", metavar="PREFIX", default=DEFAULT_ETCD_PREFIX, show_default=True,
              envvar="CORRAL_ETCD_PREFIX", show_envvar=True,
              help="Key prefix of this install in etcd (servers of one install share it).")
@click.option("--audit-level", metavar="0-3", envvar="AUDIT_LEVEL", show_envvar=True,
              help="API audit log: 0 off, 1 metadata, 2 + request body, 3 + response body. "
                   "[default: 0]")
@click.option("--audit-log-path", metavar="PATH", envvar="AUDIT_LOG_PATH", show_envvar=True,
              help=f"Audit log file (a path ending / is a directory). "
                   f"[default: {DEFAULT_AUDIT_LOG_PATH}]")
@click.option("--audit-log-maxage", metavar="DAYS", envvar="AUDIT_LOG_MAXAGE", show_envvar=True,
              help=f"Days to keep rotated audit files. [default: {DEFAULT_MAX_AGE_DAYS}]")
@click.option("--audit-log-maxbackup", metavar="FILES", envvar="AUDIT_LOG_MAXBACKUP",
              show_envvar=True,
              help=f"Rotated audit files to keep. [default: {DEFAULT_MAX_BACKUPS}]")
@click.option("--audit-log-maxsize", metavar="MB", envvar="AUDIT_LOG_MAXSIZE", show_envvar=True,
              help=f"Megabytes before the audit file rotates. [default: {DEFAULT_MAX_SIZE_MB}]")
@click.pass_context
def server(
    click_ctx: click.Context,
    /,
    http_listen_port: int,
    https_listen_port: int,
    bind_address: str,
    data_dir: Path,
    tls_dir: Path,
    no_cacerts: bool,
    server_url: str,
    etcd_servers: str,
    etcd_cafile: Path | None,
    etcd_certfile: Path | None,
    etcd_keyfile: Path | None,
    etcd_prefix: str,
    **audit: str | None,
) -> None:
    """The management server: HTTP and HTTPS listeners, v3 API, events, shell, audit log.

    Without a subcommand, runs in the foreground until SIGTERM or Ctrl-C.
    """
    click_ctx.ensure_object(dict)
    click_ctx.obj["data_dir"] = data_dir
    if click_ctx.invoked_subcommand is not None:
        return
    from corral.server.backend import EtcdFlags
    from corral.server.listeners import ListenAddresses
    from corral.server.runtime import ServerOptions, run

    options = ServerOptions(
        listen=ListenAddresses(bind_address, http_listen_port, https_listen_port),
        data_dir=data_dir,
        tls_dir=tls_dir,
        no_cacerts=no_cacerts,
        server_url=server_url,
        audit=_audit_settings(audit),
        etcd=EtcdFlags(etcd_servers, etcd_cafile, etcd_certfile, etcd_keyfile, etcd_prefix),
    )
    sys.exit(run(options))


@server.command(
    short_help="Write a consistent snapshot of the data directory.", epilog=BACKUP_EPILOG
)
@click.option("--data-dir", type=click.Path(path_type=Path), default=None,
              help="The server's data directory. [default: the server's --data-dir]")
@click.option("--out", "out", type=click.Path(path_type=Path), required=True,
              help="Archive to write (.tar.gz).")
@click.pass_context
def backup(click_ctx: click.Context, /, data_dir: Path | None, out: Path) -> None:
    """Write a consistent snapshot of the data directory (the server may keep running)."""
    from corral.server.backup import backup as take_backup

    source = data_dir or click_ctx.obj["data_dir"]
    try:
        info = take_backup(source, out)
    except (OSError, ValueError, RuntimeError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"corral server: backup of {source} (store revision {info.store_revision}, "
               f"{len(info.files)} files) written to {out}")


@server.command(short_help="Put a backup back into the data directory.", epilog=RESTORE_EPILOG)
@click.option("--data-dir", type=click.Path(path_type=Path), default=None,
              help="The data directory to restore into. [default: the server's --data-dir]")
@click.option("--from", "archive", type=click.Path(path_type=Path), required=True,
              help="Archive written by `corral server backup`.")
@click.option("--force", is_flag=True, default=False,
              help="Replace a data directory that already holds data.")
@click.pass_context
def restore(click_ctx: click.Context, /, data_dir: Path | None, archive: Path, force: bool) -> None:
    """Put a backup back into the data directory (stop the server first)."""
    from corral.server.backup import restore as put_back

    target = data_dir or click_ctx.obj["data_dir"]
    try:
        info = put_back(archive, target, force=force)
    except (OSError, ValueError, RuntimeError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"corral server: {archive} (store revision {info.store_revision}, taken "
               f"{info.created}) restored into {target}")
    if info.moved_aside is not None:
        click.echo(f"corral server: the previous content of {target} is in {info.moved_aside}")
