"""The command line: parse, call the library, render, return an exit code.

Exit codes (SPEC section 6): 0 success, 1 error (usage errors included: 2 means "changes"),
2 changes with --detailed-exitcode, 3 refused. `main()` is the one place that maps
exceptions to codes; no traceback reaches a user.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO, TypeVar, cast

import click

from tyksync import __version__, redact
from tyksync.applier import Applier, ApplyResult, check_safety
from tyksync.connection import DEFAULT_SANDBOX_STATE, Connection, ConnectionSettings, connect
from tyksync.errors import Refused, TyksyncError
from tyksync.export import export_manifest
from tyksync.fileutil import atomic_write
from tyksync.journal import Journal
from tyksync.keysink import KeySink
from tyksync.manifest import Manifests, load_manifests, manifest_json_schema, resolve
from tyksync.plan import Plan, check_not_stale, digest
from tyksync.planner import check_dialect, make_plan
from tyksync.render import Format, render, render_text, use_color

log = logging.getLogger("tyksync")

F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_JOURNAL = Path(".tyksync/journal.jsonl")


def _verbosity(f: F) -> F:
    return click.option(
        "-v", "--verbose", count=True, help="Log to stderr: -v for progress, -vv for each call."
    )(f)


def _connection_options(f: F) -> F:
    """Defined once, accepted after every command that talks to a Dashboard."""
    options = [
        click.option(
            "--dashboard",
            envvar="TYK_DASHBOARD_URL",
            metavar="URL",
            help="Dashboard base URL [env TYK_DASHBOARD_URL].",
        ),
        click.option(
            "--secret-file",
            envvar="TYK_DASHBOARD_SECRET_FILE",
            type=click.Path(path_type=Path, dir_okay=False),
            help="File holding the Dashboard secret [env TYK_DASHBOARD_SECRET_FILE]; "
            "otherwise env TYK_DASHBOARD_SECRET.",
        ),
        click.option(
            "--ca-bundle",
            type=click.Path(path_type=Path, dir_okay=False),
            help="CA bundle to verify the Dashboard's TLS certificate.",
        ),
        click.option(
            "--insecure",
            is_flag=True,
            help="Do NOT verify TLS certificates, and allow plain http:// to another host "
            "(the secret can then be intercepted).",
        ),
        click.option(
            "--sandbox",
            is_flag=True,
            help="Use the embedded sandbox Dashboard instead of a real one.",
        ),
        click.option(
            "--sandbox-state",
            type=click.Path(path_type=Path, dir_okay=False),
            default=DEFAULT_SANDBOX_STATE,
            show_default=True,
            help="State file of the embedded sandbox.",
        ),
        click.option(
            "--timeout",
            type=click.FloatRange(min=0.1),
            default=30.0,
            show_default=True,
            help="Seconds for each Dashboard answer, from connecting to its last byte.",
        ),
        click.option(
            "--max-response-mb",
            type=click.IntRange(min=1),
            default=512,
            show_default=True,
            metavar="N",
            help="Largest Dashboard answer to read, in MiB.",
        ),
        _verbosity,
    ]
    for option in reversed(options):
        f = option(f)
    return f


def _settings(kwargs: dict[str, Any]) -> ConnectionSettings:
    dashboard = kwargs.pop("dashboard")
    source = click.get_current_context().get_parameter_source("dashboard")
    if kwargs["sandbox"] and source is click.core.ParameterSource.ENVIRONMENT:
        dashboard = None  # an explicit --sandbox wins over a Dashboard set in the environment
    return ConnectionSettings(
        dashboard=dashboard,
        secret_file=kwargs.pop("secret_file"),
        ca_bundle=kwargs.pop("ca_bundle"),
        insecure=kwargs.pop("insecure"),
        sandbox=kwargs.pop("sandbox"),
        sandbox_state=kwargs.pop("sandbox_state"),
        timeout=kwargs.pop("timeout"),
        max_response_mb=kwargs.pop("max_response_mb"),
    )


def _command(f: Callable[..., int]) -> Callable[..., None]:
    """Wraps a command body: sets up logging, and returns its exit code through click."""

    @functools.wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        _setup_logging(kwargs.pop("verbose", 0))
        ctx = click.get_current_context()
        ctx.exit(f(*args, **kwargs))

    return wrapper


class _Group(click.Group):
    """Usage errors exit 1, not click's 2: 2 means "the plan has changes"."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        kwargs["standalone_mode"] = False
        try:
            return super().main(*args, **kwargs)
        except click.exceptions.Abort:
            click.echo("Aborted.", err=True)
            return 1
        except click.ClickException as e:
            e.show()
            return 1


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="tyksync")
def cli() -> None:
    """Keep a Tyk Dashboard's portal key requests in line with YAML manifests.

    \b
    Start with the embedded sandbox, no Tyk needed:
      tyksync plan examples/manifests --sandbox
      tyksync apply examples/manifests --sandbox --auto-approve
    """


