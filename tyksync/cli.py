"""The command line: parse, call the library, render, return an exit code.

Exit codes (SPEC section 6): 0 success, 1 error (usage errors included: 2 means "changes"),
2 changes with --detailed-exitcode, 3 refused. `main()` is the one place that maps
exceptions to codes; no traceback reaches a user.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import shlex
import sys
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, TextIO, TypeVar, cast

import click

from tyksync import __version__, redact
from tyksync.applier import Applier, ApplyResult, Outcome
from tyksync.client import url_label
from tyksync.connection import DEFAULT_SANDBOX_STATE, ConnectionSettings, connect
from tyksync.errors import ManifestError, Refused, TyksyncError
from tyksync.escape import printable, printable_lines
from tyksync.fileutil import check_private
from tyksync.journal import Journal
from tyksync.keysink import KeySink
from tyksync.manifest import load_manifests, manifest_json_schema, resolve
from tyksync.manifest.export import export_manifest, export_pending
from tyksync.pipeline import plan_live
from tyksync.plan import FORMAT_VERSION, Plan, check_safety
from tyksync.plan_schema import plan_json_schema
from tyksync.provenance import Provenance, detect
from tyksync.render import Format, refusal, render, render_text, use_color
from tyksync.saved import (
    check_dashboard,
    check_not_a_preview,
    check_same,
    read_saved_plan,
    stale_resolution,
    write_saved_plan,
)
from tyksync.timefmt import MOMENT_HELP, parse_as_of

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


def _max_deletes_option(f: F) -> F:
    return click.option(
        "--max-deletes",
        type=click.IntRange(min=0),
        help="Refuse a plan deleting more than N requests (--force does not lift it).",
    )(f)


def _expiry_warning_option(f: F) -> F:
    return click.option(
        "--expiry-warning",
        "expiry_warning",
        type=click.IntRange(min=0),
        default=14,
        show_default=True,
        metavar="DAYS",
        help="Warn about declarations that expire within DAYS days.",
    )(f)


def _moment(ctx: click.Context, param: click.Parameter, value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        return parse_as_of(value)
    except ValueError as e:
        raise click.BadParameter(f"must be {e}") from None


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
            resolve(manifests, conn.client.read_live())
    where = "resolved against the Dashboard" if online else "offline check"
    click.echo(
        f"{len(manifests.files)} file(s), {count} request(s): valid ({where}).",
    )
    return 0


@cli.command()
@click.option("--plan", "of_plan", is_flag=True, help="The JSON plan's schema instead.")
@_command
def schema(of_plan: bool) -> int:
    """Print the manifest JSON Schema (or, with --plan, the JSON plan's)."""
    click.echo(json.dumps(plan_json_schema() if of_plan else manifest_json_schema(), indent=2))
    return 0


# ---- plan ------------------------------------------------------------------------------


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
    "--detailed-exitcode",
    is_flag=True,
    help="Exit 2 when the plan has changes, 0 when none, 3 when apply would refuse it.",
)
@click.option(
    "--warnings-as-changes",
    is_flag=True,
    help="With --detailed-exitcode: warnings (drift that needs a person) exit 2 too.",
)
@click.option("--reissue", is_flag=True, help="Replace approved requests whose fields differ.")
@_max_deletes_option
@_expiry_warning_option
@click.option(
    "--as-of",
    "as_of",
    metavar="TIME",
    callback=_moment,
    help=f"Plan as if it were this moment ({MOMENT_HELP}; a date is its start, UTC): "
    "expiry and the age of pending requests. Apply always plans for now.",
)
@_connection_options
@_command
def plan(
    paths: tuple[Path, ...],
    fmt: str,
    out: Path | None,
    detailed_exitcode: bool,
    warnings_as_changes: bool,
    reissue: bool,
    max_deletes: int | None,
    expiry_warning: int,
    as_of: datetime | None,
    **kwargs: Any,
) -> int:
    """Show what apply would change."""
    settings = _settings(kwargs)
    manifests = load_manifests(paths)  # bad manifests fail before any network call
    if out is not None:
        check_private(out, what="--out")  # a file that will be refused, before any call
    with connect(settings, os.environ) as conn:
        the_plan = plan_live(
            conn.client,
            manifests,
            dashboard=conn.label,
            reissue=reissue,
            max_deletes=max_deletes,
            now=as_of,
            expiry_warning=timedelta(days=expiry_warning),
        )
    render(the_plan, sys.stdout, cast(Format, fmt), color=use_color(sys.stdout, os.environ))
    if the_plan.safety.refused:
        # Also on stderr: stdout may be a file (--format json > plan.json) nobody reads now.
        log.warning("%s", refusal(the_plan))
    if as_of is not None:
        log.warning(
            "planned as of %s, not now (--as-of): apply plans for the moment it runs",
            as_of.strftime("%Y-%m-%dT%H:%M:%SZ"),
        )
    if out is not None:
        write_saved_plan(
            the_plan,
            out,
            manifest_paths=paths,
            reissue=reissue,
            expiry_warning_days=expiry_warning,
            as_of=None if as_of is None else as_of.strftime("%Y-%m-%dT%H:%M:%SZ"),
        )
        if as_of is None:
            command = _apply_command(out, settings, max_deletes)
            click.echo(f"Plan saved to {printable(str(out))}; apply it with: {command}", err=True)
        else:
            click.echo(
                f"Plan saved to {printable(str(out))}, for review only: made with --as-of, "
                "apply --plan refuses it",
                err=True,
            )
    if not detailed_exitcode:
        return 0
    if the_plan.safety.refused:
        return 3
    drift = the_plan.has_changes or (warnings_as_changes and bool(the_plan.warnings))
    return 2 if drift else 0


