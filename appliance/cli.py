"""The ``visionality`` command. Thin click commands; domain errors become ClickExceptions only here."""

from __future__ import annotations

import asyncio
import gc
import importlib
import json
import logging
import os
import secrets
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from functools import wraps
from typing import Any

import click
from nacl.signing import SigningKey

from . import __version__
from .ca import client_env, ensure_ca
from .config import PROVIDERS, Config, Listen, render_initial_config
from .envelope import Budget, Claims, EnvelopeSigner
from .errors import VisionalityError
from .expiry import parse_duration
from .home import Home
from .ledger.cli import ledger_group
from .ledger.events import EventLog
from .paserk import k4_secret
from .registry import KeyRegistry
from .revocation import RedisRevocationFeed, RevocationFile, RevocationKind

__all__ = ["main", "cli"]


def domain_errors[**P, R](fn: Callable[P, R]) -> Callable[P, R]:
    """Turn our errors into a one-line ClickException (exit 1) with the diagnostics text."""

    @wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except VisionalityError as e:
            raise click.ClickException(e.diagnostics()) from e

    return wrapper


class MoneyType(click.ParamType[Decimal]):
    name = "USD"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Decimal:
        try:
            amount = Decimal(str(value))
        except InvalidOperation:
            self.fail(f"{value!r} is not a decimal amount (e.g. 25 or 25.50)", param, ctx)
        if not amount.is_finite() or amount < 0:
            self.fail(f"{value!r} must be a finite amount >= 0", param, ctx)
        exponent = amount.as_tuple().exponent
        if isinstance(exponent, int) and exponent < -6:
            self.fail(f"{value!r} has more than 6 decimal places (budgets are kept to the micro-dollar)", param, ctx)
        if amount >= Decimal(10) ** 15:
            self.fail(f"{value!r} is too large: at most 15 digits before the decimal point", param, ctx)
        return amount


class DurationType(click.ParamType[timedelta]):
    name = "DURATION"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        try:
            return parse_duration(str(value))
        except ValueError as e:
            self.fail(str(e), param, ctx)


class ListenType(click.ParamType[str]):
    name = "HOST:PORT"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        try:
            Listen.parse(str(value), "--listen")
        except VisionalityError as e:
            self.fail(str(e), param, ctx)
        return str(value)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="visionality")
@click.option(
    "--home",
    "home_dir",
    envvar="VISIONALITY_HOME",
    type=click.Path(file_okay=False),
    default=None,
    help="Deployment home (config, keys, CA, ledger). Default: $VISIONALITY_HOME or ~/.visionality.",
)
@click.pass_context
def cli(ctx: click.Context, home_dir: str | None) -> None:
    """Visionality: reconcile every outbound LLM call to person x project x task x tokens."""
    ctx.obj = Home.locate(home_dir)


def _events(home: Home, signing_key: SigningKey) -> EventLog:
    return EventLog(home.ledger_dir, writer_id="cli", signing_key=signing_key)


# -- init ------------------------------------------------------------------------------------------------