# ---- validate / schema -----------------------------------------------------------------

paths_argument = click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))


@cli.command()
@paths_argument
@click.option("--online", is_flag=True, help="Also resolve developers and policies live.")
@_connection_options
@_command
def validate(paths: tuple[Path, ...], online: bool, **kwargs: Any) -> int:
    """Check manifests; offline unless --online."""
    settings = _settings(kwargs)
    manifests = load_manifests(paths)
    count = sum(len(f.requests) for f in manifests.files)
    if online:
        with connect(settings, os.environ) as conn:
            live = conn.client.read_live()
        check_dialect(resolve(manifests, live), live)
    where = "resolved against the Dashboard" if online else "offline check"
    click.echo(
        f"{len(manifests.files)} file(s), {count} request(s): valid ({where}).",
    )
    return 0


@cli.command()
@_command
def schema() -> int:
    """Print the manifest JSON Schema."""
    click.echo(json.dumps(manifest_json_schema(), indent=2))
    return 0


# ---- plan ------------------------------------------------------------------------------


def _make_plan(conn: Connection, manifests: Manifests, *, reissue: bool) -> Plan:
    live = conn.client.read_live()
    desired = resolve(manifests, live)
    return make_plan(
        desired,
        live,
        manifest_digest=digest(manifests.to_data()),
        dashboard=conn.label,
        reissue=reissue,
    )


@cli.command()
@paths_argument
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json", "markdown"]),
    default="text",
    show_default=True,
)
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), help="Save the plan.")
@click.option(
    "--detailed-exitcode", is_flag=True, help="Exit 2 when the plan has changes, 0 when none."
)
@click.option("--reissue", is_flag=True, help="Replace approved requests whose fields differ.")
@_connection_options
@_command
def plan(
    paths: tuple[Path, ...],
    fmt: str,
    out: Path | None,
    detailed_exitcode: bool,
    reissue: bool,
    **kwargs: Any,
) -> int:
    """Show what apply would change."""
    settings = _settings(kwargs)
    manifests = load_manifests(paths)  # bad manifests fail before any network call
    with connect(settings, os.environ) as conn:
        the_plan = _make_plan(conn, manifests, reissue=reissue)
    render(the_plan, sys.stdout, cast(Format, fmt), color=use_color(sys.stdout, os.environ))
    try:
        check_safety(the_plan, force=False, max_deletes=None)
    except Refused as e:
        log.warning("apply will refuse this plan without --force: %s", e)
    if out is not None:
        _write_plan(the_plan, out)
        click.echo(f"Plan saved to {out}; apply it with: tyksync apply --plan {out}", err=True)
    return 2 if detailed_exitcode and the_plan.has_changes else 0