def _apply_command(out: Path, settings: ConnectionSettings, max_deletes: int | None) -> str:
    """The exact command that applies a saved plan, connection options included (the
    secret comes from the environment or its file, as it did for the plan)."""
    words = ["tyksync", "apply", "--plan", str(out)]
    if settings.sandbox:
        words.append("--sandbox")
        if settings.sandbox_state != DEFAULT_SANDBOX_STATE:
            words += ["--sandbox-state", str(settings.sandbox_state)]
    elif settings.dashboard:
        words += ["--dashboard", url_label(settings.dashboard)]
    if settings.secret_file is not None:
        words += ["--secret-file", str(settings.secret_file)]
    if settings.ca_bundle is not None:
        words += ["--ca-bundle", str(settings.ca_bundle)]
    if settings.insecure:
        words.append("--insecure")
    if max_deletes is not None:
        words += ["--max-deletes", str(max_deletes)]
    return printable(shlex.join(words))


# ---- apply -----------------------------------------------------------------------------


@cli.command()
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option(
    "--plan",
    "plan_file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Apply this reviewed plan: the manifests (PATHS, or those it records) and the "
    "Dashboard are planned again, and only an identical plan is applied.",
)
@click.option("--auto-approve", is_flag=True, help="Do not ask; required without a terminal.")
@click.option("--force", is_flag=True, help="Apply even a plan that deletes a lot.")
@_max_deletes_option
@click.option("--reissue", is_flag=True, help="Replace approved requests whose fields differ.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="json: print the outcome as one JSON object on stdout (the plan goes to stderr).",
)
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
@_expiry_warning_option
@_connection_options
@_command
def apply(
    paths: tuple[Path, ...],
    plan_file: Path | None,
    auto_approve: bool,
    force: bool,
    max_deletes: int | None,
    reissue: bool,
    fmt: str,
    key_sink: Path | None,
    journal: Path,
    parallelism: int,
    expiry_warning: int,
    **kwargs: Any,
) -> int:
    """Make the changes: creates and approvals first, then deletes."""
    settings = _settings(kwargs)
    if not paths and plan_file is None:
        raise click.UsageError("give manifest PATHS, or --plan FILE (a plan saved by plan --out)")
    saved = read_saved_plan(plan_file) if plan_file else None
    if saved is not None:
        if reissue and not saved.reissue:
            raise click.UsageError(
                "--reissue: the saved plan was made without it; plan again with --reissue"
            )
        check_not_a_preview(saved)
        paths = paths or tuple(Path(p) for p in saved.manifest_paths)
        reissue = saved.reissue  # re-derived with the options it was made with
        expiry_warning = saved.expiry_warning_days
    manifests = load_manifests(paths)  # bad manifests fail before the network
    # Files that will be refused are refused before any call to the Dashboard.
    if key_sink is not None:
        check_private(key_sink, what="--key-sink")
    check_private(journal, what="--journal", devices=True)
    # The plan is for a person; with --format json stdout holds the outcome alone.
    shown = sys.stderr if fmt == "json" else sys.stdout
    with connect(settings, os.environ) as conn:
        if saved is not None:
            check_dashboard(saved, conn.label)
        try:
            the_plan = plan_live(
                conn.client,
                manifests,
                dashboard=conn.label,
                reissue=reissue,
                max_deletes=max_deletes,
                now=datetime.now(timezone.utc),  # apply always plans for now
                expiry_warning=timedelta(days=expiry_warning),
            )
        except ManifestError as e:
            raise e if saved is None else stale_resolution(e) from None
        if saved is not None:
            check_same(saved, the_plan)  # nothing in the file is applied: only what is now
        render_text(the_plan, shown, color=use_color(shown, os.environ))
        if not the_plan.has_changes:
            if fmt == "json":
                _print_result_json(the_plan, ApplyResult(), key_sink, sys.stdout)
            return 0
        check_safety(the_plan, force=force)
        provenance = detect(os.environ)  # git asked once a run
        # Opened before asking: a sink that will be refused should fail before a "yes".
        with _apply_outputs(key_sink, journal, provenance) as (sink, the_journal):
            if saved is None and not auto_approve:
                _confirm(the_plan, conn.label)
            applier = Applier(
                conn.client,
                key_sink=sink,
                journal=the_journal,
                parallelism=parallelism,
                provenance=provenance,
            )
            result = applier.apply(the_plan)
    if fmt == "json":
        _print_result_json(the_plan, result, key_sink, sys.stdout)
    else:
        _print_result(result, key_sink, sys.stdout)
    return 0 if result.ok else 1


