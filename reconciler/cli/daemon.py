"""``infinibay daemon``: follow a directory or a git branch and keep libvirt converged.

Parses options into a :class:`~reconciler.daemon.config.Config` and hands it
to :class:`~reconciler.daemon.daemon.Daemon`; everything else lives in
:mod:`reconciler.daemon`. Exits 0 on SIGTERM/SIGINT, 1 when it cannot start
(for example a second daemon on one SQLite record) or when a thread it
depends on died, so that systemd restarts it.
"""

from __future__ import annotations

from typing import Any

import click

from reconciler import errors
from reconciler.cli import common
from reconciler.daemon import config, logs
from reconciler.daemon import daemon as daemon_module
from reconciler.models import fields

__all__ = ["daemon"]


class _Duration(click.ParamType):  # type: ignore[type-arg]
    name = "duration"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        if isinstance(value, int | float):
            return float(value)
        try:
            return fields.parse_duration(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


class _Listen(click.ParamType):  # type: ignore[type-arg]
    name = "host:port"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> tuple[str, int] | None:
        if value is None or isinstance(value, tuple):
            return value
        if str(value).lower() in {"", "off", "none"}:
            return None
        try:
            return config.parse_listen(str(value))
        except errors.ConfigError as exc:
            self.fail(str(exc), param, ctx)


DURATION = _Duration()


@click.command()
@click.option(
    "--source",
    required=True,
    help="A directory of manifests, or a git URL (https://, ssh://, file://, host:path).",
)
@click.option("--ref", default="main", show_default=True, help="Git branch or tag to follow.")
@click.option(
    "--path", "subdir", default="", help="Sub-directory of the source holding the manifests."
)
@click.option(
    "--interval", type=DURATION, default="5m", show_default=True, help="Full resync period."
)
@click.option(
    "--git-interval", type=DURATION, default="30s", show_default=True, help="Git poll period."
)
@click.option("--prune", is_flag=True, help="Delete owned objects missing from the source.")
@click.option("--adopt", is_flag=True, help="Take ownership of same-named objects.")
@click.option("--allow-data-loss", is_flag=True, help="Allow changes that destroy volumes.")
@click.option(
    "--listen",
    type=_Listen(),
    default="127.0.0.1:9180",
    show_default=True,
    help="HOST:PORT of /healthz, /readyz, /metrics and /api/v1 ('off' to disable); "
    "off loopback only with --tls-cert and --tls-key.",
)
@click.option(
    "--tls-cert",
    type=click.Path(dir_okay=False),
    default=None,
    help="PEM certificate (chain) for HTTPS on --listen; needed off loopback.",
)
@click.option(
    "--tls-key", type=click.Path(dir_okay=False), default=None, help="PEM key of --tls-cert."
)
@click.option(
    "--metrics-public", is_flag=True, help="Serve /metrics without a token (the API keeps one)."
)
@click.option(
    "--novnc-path",
    type=click.Path(file_okay=False),
    default="/usr/share/novnc",
    show_default=True,
    envvar="INFINIBAY_NOVNC_PATH",
    help="Where noVNC is installed; the web UI's browser consoles load it.",
)
@click.option(
    "--console-ticket-ttl",
    type=DURATION,
    default="60s",
    show_default=True,
    help="How long a browser console's single-use ticket stays valid.",
)
@click.option("--workers", type=click.IntRange(1, 64), default=4, show_default=True)
@click.option(
    "--http-workers",
    type=click.IntRange(1, 64),
    default=2,
    show_default=True,
    help="Threads answering /api and /metrics (each probe has its own).",
)
@click.option(
    "--http-max-connections",
    type=click.IntRange(1, 65536),
    default=256,
    show_default=True,
    help="Open HTTP connections at most; beyond it, anything but a probe gets 503.",
)
@click.option(
    "--http-header-timeout",
    type=DURATION,
    default="10s",
    show_default=True,
    help="How long a client may take to send a request's headers.",
)
@click.option(
    "--http-idle-timeout",
    type=DURATION,
    default="5s",
    show_default=True,
    help="How long a kept-alive HTTP connection may wait for its next request.",
)
@click.option(
    "--shutdown-timeout",
    type=DURATION,
    default="60s",
    show_default=True,
    help="How long a VM's graceful (ACPI) shutdown may take before it is forced.",
)
@click.option(
    "--drain-timeout",
    type=DURATION,
    default="60s",
    show_default=True,
    help="On SIGTERM, how long the pass in flight may take to finish.",
)
@click.option(
    "--lease",
    type=DURATION,
    default="15s",
    show_default=True,
    help="Leadership lease: a standby takes over within it when the leader dies.",
)
@click.option(
    "--shard",
    is_flag=True,
    help="Share the hosts with the record's other --shard daemons: each host is held "
    "by one of them, and a dead daemon's hosts are taken over within --lease (PostgreSQL).",
)
@click.option(
    "--unhealthy-after",
    type=DURATION,
    default="60s",
    show_default=True,
    help="How long libvirt or the record may be unreachable before /healthz says 503.",
)
@click.option(
    "--debounce",
    type=DURATION,
    default="500ms",
    show_default=True,
    help="Quiet time after a directory change before a pass.",
)
@click.option(
    "--cache-dir",
    default=None,
    help="Where git sources are cloned (default: $XDG_CACHE_HOME/infinibay/git).",
)
@click.pass_context
def daemon(
    ctx: click.Context,
    source: str,
    ref: str,
    subdir: str,
    interval: float,
    git_interval: float,
    prune: bool,
    adopt: bool,
    allow_data_loss: bool,
    listen: tuple[str, int] | None,
    tls_cert: str | None,
    tls_key: str | None,
    metrics_public: bool,
    novnc_path: str,
    console_ticket_ttl: float,
    workers: int,
    http_workers: int,
    http_max_connections: int,
    http_header_timeout: float,
    http_idle_timeout: float,
    shutdown_timeout: float,
    drain_timeout: float,
    lease: float,
    shard: bool,
    unhealthy_after: float,
    debounce: float,
    cache_dir: str | None,
) -> None:
    """Follow a directory or git branch; converge on every change, heal drift.

    Triggers: a source change, the periodic resync, libvirt lifecycle events,
    SIGHUP. SIGTERM/SIGINT finish the pass in flight and exit 0.
    """
    if interval <= 0 or git_interval <= 0 or lease <= 0:
        raise click.BadParameter("--interval, --git-interval and --lease must be positive")
    if console_ticket_ttl <= 0:
        raise click.BadParameter("--console-ticket-ttl must be positive")
    if http_header_timeout <= 0 or http_idle_timeout <= 0:
        raise click.BadParameter("--http-header-timeout and --http-idle-timeout must be positive")
    if (tls_cert is None) != (tls_key is None):
        raise click.BadParameter("--tls-cert and --tls-key go together")
    settings = common.settings_of(ctx)
    logs.configure(settings.log_format, settings.verbose)
    cfg = config.Config(
        source=source,
        ref=ref,
        path=subdir,
        interval=interval,
        git_interval=git_interval,
        prune=prune,
        adopt=adopt,
        allow_data_loss=allow_data_loss,
        listen=listen,
        workers=workers,
        shutdown_timeout=shutdown_timeout,
        drain_timeout=drain_timeout,
        lease=lease,
        unhealthy_after=unhealthy_after,
        debounce=debounce,
        cache_dir=cache_dir,
        http=config.HttpLimits(
            workers=http_workers,
            max_connections=http_max_connections,
            header_timeout=http_header_timeout,
            idle_timeout=http_idle_timeout,
        ),
        tls_cert=tls_cert,
        tls_key=tls_key,
        metrics_public=metrics_public,
        novnc_path=novnc_path,
        console_ticket_ttl=console_ticket_ttl,
        shard=shard,
    )
    daemon_module.Daemon(
        cfg,
        database_url=settings.database_url,
        libvirt_uri=settings.libvirt_uri,
        lock_timeout=settings.lock_timeout,
    ).run()