def _write_plan(the_plan: Plan, out: Path) -> None:
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(out, json.dumps(the_plan.to_data(), indent=2) + "\n")
    except OSError as e:
        raise TyksyncError(f"--out {out}: cannot write the plan: {e.strerror}") from None


def _read_plan(path: Path) -> Plan:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return Plan.from_data(data)
    except OSError as e:
        raise TyksyncError(f"--plan {path}: cannot read it: {e.strerror}") from None
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise TyksyncError(
            f"--plan {path}: not a tyksync plan file ({type(e).__name__}: {e})"
        ) from None


# ---- apply -----------------------------------------------------------------------------


@cli.command()
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option(
    "--plan",
    "plan_file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Apply this saved plan exactly (after checking it is not stale).",
)
@click.option("--auto-approve", is_flag=True, help="Do not ask; required without a terminal.")
@click.option("--force", is_flag=True, help="Apply even a plan that deletes a lot.")
@click.option(
    "--max-deletes", type=click.IntRange(min=0), help="Refuse a plan deleting more than N."
)
@click.option("--reissue", is_flag=True, help="Replace approved requests whose fields differ.")
@click.option(
    "--key-sink",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Append each issued key as a JSON line to this file (created 0600).",
)
@click.option(
    "--journal",
    type=click.Path(path_type=Path, dir_okay=False),
    default=DEFAULT_JOURNAL,
    show_default=True,
    help="Append every mutation to this JSON-lines journal (never keys).",
)
@click.option(
    "--parallelism",
    type=click.IntRange(min=1, max=64),
    default=4,
    show_default=True,
    help="Actions sent at once.",
)
@_connection_options
@_command
def apply(
    paths: tuple[Path, ...],
    plan_file: Path | None,
    auto_approve: bool,
    force: bool,
    max_deletes: int | None,
    reissue: bool,
    key_sink: Path | None,
    journal: Path,
    parallelism: int,
    **kwargs: Any,
) -> int:
    """Make the changes: creates and approvals first, then deletes."""
    settings = _settings(kwargs)
    if bool(paths) == bool(plan_file):
        raise click.UsageError("give manifest PATHS or --plan FILE (one of the two)")
    saved = _read_plan(plan_file) if plan_file else None
    manifests = load_manifests(paths) if paths else None  # bad manifests fail before the network
    color = use_color(sys.stdout, os.environ)
    with connect(settings, os.environ) as conn:
        if saved is not None:
            live = conn.client.read_live()
            check_not_stale(saved, live, conn.label)
            the_plan = saved
        else:
            assert manifests is not None
            the_plan = _make_plan(conn, manifests, reissue=reissue)
        render_text(the_plan, sys.stdout, color=color)
        if not the_plan.has_changes:
            return 0
        check_safety(the_plan, force=force, max_deletes=max_deletes)
        # Opened before asking: a sink that will be refused should fail before a "yes".
        sink = KeySink(key_sink) if key_sink else None
        the_journal = Journal(journal)
        try:
            if saved is None and not auto_approve:
                _confirm(the_plan, conn.label)
            the_journal.write(
                "apply.start", None, dashboard=conn.label, actions=len(the_plan.actions)
            )
            try:
                result = Applier(
                    conn.client, key_sink=sink, journal=the_journal, parallelism=parallelism
                ).apply(the_plan)
            except KeyboardInterrupt:
                the_journal.write("apply.interrupted", None)
                raise TyksyncError(
                    f"interrupted: what was sent is in the journal ({journal}); "
                    "run apply again to finish, it converges"
                ) from None
            the_journal.write("apply.end", None, ok=result.ok)
        finally:
            the_journal.close()
            if sink is not None:
                sink.close()
    _print_result(result, key_sink, sys.stdout)
    return 0 if result.ok else 1