@contextlib.contextmanager
def _apply_outputs(
    key_sink: Path | None, journal: Path, provenance: Provenance
) -> Iterator[tuple[KeySink | None, Journal]]:
    sink = KeySink(key_sink) if key_sink else None
    try:
        the_journal = Journal(journal, context=provenance.journal_context())
    except BaseException:
        if sink is not None:
            sink.close()
        raise
    try:
        yield sink, the_journal
    finally:
        the_journal.close()
        if sink is not None:
            sink.close()


def _confirm(the_plan: Plan, label: str) -> None:
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise Refused(
            "apply needs confirmation and there is no terminal to ask on: review the plan, "
            "then run again with --auto-approve (or apply a reviewed plan with --plan FILE)"
        )
    answer = click.prompt(
        f"\nApply these {len(the_plan.actions)} changes to {printable(label)}?\n"
        "  Only 'yes' will be accepted",
        default="",
        show_default=False,
    )
    if answer.strip() != "yes":
        raise Refused("apply cancelled: the answer was not 'yes'")


def _print_result(result: ApplyResult, key_sink: Path | None, out: TextIO) -> None:
    lines = [_outcome_line(o) for o in result.outcomes]
    done = len(result.by_status("done"))
    failed = len(result.by_status("failed"))
    skipped = len(result.by_status("skipped"))
    lines += [
        "",
        f"Apply {'complete' if result.ok else 'INCOMPLETE'}: {done} done, {failed} failed",
    ]
    lines[-1] += f", {skipped} skipped." if skipped else "."
    issued = result.keys_issued
    if issued:
        captured = result.keys_captured
        if key_sink is not None:
            lines.append(f"{issued} key(s) issued, {captured} written to {key_sink}.")
            if captured < issued:
                lines.append(
                    f"{issued - captured} key(s) were issued but their answer was lost; "
                    "rotate them in the Dashboard if the developer needs them."
                )
        else:
            lines.append(
                f"{issued} key(s) issued and NOT captured (pass --key-sink PATH to capture "
                "them); developers can see their keys in the portal."
            )
    if not result.ok:
        lines.append("Run apply again to retry what failed; it converges.")
    # Details quote the Dashboard (ids, messages): each line is escaped and redacted.
    out.write("".join(printable(redact.redact(line)) + "\n" for line in lines))


_SYMBOL = {"done": "ok", "failed": "FAILED", "skipped": "skipped"}


def _print_result_json(
    the_plan: Plan, result: ApplyResult, key_sink: Path | None, out: TextIO
) -> None:
    """The outcome as one JSON object (SPEC section 9): never a key, only how many."""
    data = {
        "format_version": FORMAT_VERSION,
        "tool_version": __version__,
        "dashboard": the_plan.dashboard,
        "fingerprint": the_plan.fingerprint,
        "ok": result.ok,
        "counts": {s: len(result.by_status(s)) for s in ("done", "failed", "skipped")},
        "keys": {
            "issued": result.keys_issued,
            "captured": result.keys_captured,
            "key_sink": None if key_sink is None else str(key_sink),
        },
        "actions": [
            {
                **o.action.to_data(),
                "status": o.status,
                "detail": o.detail,
                "new_request_id": o.new_request_id,
                "key": o.key,
            }
            for o in result.outcomes
        ],
    }
    out.write(redact.redact(json.dumps(data, indent=2, ensure_ascii=True)) + "\n")


def _outcome_line(o: Outcome) -> str:
    a = o.action
    policies = ", ".join(p.name or p.id for p in a.policies)
    who = a.developer.email or a.developer.id
    return f"  {_SYMBOL[o.status]:7} {a.action:8} {who} [{policies}]: {o.detail}"


# ---- export ----------------------------------------------------------------------------


@cli.command()
@click.option(
    "--owner",
    help="Only requests owned by NAME; the manifest gets that owner (with --pending: only "
    "the owner the manifest gets, default pending).",
)
@click.option("--developer", "developer_email", metavar="EMAIL", help="Only this developer.")
@click.option(
    "--pending",
    is_flag=True,
    help="Instead: the pending requests no tyksync owner made (e.g. made in the portal), "
    "one `approved: true` entry each, owner --owner (default pending), prune: none. "
    "Declaring one approves that request.",
)
@_connection_options
@_command
def export(owner: str | None, developer_email: str | None, pending: bool, **kwargs: Any) -> int:
    """Print the live requests as a manifest."""
    settings = _settings(kwargs)
    with connect(settings, os.environ) as conn:
        live = conn.client.read_live()
    if pending:
        text, notes = export_pending(live, owner=owner, developer=developer_email)
    else:
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
        # Problems of a ManifestError are one a line, each escaped already; any other
        # message is one line, and may quote the Dashboard.
        escape = printable_lines if isinstance(e, ManifestError) else printable
        click.echo(escape(redact.redact(f"Error: {e}")), err=True)
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
