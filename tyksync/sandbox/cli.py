"""`tyksync sandbox serve`: the emulated Dashboard in the foreground.

`tyksync.cli` attaches this group; `python -m tyksync.sandbox.cli serve ...` also runs it
alone, without the rest of the CLI.
"""

from __future__ import annotations

import os
import secrets
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from types import FrameType

import click

from tyksync.fileutil import DEFAULT_SANDBOX_STATE
from tyksync.sandbox.faults import METHODS, Faults
from tyksync.sandbox.server import Sandbox
from tyksync.sandbox.store import SandboxError, state_lock
from tyksync.sandbox.wire import DIALECTS, parse_dialect
from tyksync.urls import is_loopback

SECRET_ENV = "TYKSYNC_SANDBOX_SECRET"


def _method_rates(
    ctx: click.Context, param: click.Parameter, values: tuple[str, ...]
) -> dict[str, float]:
    """`METHOD=RATE` options, e.g. `--error-rate POST=0.2 --error-rate get=0.05`."""
    rates: dict[str, float] = {}
    for value in values:
        method, sep, rate_text = value.partition("=")
        method = method.strip().upper()
        try:
            rate = float(rate_text)
        except ValueError:
            rate = -1.0
        if not sep or method not in METHODS or not 0.0 <= rate <= 1.0:
            raise click.BadParameter(
                f"{value!r}: expected METHOD=RATE, METHOD one of {', '.join(METHODS)} "
                "and RATE between 0 and 1",
                ctx=ctx,
                param=param,
            )
        rates[method] = rate
    return rates


RATE = click.FloatRange(0.0, 1.0)


@click.group()
def sandbox() -> None:
    """The sandbox: an emulated Tyk Dashboard for trying tyksync without Tyk."""


@sandbox.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=3000, show_default=True, type=click.IntRange(0, 65535))
@click.option(
    "--state",
    "state_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Keep the state in this JSON file (created and seeded if absent).",
)
@click.option(
    "--seed",
    "seed_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Seed a new store from this YAML file instead of the demo data.",
)
@click.option("--dialect", type=click.Choice(DIALECTS), default="modern", show_default=True)
@click.option("--latency", type=click.FloatRange(min=0), default=0.0, help="Seconds per call.")
@click.option("--jitter", type=click.FloatRange(min=0), default=0.0, help="Up to this much more.")
@click.option(
    "--error-rate",
    multiple=True,
    callback=_method_rates,
    metavar="METHOD=RATE",
    help="Answer this share of METHOD calls with a 500/502/503 (nothing done). Repeatable.",
)
@click.option(
    "--rate-limit",
    multiple=True,
    callback=_method_rates,
    metavar="METHOD=RATE",
    help="Answer this share of METHOD calls with a 429 and Retry-After. Repeatable.",
)
@click.option("--retry-after", type=click.IntRange(min=0), default=1, show_default=True)
@click.option(
    "--drop-after-write",
    type=RATE,
    default=0.0,
    metavar="RATE",
    help="Commit this share of writes, then hang up without answering.",
)
@click.option(
    "--reset-before",
    type=RATE,
    default=0.0,
    metavar="RATE",
    help="Reset this share of connections before handling the call.",
)
@click.option(
    "--invalid-json",
    type=RATE,
    default=0.0,
    metavar="RATE",
    help="Answer this share of GETs with a body that is not JSON.",
)
@click.option("--refuse-all-pages", is_flag=True, help="Answer p<=0 / p=-1 with a 400.")
@click.option("--cap-all-pages", is_flag=True, help="Answer p<=0 / p=-1 with page one only.")
@click.option("--fault-seed", type=int, default=0, show_default=True)
@click.option("--quiet", is_flag=True, help="Do not log each call to stderr.")
def serve(
    host: str,
    port: int,
    state_path: Path | None,
    seed_path: Path | None,
    dialect: str,
    latency: float,
    jitter: float,
    error_rate: dict[str, float],
    rate_limit: dict[str, float],
    retry_after: int,
    drop_after_write: float,
    reset_before: float,
    invalid_json: float,
    refuse_all_pages: bool,
    cap_all_pages: bool,
    fault_seed: int,
    quiet: bool,
) -> None:
    """Run the emulated Dashboard in the foreground until Ctrl-C.

    The secret is taken from TYKSYNC_SANDBOX_SECRET, or made up and printed once.
    """
    faults = Faults(
        latency=latency,
        jitter=jitter,
        error_rates=error_rate,
        rate_limit=rate_limit,
        retry_after=retry_after,
        drop_after_write=drop_after_write,
        reset_before=reset_before,
        invalid_json=invalid_json,
        refuse_all_pages=refuse_all_pages,
        cap_all_pages=cap_all_pages,
        seed=fault_seed,
    )
    secret = os.environ.get(SECRET_ENV, "")
    generated = not secret
    if generated:
        secret = secrets.token_urlsafe(24)
    if not is_loopback(host):
        click.echo(
            f"warning: listening on {host}, not loopback: other machines can reach this sandbox",
            err=True,
        )
    # Signals are caught from here on: a Ctrl-C at any moment stops cleanly.
    with _stop_signals() as stopping:
        try:
            # Loading and seeding as one step: another process may share the state file.
            with state_lock(state_path) if state_path else nullcontext():
                server = Sandbox(
                    secret,
                    dialect=parse_dialect(dialect),
                    state_path=state_path,
                    seed=seed_path or "demo",
                    faults=faults,
                    host=host,
                    port=port,
                    log=None if quiet else _log,
                )
            server.start()
        except SandboxError as e:
            raise click.ClickException(str(e)) from None
        try:
            _announce(server, state_path, generated)
            while not stopping.wait(0.5):
                pass
        finally:
            server.stop()
    click.echo("sandbox stopped", err=True)


@sandbox.command()
@click.option(
    "--state",
    "state_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=DEFAULT_SANDBOX_STATE,
    show_default=True,
    help="The state file to forget (what --sandbox-state names).",
)
def reset(state_path: Path) -> None:
    """Forget the sandbox's state: the next --sandbox run starts from the demo data."""
    if not state_path.exists() and not state_path.is_symlink():
        click.echo(f"{state_path}: no sandbox state here; nothing to reset")
        return
    try:
        # Under the lock: a sandbox that holds the state now finishes its write first.
        with state_lock(state_path):
            state_path.unlink()
    except FileNotFoundError:
        pass
    except (OSError, SandboxError) as e:
        raise click.ClickException(f"{state_path}: cannot remove: {e}") from None
    click.echo(f"{state_path} removed: the next --sandbox run starts from the demo data")


def _log(message: str) -> None:
    click.echo(message, err=True)


def _announce(server: Sandbox, state_path: Path | None, generated: bool) -> None:
    click.echo(f"tyksync sandbox ({server.dialect} dialect) listening on {server.url}")
    click.echo(f"state: {state_path if state_path else 'in memory (lost on exit)'}")
    if generated:
        # A sandbox secret guards made-up data; printing it once is what makes it usable.
        click.echo(f"secret (generated; set {SECRET_ENV} to choose one): {server.secret}")
    else:
        click.echo(f"secret: from {SECRET_ENV}")
    click.echo("Ctrl-C stops it.")
    sys.stdout.flush()


@contextmanager
def _stop_signals() -> Iterator[threading.Event]:
    """An event set by Ctrl-C or SIGTERM, in place of KeyboardInterrupt and its traceback."""
    stopping = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    if threading.current_thread() is not threading.main_thread():
        yield stopping  # only the main thread may handle signals
        return
    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stopping
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


if __name__ == "__main__":
    sandbox(prog_name="tyksync sandbox")