def _confirm(the_plan: Plan, label: str) -> None:
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise Refused(
            "apply needs confirmation and there is no terminal to ask on: review the plan, "
            "then run again with --auto-approve (or apply a reviewed plan with --plan FILE)"
        )
    answer = click.prompt(
        f"\nApply these {len(the_plan.actions)} changes to {label}?\n  Only 'yes' will be accepted",
        default="",
        show_default=False,
    )
    if answer.strip() != "yes":
        raise Refused("apply cancelled: the answer was not 'yes'")


def _print_result(result: ApplyResult, key_sink: Path | None, out: TextIO) -> None:
    symbol = {"done": "ok", "failed": "FAILED", "skipped": "skipped"}
    for o in result.outcomes:
        a = o.action
        policies = ", ".join(p.name or p.id for p in a.policies)
        who = a.developer.email or a.developer.id
        line = f"  {symbol[o.status]:7} {a.action:8} {who} [{policies}]: {o.detail}"
        out.write(redact.redact(line) + "\n")
    done = len(result.by_status("done"))
    failed = len(result.by_status("failed"))
    skipped = len(result.by_status("skipped"))
    out.write(f"\nApply {'complete' if result.ok else 'INCOMPLETE'}: {done} done, {failed} failed")
    out.write(f", {skipped} skipped.\n" if skipped else ".\n")
    issued = result.keys_issued
    if issued:
        captured = result.keys_captured
        if key_sink is not None:
            out.write(f"{issued} key(s) issued, {captured} written to {key_sink}.\n")
            if captured < issued:
                out.write(
                    f"{issued - captured} key(s) were issued but their answer was lost; "
                    "rotate them in the Dashboard if the developer needs them.\n"
                )
        else:
            out.write(
                f"{issued} key(s) issued and NOT captured (pass --key-sink PATH to capture "
                "them); developers can see their keys in the portal.\n"
            )
    if not result.ok:
        out.write("Run apply again to retry what failed; it converges.\n")


# ---- export ----------------------------------------------------------------------------


@cli.command()
@click.option("--owner", help="Only requests owned by NAME; the manifest gets that owner.")
@click.option("--developer", "developer_email", metavar="EMAIL", help="Only this developer.")
@_connection_options
@_command
def export(owner: str | None, developer_email: str | None, **kwargs: Any) -> int:
    """Print the live requests as a manifest."""
    settings = _settings(kwargs)
    with connect(settings, os.environ) as conn:
        live = conn.client.read_live()
    text, notes = export_manifest(live, owner=owner, developer=developer_email)
    for note in notes:
        log.warning("%s", note)
    sys.stdout.write(text)
    return 0


def _attach_sandbox() -> None:
    from tyksync.sandbox.cli import sandbox

    cli.add_command(sandbox)


_attach_sandbox()


# ---- entry point -----------------------------------------------------------------------


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever sys.stderr is now (tests and wrappers swap it)."""

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, _value: TextIO) -> None:
        pass


def _setup_logging(verbose: int) -> None:
    level = logging.WARNING if verbose <= 0 else logging.INFO if verbose == 1 else logging.DEBUG
    root = logging.getLogger("tyksync")
    root.setLevel(level)
    if not any(isinstance(h, _StderrHandler) for h in root.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("tyksync: %(levelname)s: %(message)s"))
        handler.addFilter(redact.RedactingFilter())
        root.addHandler(handler)


def main(argv: Sequence[str] | None = None) -> None:
    sys.exit(run(argv))


def run(argv: Sequence[str] | None = None) -> int:
    try:
        code = cli.main(args=list(argv) if argv is not None else None, prog_name="tyksync")
    except TyksyncError as e:
        click.echo(redact.redact(f"Error: {e}"), err=True)
        return e.exit_code
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        return 1
    except Exception as e:
        # The last stop before a traceback reaches a user. Only the type is shown: an
        # unexpected exception's text may quote anything, a secret too.
        click.echo(
            f"tyksync: internal error ({type(e).__name__}); please report it, with what you ran",
            err=True,
        )
        return 1
    return code if isinstance(code, int) else 0