@cli.command()
@click.option(
    "--upstream",
    "upstreams",
    multiple=True,
    metavar="PROVIDER=URL",
    help="Provider upstream base, e.g. openai=http://127.0.0.1:9000 (default: the provider's public API).",
)
@click.option("--appliance-id", default="node-1", show_default=True, help="This node's ledger stream name.")
@click.pass_obj
@domain_errors
def init(home: Home, upstreams: tuple[str, ...], appliance_id: str) -> None:
    """Create a deployment: config, Ed25519 signing key, proxy CA, ledger."""
    chosen: dict[str, str] = {}
    for item in upstreams:
        name, sep, url = item.partition("=")
        if not sep or name not in PROVIDERS or not url.startswith(("http://", "https://")):
            raise click.BadParameter(
                f"expected PROVIDER=URL with PROVIDER in {sorted(PROVIDERS)}, got {item!r}", param_hint="--upstream"
            )
        chosen[name] = url.rstrip("/")
    if home.config_path.exists():
        raise click.ClickException(f"{home.root} is already a Visionality deployment ({home.config_path} exists)")
    home.root.mkdir(mode=0o700, parents=True, exist_ok=True)
    home.keys_dir.mkdir(mode=0o700, exist_ok=True)
    home.ledger_dir.mkdir(mode=0o700, exist_ok=True)
    # The only other place `up` writes (its listeners file); made here so a service whose home is read-only
    # but for these two (systemd/visionality.service ReadWritePaths) can start.
    home.listeners_path("x").parent.mkdir(mode=0o700, exist_ok=True)
    sk = SigningKey.generate()
    fd = os.open(home.signing_key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(k4_secret(bytes(sk) + bytes(sk.verify_key)) + "\n")
    ensure_ca(home.ca_dir)
    home.config_path.write_text(render_initial_config(upstreams=chosen, appliance_id=appliance_id))
    config = Config.load(home)
    _events(home, sk).append("deployment_initialised", deployment_id=config.deployment_id, by=_operator())
    click.echo(f"Initialised Visionality deployment {config.deployment_id} in {home.root}")
    click.echo(f"  config:   {home.config_path}")
    click.echo(f"  CA:       {home.ca_dir / 'mitmproxy-ca-cert.pem'}")
    click.echo(
        "Next: export VISIONALITY_OPENAI_API_KEY=… (and/or VISIONALITY_ANTHROPIC_API_KEY), then `visionality up`."
    )


def _operator() -> str:
    return os.environ.get("SUDO_USER") or os.environ.get("USER") or "unknown"


# -- keys --------------------------------------------------------------------------------------------------


@cli.group()
def key() -> None:
    """Issue, revoke and list key envelopes."""


@key.command("issue")
@click.option("--sub", required=True, help="SSO subject the key belongs to.")
@click.option("--email", required=True, help="The person's e-mail (for reports).")
@click.option("--project", default=None, help="Project code. Default: the task's prefix (PROJ-128 -> PROJ).")
@click.option("--task", default=None, help="Task id, e.g. PROJ-128: every call with this key is tagged with it.")
@click.option("--memo", default=None, help="Free-text memo carried in the key.")
@click.option("--url", default=None, help="A link for the task (ticket, doc).")
@click.option("--budget", type=MoneyType(), default=None, help="Spending cap in USD for this key.")
@click.option("--period", type=click.Choice(["month", "total"]), default="month", show_default=True)
@click.option("--expires", type=DurationType(), default="30d", show_default=True, help="Lifetime: 30d, 12h, 8w…")
@click.option("--role", type=click.Choice(["user", "admin"]), default="user", show_default=True)
@click.option("--cost-center", default=None, help="Cost center for chargeback (default: the project's).")
@click.option("--gl-code", default=None, help="GL code for chargeback (default: the project's).")
@click.pass_obj
@domain_errors
def key_issue(
    home: Home,
    sub: str,
    email: str,
    project: str | None,
    task: str | None,
    memo: str | None,
    url: str | None,
    budget: Decimal | None,
    period: str,
    expires: Any,
    role: str,
    cost_center: str | None,
    gl_code: str | None,
) -> None:
    """Issue a key. Prints only the key on stdout."""
    config = Config.load(home)
    if project is None and task and "-" in task:
        project = task.rsplit("-", 1)[0]
    sk = home.signing_key()
    now = datetime.now(UTC).replace(microsecond=0)
    claims = Claims(
        iss=config.deployment_id,
        sub=sub,
        email=email,
        jti="key_" + secrets.token_hex(12),
        iat=now,
        exp=now + expires,
        nbf=None,
        project=project,
        task=task,
        memo=memo,
        url=url,
        budget=Budget(budget, period) if budget is not None else None,  # type: ignore[arg-type]
        role=role,  # type: ignore[arg-type]
        cost_center=cost_center,
        gl_code=gl_code,
    )
    signer = EnvelopeSigner(sk, config.deployment_id)
    token = signer.issue(claims)
    KeyRegistry(home.key_registry_path).add(claims, kid=signer.kid)
    _events(home, sk).append(
        "key_issued",
        key_id=claims.jti,
        sub=sub,
        email=email,
        project=project,
        task=task,
        role=role,
        budget=str(budget) if budget is not None else None,
        period=period if budget is not None else None,
        expires=claims.exp.isoformat() if claims.exp else None,
        by=_operator(),
    )
    click.echo(token)


@key.command("revoke")
@click.option("--key-id", default=None, help="Revoke one key by its id (jti).")
@click.option("--sub", default=None, help="Revoke every key issued to this subject before now.")
@click.option("--reason", default="revoked by operator", show_default=True)
@click.pass_obj
@domain_errors
def key_revoke(home: Home, key_id: str | None, sub: str | None, reason: str) -> None:
    """Revoke keys; running appliances stop accepting them within a second."""
    if bool(key_id) == bool(sub):
        raise click.UsageError("give exactly one of --key-id or --sub")
    config = Config.load(home)
    kind: RevocationKind = "jti" if key_id else "sub"
    value = key_id or sub
    assert value is not None
    record = RevocationFile(home.revocations_path).append(kind, value, reason, _operator())
    if config.revocation_redis:
        RedisRevocationFeed(config.revocation_redis).append(
            record.kind, record.value, record.reason, record.by, not_before=record.not_before
        )
    _events(home, home.signing_key()).append("key_revoked", kind=kind, value=value, reason=reason, by=_operator())
    click.echo(f"revoked {kind} {value}", err=True)


@key.command("list")
@click.pass_obj
@domain_errors
def key_list(home: Home) -> None:
    """Issued keys as JSON lines (claims and status, never the key itself)."""
    home.require()
    revocations = RevocationFile(home.revocations_path).load()
    for claims in KeyRegistry(home.key_registry_path).claims():
        entry = claims.to_payload()
        entry["revoked"] = revocations.check(claims)
        click.echo(json.dumps(entry, sort_keys=True))


# -- ca ----------------------------------------------------------------------------------------------------


@cli.command()
@click.pass_obj
@domain_errors
def ca(home: Home) -> None:
    """Print the CA path and the environment a client needs for proxy mode."""
    config = Config.load(home)
    cert = ensure_ca(home.ca_dir)
    click.echo(f"# CA certificate: {cert}")
    proxy = str(config.proxy_listen) if config.proxy_listen else "HOST:8080"
    for name, value, why in client_env(home.ca_dir, proxy):
        click.echo(f"export {name}={value}  # {why}")


# -- up ----------------------------------------------------------------------------------------------------


@cli.command()
@click.option("--base-listen", type=ListenType(), default=None, help="Base-URL listener HOST:PORT (default 4000).")
@click.option("--proxy-listen", type=ListenType(), default=None, help="Proxy listener HOST:PORT, or 'off'.")
@click.option("--admin-listen", type=ListenType(), default=None, help="Admin listener HOST:PORT.")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default="info")
@click.pass_obj
@domain_errors
def up(home: Home, base_listen: str | None, proxy_listen: str | None, admin_listen: str | None, log_level: str) -> None:
    """Run the appliance in the foreground (systemd runs exactly this)."""
    logging.basicConfig(
        level=getattr(logging, log_level.upper()),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if log_level != "debug":
        # mitmproxy logs every client connect/disconnect at INFO: noise at appliance volumes.
        logging.getLogger("mitmproxy.proxy.server").setLevel(logging.WARNING)
    if not home.config_path.exists() and home.root == Home.locate(None).root and not os.environ.get("VISIONALITY_HOME"):
        # The embedded default: a first `visionality up` on a fresh machine creates its deployment.
        click.get_current_context().invoke(init, upstreams=(), appliance_id="node-1")
    config = Config.load(home)
    overrides: dict[str, Listen | None] = {}
    for name, value in (("base_listen", base_listen), ("proxy_listen", proxy_listen), ("admin_listen", admin_listen)):
        if value is not None:
            overrides[name] = Listen.parse(value, f"--{name.replace('_', '-')}")
    if overrides:
        import dataclasses

        config = dataclasses.replace(config, **overrides)  # type: ignore[arg-type]
    asyncio.run(_run(config))


async def _run(config: Config) -> None:
    # The addons live outside appliance/ (they need mitmproxy); imported only when serving, so every other
    # command starts without loading mitmproxy.
    serve = importlib.import_module("visionality.addons.runner").serve

    from .allocators import tune_allocators
    from .assembly import assemble

    tune_allocators()
    # The ledger's sealer and group-commit threads must not hold the GIL for Python's default 5 ms while a
    # request waits: switch every 0.5 ms (measured in bench/bench_ledger.py --switch-interval).
    sys.setswitchinterval(0.0005)
    app = await assemble(config)
    # Start-up leaves ~210k tracked objects (Presidio's recognizers, phonenumbers' metadata, mitmproxy) that
    # live as long as the process. A full collection walks them all: ~80 ms measured here, a pause every
    # request in flight would wait out. gc.freeze() moves them to a permanent generation the collector skips
    # (CPython docs, gc.freeze; the same use as Instagram's "Dismissing Python Garbage Collection").
    gc.collect()
    gc.freeze()

    run_file = config.home.listeners_path(config.appliance_id)

    def ready(listeners: list[tuple[str, str, int]]) -> None:
        run_file.parent.mkdir(mode=0o700, exist_ok=True)
        tmp = run_file.with_suffix(".tmp")
        tmp.write_text(json.dumps({name: f"{host}:{port}" for name, host, port in listeners}))
        tmp.replace(run_file)
        for name, host, port in listeners:
            click.echo(f"listening {name} {host}:{port}")
        click.echo("visionality ready")
        sys.stdout.flush()

    try:
        await serve(app, ready)
    finally:
        run_file.unlink(missing_ok=True)


# -- budget --------------------------------------------------------------------------------------------------


@cli.group()
def budget() -> None:
    """Budget caps and live burn-down."""


@budget.command("status")
@click.option("--project", default=None)
@click.option("--key-id", default=None)
@click.option("--sub", default=None)
@click.option("--json", "as_json", is_flag=True, help="Print the JSON the admin endpoint serves.")
@click.pass_obj
@domain_errors
def budget_status(home: Home, project: str | None, key_id: str | None, sub: str | None, as_json: bool) -> None:
    """Cap, spent, reserved, remaining and burn rate, live from the running appliance."""
    from .burndown import fetch_status, render_table

    config = Config.load(home)
    data = fetch_status(config, project=project, key_id=key_id, sub=sub)
    if as_json:
        click.echo(json.dumps(data, indent=1, default=str))
    else:
        click.echo(render_table(data))


cli.add_command(ledger_group)


def _home_here(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    if value is not None:  # given after the subcommand: it wins over the group's --home / $VISIONALITY_HOME
        ctx.obj = Home.locate(value)


def _accept_home_everywhere(group: click.Group) -> None:
    """``--home DIR`` works before or after the subcommand (``visionality init --home DIR``, as the docs
    write it); one walk over the tree, so no command can miss it."""
    for cmd in group.commands.values():
        if isinstance(cmd, click.Group):
            _accept_home_everywhere(cmd)
        elif not any("--home" in p.opts for p in cmd.params if isinstance(p, click.Option)):
            cmd.params.append(
                click.Option(
                    ["--home"],
                    type=click.Path(file_okay=False),
                    expose_value=False,
                    is_eager=True,  # before the other options' callbacks, which may read the home
                    callback=_home_here,
                    help="Deployment home (same as `visionality --home DIR`).",
                )
            )


_accept_home_everywhere(cli)


def main() -> None:
    cli(standalone_mode=True)
