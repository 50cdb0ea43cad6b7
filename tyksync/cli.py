"""The command line: parse, call the library, render, return an exit code.

Exit codes (SPEC section 6): 0 success, 1 error (usage errors included: 2 means "changes"),
2 changes with --detailed-exitcode, 3 refused. `main()` is the one place that maps
exceptions to codes; no traceback reaches a user.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import io
import json
import logging
import os
import shlex
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TextIO, TypeVar, cast

import click

from tyksync import __version__, audit, environments, redact
from tyksync.config import Config, find_config, load_config
from tyksync.connection import ConnectionSettings, connect
from tyksync.environments import Overrides, Target
from tyksync.errors import ConfigProblems, ManifestError, Problem, Refused, TyksyncError
from tyksync.escape import printable, printable_lines
from tyksync.fileutil import DEFAULT_SANDBOX_STATE, STATE_DIR, check_private
from tyksync.gitrev import manifests_at
from tyksync.journal import Journal
from tyksync.keysink import KeySink
from tyksync.manifest import Manifests, load_manifests, manifest_json_schema, resolve
from tyksync.manifest.export import export_manifest, export_pending
from tyksync.plan import FORMAT_VERSION, Plan, check_safety
from tyksync.plan_schema import plan_json_schema
from tyksync.planner import MAX_EXPIRY_WARNING_DAYS
from tyksync.provenance import Provenance, detect
from tyksync.render import (
    FULL_PLAN,
    Format,
    refusal,
    render,
    render_markdown,
    render_text,
    use_color,
)
from tyksync.render_audit import (
    DIFF_FORMATS,
    GRANTS_FORMATS,
    DiffFormat,
    GrantsFormat,
    render_diff,
    render_grants,
)
from tyksync.render_envs import (
    markdown_limit,
    render_environments_json,
    render_heading,
)
from tyksync.saved import (
    SavedPlan,
    check_dashboard,
    check_environment,
    check_not_a_preview,
    check_same,
    read_saved_plan,
    stale_resolution,
    write_saved_plan,
)
from tyksync.timefmt import MOMENT_HELP, parse_as_of, utc_text
from tyksync.urls import url_label

# The HTTP client (requests, urllib3) is imported by the commands that call a Dashboard,
# where they need it: `validate` and `schema` make no call, and ran ~0.1 s faster without.
if TYPE_CHECKING:
    from tyksync.applier import ApplyResult, Outcome

log = logging.getLogger("tyksync")

F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_JOURNAL = STATE_DIR / "journal.jsonl"


def _verbosity(f: F) -> F:
    return click.option(
        "-v", "--verbose", count=True, help="Log to stderr: -v for progress, -vv for each call."
    )(f)


def _color_option(f: F) -> F:
    """`--no-color`, read by `_color`: it wins over NO_COLOR, FORCE_COLOR and a terminal."""

    def remember(ctx: click.Context, _param: click.Parameter, value: bool) -> bool:
        ctx.meta[_NO_COLOR] = ctx.meta.get(_NO_COLOR, False) or value
        return value

    return click.option(
        "--no-color",
        is_flag=True,
        expose_value=False,
        callback=remember,
        help="No colour, even on a terminal or with FORCE_COLOR/CLICOLOR_FORCE set.",
    )(f)


_NO_COLOR = "tyksync.no_color"


def _color(stream: TextIO) -> bool:
    """Whether to colour what goes to `stream` (render.use_color, and --no-color)."""
    ctx = click.get_current_context(silent=True)
    no_color = bool(ctx is not None and ctx.meta.get(_NO_COLOR, False))
    return use_color(stream, os.environ, no_color=no_color)


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
        *_environment_options,
        _verbosity,
    ]
    for option in reversed(options):
        f = option(f)
    return f


_environment_options = [
    click.option(
        "--env",
        "env_names",
        metavar="NAME",
        multiple=True,
        help="Run against environment NAME of tyksync.toml (repeatable) [env TYKSYNC_ENV].",
    ),
    click.option("--all-envs", is_flag=True, help="Run against every environment of tyksync.toml."),
    click.option(
        "--config",
        "config_path",
        type=click.Path(path_type=Path, dir_okay=False),
        help="The environments file [default: ./tyksync.toml].",
    ),
]


def _targets(kwargs: dict[str, Any], *, config_alone: bool = False) -> list[Target]:
    """The Dashboards a command runs against, from its connection options (which it
    takes with @_connection_options): one per environment selected, or section 2's one.
    Options given on the command line win over tyksync.toml. A command that reads
    manifests sees them through `_views`. `config_alone`: --config without an
    environment is not an error (offline validate reads it for its names)."""
    ctx = click.get_current_context()
    names, all_envs = kwargs.pop("env_names"), kwargs.pop("all_envs")
    config_path = kwargs.pop("config_path")
    settings = _plain_settings(kwargs)
    overrides = Overrides(
        dashboard=settings.dashboard if _given(ctx, "dashboard") else None,
        secret_file=settings.secret_file if _given(ctx, "secret_file") else None,
        ca_bundle=settings.ca_bundle,
        insecure=settings.insecure,
        sandbox=settings.sandbox,
        sandbox_state=settings.sandbox_state if _given(ctx, "sandbox_state") else None,
        timeout=settings.timeout if _given(ctx, "timeout") else None,
        max_response_mb=settings.max_response_mb,
    )
    selected = environments.select(
        config_path=config_path,
        names=names,
        all_envs=all_envs,
        environ=os.environ,
        overrides=overrides,
    )
    if selected is not None:
        return selected
    if config_path is not None and not config_alone:
        raise click.UsageError(
            "--config: select environments with --env NAME or --all-envs "
            f"(or set {environments.ENV_VARIABLE})"
        )
    return [environments.single(settings)]


def _views(
    targets: Sequence[Target],
    paths: Sequence[Path],
    *,
    offline: bool = False,
    config: Config | None = None,
) -> list[Manifests]:
    """Each target's manifests, all loaded and checked before any call."""
    if not paths and not environments.named(targets):
        raise click.UsageError("Missing argument 'PATHS...'.")
    return environments.manifest_views(targets, paths, offline=offline, config=config)


@contextlib.contextmanager
def _running(target: Target) -> Iterator[None]:
    """An error raised while running `target` names its environment."""
    try:
        yield
    except TyksyncError as e:
        environments.with_environment(e, target)
        raise


def _plain_settings(kwargs: dict[str, Any]) -> ConnectionSettings:
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
    """Usage errors exit 1, not click's 2: 2 means "the plan has changes".

    The `sandbox` commands are imported when they run (or are listed): the sandbox's
    server and seed data cost every other command ~30 ms of start-up otherwise."""

    _LAZY: ClassVar[dict[str, str]] = {"sandbox": "tyksync.sandbox.cli"}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self._LAZY})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self._LAZY and cmd_name not in self.commands:
            module = importlib.import_module(self._LAZY[cmd_name])
            self.add_command(getattr(module, cmd_name))
        return super().get_command(ctx, cmd_name)

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
@_color_option
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
        type=click.IntRange(min=0, max=MAX_EXPIRY_WARNING_DAYS),
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
# With environments, PATHS default to each environment's `manifests` (tyksync.toml).
optional_paths_argument = click.argument("paths", nargs=-1, type=click.Path(path_type=Path))


@cli.command()
@optional_paths_argument
@click.option("--online", is_flag=True, help="Also resolve developers and policies live.")
@_connection_options
@_command
def validate(paths: tuple[Path, ...], online: bool, **kwargs: Any) -> int:
    """Check manifests; offline unless --online."""
    config_path = kwargs["config_path"]
    targets = _targets(kwargs, config_alone=not online)
    named = environments.named(targets)
    config = None
    if not online and not named and paths:
        # Offline, no environment: check the `environments:` names against a
        # tyksync.toml all the same, if there is one (a typo is caught at commit time).
        found = find_config(config_path)
        config = None if found is None else load_config(found)
    views = _views(targets, paths, offline=not online, config=config)
    if online:
        environments.preflight(targets, os.environ)
    for target, manifests in zip(targets, views, strict=True):
        if online:
            with _running(target), connect(target.settings, os.environ) as conn:
                resolve(manifests, conn.client.read_live(keys=False))
        count = sum(len(f.requests) for f in manifests.files)
        where = "resolved against the Dashboard" if online else "offline check"
        prefix = f"{target.name}: " if named else ""
        click.echo(
            f"{prefix}{len(manifests.files)} file(s), {count} request(s): valid ({where}).",
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
@optional_paths_argument
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
@click.option(
    "--truncation-note",
    "full_plan",
    metavar="MARKDOWN",
    default=FULL_PLAN,
    callback=lambda _ctx, _param, value: _short(value, "--truncation-note", 1000),
    help="Markdown: where the note of a plan cut to fit a PR comment sends the reader for "
    "the whole plan (e.g. a link to a CI artifact).",
)
@_max_deletes_option
@_color_option
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
    full_plan: str,
    max_deletes: int | None,
    expiry_warning: int,
    as_of: datetime | None,
    **kwargs: Any,
) -> int:
    """Show what apply would change."""
    from tyksync.pipeline import plan_live

    ctx = click.get_current_context()
    targets = _targets(kwargs)
    if out is not None and len(targets) > 1:
        raise click.UsageError(
            "--out: a saved plan belongs to one environment; save one per environment "
            "(--env NAME --out FILE)"
        )
    views = _views(targets, paths)  # bad manifests fail before any network call
    if out is not None:
        check_private(out, what="--out")  # a file that will be refused, before any call
    environments.preflight(targets, os.environ)  # every environment's secret, first
    named = environments.named(targets)
    plans: dict[str, Plan] = {}
    code = 0
    for target, manifests in zip(targets, views, strict=True):
        with _running(target), connect(target.settings, os.environ) as conn:
            the_plan = plan_live(
                conn.client,
                manifests,
                dashboard=conn.label,
                reissue=reissue,
                max_deletes=max_deletes,
                now=as_of,
                expiry_warning=timedelta(days=expiry_warning),
            )
        color = _color(sys.stdout)
        if target.name is None:
            render(the_plan, sys.stdout, cast(Format, fmt), color=color, full_plan=full_plan)
        else:
            render_heading(target.name, sys.stdout, cast(Format, fmt), first=not plans)
            plans[target.name] = the_plan
            if fmt == "markdown":
                render_markdown(
                    the_plan,
                    sys.stdout,
                    limit=markdown_limit(len(targets)),
                    full_plan=full_plan,
                )
            elif fmt == "text":
                render_text(the_plan, sys.stdout, color=color)
        if the_plan.safety.refused:
            # Also on stderr: stdout may be a file (--format json > plan.json) nobody reads now.
            where = f"{target.name}: " if named else ""
            log.warning("%s%s", where, refusal(the_plan))
        if as_of is not None:
            log.warning(
                "planned as of %s, not now (--as-of): apply plans for the moment it runs",
                utc_text(as_of),
            )
        if out is not None:
            written = paths or target.manifest_paths
            write_saved_plan(
                the_plan,
                out,
                manifest_paths=written,
                reissue=reissue,
                environment=target.name,
                expiry_warning_days=expiry_warning,
                as_of=None if as_of is None else utc_text(as_of),
            )
            shown = printable(str(out))
            if as_of is None:
                command = _apply_command(out, target.settings, max_deletes, ctx, target.name)
                click.echo(f"Plan saved to {shown}; apply it with: {command}", err=True)
            else:
                click.echo(
                    f"Plan saved to {shown}, for review only: made with --as-of, "
                    "apply --plan refuses it",
                    err=True,
                )
        code = max(code, _plan_exit_code(the_plan, detailed_exitcode, warnings_as_changes))
    if named and fmt == "json":
        render_environments_json(plans, sys.stdout)
    return code


def _plan_exit_code(the_plan: Plan, detailed_exitcode: bool, warnings_as_changes: bool) -> int:
    if not detailed_exitcode:
        return 0
    if the_plan.safety.refused:
        return 3
    drift = the_plan.has_changes or (warnings_as_changes and bool(the_plan.warnings))
    return 2 if drift else 0


def _short(value: str, name: str, limit: int) -> str:
    if len(value) > limit:
        raise click.BadParameter(f"at most {limit} characters", param_hint=name)
    return value


def _apply_command(
    out: Path,
    settings: ConnectionSettings,
    max_deletes: int | None,
    ctx: click.Context | None = None,
    environment: str | None = None,
) -> str:
    """The exact command that applies a saved plan, connection options included (the
    secret comes from the environment or its file, as it did for the plan). For an
    environment, the options that were given on the command line: tyksync.toml gives
    the rest again."""
    words = ["tyksync", "apply", "--plan", str(out)]
    if environment is not None and ctx is not None:
        words += ["--env", environment]
        words += _given_options(ctx)
        if max_deletes is not None:
            words += ["--max-deletes", str(max_deletes)]
        return printable(shlex.join(words))
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


def _given_options(ctx: click.Context) -> list[str]:
    """The connection options given on this command line, as words of another."""
    words: list[str] = []
    for name in ("config_path", "dashboard", "secret_file", "ca_bundle", "sandbox_state"):
        value = ctx.params.get(name)
        if value is not None and _given(ctx, name):
            option = "--config" if name == "config_path" else "--" + name.replace("_", "-")
            words += [option, url_label(value) if name == "dashboard" else str(value)]
    for flag in ("insecure", "sandbox"):
        if ctx.params.get(flag) and _given(ctx, flag):
            words.append("--" + flag)
    return words


def _given(ctx: click.Context, name: str) -> bool:
    return ctx.get_parameter_source(name) is click.core.ParameterSource.COMMANDLINE


# ---- apply -----------------------------------------------------------------------------


@cli.command()
@optional_paths_argument
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
@_color_option
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
    from tyksync.applier import ApplyResult

    targets = _targets(kwargs)
    named = environments.named(targets)
    if not paths and plan_file is None and not named:
        raise click.UsageError("give manifest PATHS, or --plan FILE (a plan saved by plan --out)")
    saved = read_saved_plan(plan_file) if plan_file else None
    if saved is not None:
        if len(targets) > 1:
            raise click.UsageError(
                "--plan: a saved plan belongs to one environment; select it with --env NAME"
            )
        check_environment(saved, targets[0].name)  # before any call
        if reissue and not saved.reissue:
            raise click.UsageError(
                "--reissue: the saved plan was made without it; plan again with --reissue"
            )
        check_not_a_preview(saved)
        paths = paths or tuple(Path(p) for p in saved.manifest_paths)
        reissue = saved.reissue  # re-derived with the options it was made with
        expiry_warning = saved.expiry_warning_days
    views = _views(targets, paths)  # bad manifests fail before the network
    # Files that will be refused are refused before any call to the Dashboard.
    if key_sink is not None:
        check_private(key_sink, what="--key-sink")
    check_private(journal, what="--journal", devices=True)
    environments.preflight(targets, os.environ)  # every environment's secret, first
    # The plan is for a person; with --format json stdout holds the outcome alone.
    shown = sys.stderr if fmt == "json" else sys.stdout
    run = _ApplyRun(
        saved=saved,
        auto_approve=auto_approve,
        force=force,
        max_deletes=max_deletes,
        reissue=reissue,
        key_sink=key_sink,
        journal=journal,
        parallelism=parallelism,
        shown=shown,
        expiry_warning=timedelta(days=expiry_warning),
        provenance=detect(os.environ),  # git asked once a run
    )
    if not named:
        the_plan, result = run.apply_to(targets[0], views[0])
        if fmt == "json":
            _print_result_json(the_plan, result or ApplyResult(), key_sink, sys.stdout)
        elif result is not None:
            _print_summary(result, key_sink, sys.stdout)
        return 0 if result is None or result.ok else 1
    # One environment after another, in the order selected: a failure or a refusal
    # stops the run, so that prod is not changed after staging went wrong.
    outcomes: dict[str, Any] = {}
    code = 0
    for index, (target, manifests) in enumerate(zip(targets, views, strict=True)):
        assert target.name is not None
        render_heading(target.name, shown, "text", first=index == 0)
        try:
            with _running(target):
                the_plan, result = run.apply_to(target, manifests)
        except TyksyncError:
            _not_applied(targets[index + 1 :])
            if fmt == "json":  # what was done in the environments before, still reported
                _print_outcomes_json(outcomes, sys.stdout)
            raise
        if fmt == "json":
            outcomes[target.name] = _result_data(the_plan, result or ApplyResult(), key_sink)
        elif result is not None:
            _print_summary(result, key_sink, sys.stdout)
        if result is not None and not result.ok:
            _not_applied(targets[index + 1 :])
            code = 1
            break
    if fmt == "json":
        _print_outcomes_json(outcomes, sys.stdout)
    return code


def _not_applied(rest: Sequence[Target]) -> None:
    if rest:
        names = ", ".join(t.name or "" for t in rest)
        click.echo(f"Not applied (an earlier environment did not complete): {names}", err=True)


@dataclass(frozen=True)
class _ApplyRun:
    """The options of one `apply`, for each environment it applies to."""

    saved: SavedPlan | None
    auto_approve: bool
    force: bool
    max_deletes: int | None
    reissue: bool
    key_sink: Path | None
    journal: Path
    parallelism: int
    shown: TextIO
    expiry_warning: timedelta
    provenance: Provenance

    def apply_to(self, target: Target, manifests: Manifests) -> tuple[Plan, ApplyResult | None]:
        """Plan against `target`, show the plan, ask, apply. None: nothing to apply."""
        from tyksync.applier import Applier
        from tyksync.pipeline import plan_live

        saved = self.saved
        with connect(target.settings, os.environ) as conn:
            if saved is not None:
                check_dashboard(saved, conn.label, target.name)
            try:
                the_plan = plan_live(
                    conn.client,
                    manifests,
                    dashboard=conn.label,
                    reissue=self.reissue,
                    max_deletes=self.max_deletes,
                    now=datetime.now(timezone.utc),  # apply always plans for now
                    expiry_warning=self.expiry_warning,
                )
            except ManifestError as e:
                raise e if saved is None else stale_resolution(e) from None
            if saved is not None:
                # Nothing in the file is applied: only what is planned now.
                check_same(saved, the_plan, target.name)
            render_text(the_plan, self.shown, color=_color(self.shown))
            if not the_plan.has_changes:
                return the_plan, None
            check_safety(the_plan, force=self.force)
            # Opened before asking: a sink that will be refused should fail before a "yes".
            outputs = _apply_outputs(self.key_sink, self.journal, self.provenance, target.name)
            with outputs as (sink, journal):
                if saved is None and not self.auto_approve:
                    label = conn.label if target.name is None else f"{target.name} ({conn.label})"
                    _confirm(the_plan, label)
                # With --format json the outcome object alone goes to stdout.
                lines = None if self.shown is not sys.stdout else sys.stdout
                with _Progress.start(the_plan, lines=lines) as progress:
                    applier = Applier(
                        conn.client,
                        key_sink=sink,
                        journal=journal,
                        parallelism=self.parallelism,
                        on_outcome=progress,
                        provenance=self.provenance,
                    )
                    return the_plan, applier.apply(the_plan)


class _Progress:
    """Apply's progress: each outcome line on `lines` (stdout) as the action completes,
    and, on a terminal, a counter on stderr below them.

    The applier calls it from its worker threads: one lock serialises every write, and the
    counter is wiped before an outcome line is written and drawn again after it, so that
    the two never share a line when stdout and stderr are the same terminal. With -v the
    log lines are the progress: no counter then.
    """

    def __init__(self, total: int, lines: TextIO | None, bar: TextIO | None) -> None:
        self.total = total
        self.done = 0
        self.lines = lines
        self.bar = bar
        self._drawn = 0  # characters of the counter on screen now
        self._lock = threading.Lock()

    @classmethod
    @contextlib.contextmanager
    def start(cls, the_plan: Plan, *, lines: TextIO | None) -> Iterator[_Progress]:
        on_terminal = _isatty(sys.stderr) and not log.isEnabledFor(logging.INFO)
        progress = cls(len(the_plan.actions), lines, sys.stderr if on_terminal else None)
        with progress._lock:
            progress._draw()
        try:
            yield progress
        finally:
            with progress._lock:
                progress._wipe()

    def __call__(self, outcome: Outcome) -> None:
        # Details quote the Dashboard (ids, messages): escaped and redacted, as the summary.
        line = printable(redact.redact(_outcome_line(outcome)))
        with self._lock:
            self.done += 1
            self._wipe()
            if self.lines is not None:
                self.lines.write(line + "\n")
                self.lines.flush()
            self._draw()

    def _draw(self) -> None:
        if self.bar is None:
            return
        width = 24
        filled = width * self.done // max(self.total, 1)
        text = f"[{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} actions"
        self.bar.write("\r" + text)
        self.bar.flush()
        self._drawn = len(text)

    def _wipe(self) -> None:
        if self.bar is None or not self._drawn:
            return
        # Spaces rather than an erase sequence: a dumb terminal understands them too.
        self.bar.write("\r" + " " * self._drawn + "\r")
        self.bar.flush()
        self._drawn = 0


def _isatty(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


@contextlib.contextmanager
def _apply_outputs(
    key_sink: Path | None,
    journal: Path,
    provenance: Provenance,
    environment: str | None = None,
) -> Iterator[tuple[KeySink | None, Journal]]:
    sink = KeySink(key_sink, environment=environment) if key_sink else None
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


def _print_summary(result: ApplyResult, key_sink: Path | None, out: TextIO) -> None:
    """The lines after the outcome lines (which `_Progress` printed as each completed)."""
    done = len(result.by_status("done"))
    failed = len(result.by_status("failed"))
    skipped = len(result.by_status("skipped"))
    lines = ["", f"Apply {'complete' if result.ok else 'INCOMPLETE'}: {done} done, {failed} failed"]
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
    data = _result_data(the_plan, result, key_sink)
    out.write(redact.redact(json.dumps(data, indent=2, ensure_ascii=True)) + "\n")


def _print_outcomes_json(outcomes: dict[str, Any], out: TextIO) -> None:
    """Several environments' outcomes: `{"environments": {NAME: outcome}}`."""
    text = json.dumps({"environments": outcomes}, indent=2, ensure_ascii=True)
    out.write(redact.redact(text) + "\n")


def _result_data(the_plan: Plan, result: ApplyResult, key_sink: Path | None) -> dict[str, Any]:
    return {
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
    """Print the live requests as a manifest (with several environments, one YAML
    document each, after a `# environment: NAME` line)."""
    targets = _targets(kwargs)
    environments.preflight(targets, os.environ)
    for index, target in enumerate(targets):
        with _running(target), connect(target.settings, os.environ) as conn:
            live = conn.client.read_live()
        if pending:
            text, notes = export_pending(live, owner=owner, developer=developer_email)
        else:
            text, notes = export_manifest(live, owner=owner, developer=developer_email)
        for note in notes:
            log.warning("%s%s", "" if target.name is None else f"{target.name}: ", note)
        if target.name is not None:
            text = f"{'---' + chr(10) if index else ''}# environment: {target.name}\n{text}"
        sys.stdout.write(text)
    return 0


# ---- grants / diff (audit) -------------------------------------------------------------


@cli.command()
@optional_paths_argument
@click.option(
    "--format",
    "fmt",
    type=click.Choice(GRANTS_FORMATS),
    default="text",
    show_default=True,
)
@click.option(
    "--developer",
    "developers",
    multiple=True,
    metavar="EMAIL",
    help="Only this developer (email or id); repeatable.",
)
@click.option(
    "--policy",
    "policies",
    multiple=True,
    metavar="NAME",
    help="Only requests for this policy (name, id or _id), alone or with others; repeatable.",
)
@click.option("--owner", "owners", multiple=True, metavar="NAME", help="Only this owner's.")
@click.option(
    "--state",
    type=click.Choice(["key", "pending"]),
    help="Only approved requests (key) or only pending ones.",
)
@click.option(
    "--unmanaged",
    is_flag=True,
    help="Only requests no manifest governs (without PATHS: those with no owner mark).",
)
@click.option(
    "--expiring-within",
    type=click.IntRange(min=0),
    metavar="DAYS",
    help="Only requests whose declaration expires within DAYS (or has expired).",
)
@_connection_options
@_command
def grants(
    paths: tuple[Path, ...],
    fmt: str,
    developers: tuple[str, ...],
    policies: tuple[str, ...],
    owners: tuple[str, ...],
    state: str | None,
    unmanaged: bool,
    expiring_within: int | None,
    **kwargs: Any,
) -> int:
    """Who holds which key request now, and since when.

    With the manifest PATHS, each row also says where it is declared and whether the
    manifests want it.
    """
    targets = _targets(kwargs)
    named = environments.named(targets)
    if fmt == "csv" and len(targets) > 1:
        raise click.UsageError("--format csv takes one environment: select it with --env")
    # Bad manifests fail before any call; each environment sees its own.
    views = _views(targets, paths) if paths else [None] * len(targets)
    environments.preflight(targets, os.environ)
    where = audit.GrantFilter(
        developers=developers,
        policies=policies,
        owners=owners,
        unmanaged=unmanaged,
        expiring_within=expiring_within,
        state=cast(audit.GrantState | None, state),
    )
    wrapped: dict[str, Any] = {}
    for index, (target, manifests) in enumerate(zip(targets, views, strict=True)):
        with _running(target):  # a manifest that does not resolve names its environment
            with connect(target.settings, os.environ) as conn:
                live = conn.client.read_live()
                label = conn.label
            now = datetime.now(timezone.utc)
            report = audit.grants(live, now=now, manifests=manifests, dashboard=label, where=where)
        for note in report.notes:
            log.warning("%s%s", "" if target.name is None else f"{target.name}: ", note)
        if named and fmt == "json":
            out = io.StringIO()
            render_grants(report, out, "json")
            wrapped[str(target.name)] = json.loads(out.getvalue())
            continue
        if named and fmt != "csv":  # CSV takes one environment: no heading in its rows
            render_heading(str(target.name), sys.stdout, cast(Format, fmt), first=index == 0)
        render_grants(report, sys.stdout, cast(GrantsFormat, fmt))
    if wrapped:
        json.dump({"environments": wrapped}, sys.stdout, indent=2, ensure_ascii=True)
        sys.stdout.write("\n")
    return 0


@cli.command()
@paths_argument
@click.option(
    "--base",
    metavar="REV",
    help="Compare PATHS as committed at this git revision with PATHS in the work tree.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(DIFF_FORMATS),
    default="text",
    show_default=True,
)
@click.option("--detailed-exitcode", is_flag=True, help="Exit 2 when access differs, 0 when not.")
@_verbosity
@_command
def diff(paths: tuple[Path, ...], base: str | None, fmt: str, detailed_exitcode: bool) -> int:
    """What a change of the manifests does to access, offline.

    \b
      tyksync diff OLD_PATH NEW_PATH
      tyksync diff --base origin/main manifests/

    Developers and policies are compared as written (no Dashboard resolves them): a
    rename shows as a loss and a gain.
    """
    if base is None:
        if len(paths) != 2:
            raise click.UsageError("give OLD_PATH and NEW_PATH, or --base REV PATHS...")
        old, new = _load_both(paths[0], paths[1])
        old_label, new_label = str(paths[0]), str(paths[1])
    else:
        new = load_manifests(paths)
        old = manifests_at(base, paths)
        shown = " ".join(str(p) for p in paths)
        old_label, new_label = f"{shown} at {base}", f"{shown} (work tree)"
    report = audit.access_diff(old, new, old_label=old_label, new_label=new_label)
    render_diff(report, sys.stdout, cast(DiffFormat, fmt))
    return 2 if detailed_exitcode and report.differs else 0


def _load_both(old: Path, new: Path) -> tuple[Manifests, Manifests]:
    """Both sets of manifests, or one error with the problems of both."""
    loaded: list[Manifests] = []
    problems: list[Problem] = []
    for path in (old, new):
        try:
            loaded.append(load_manifests([path]))
        except ManifestError as e:
            problems += e.problems
    if problems:
        raise ManifestError(problems)
    return loaded[0], loaded[1]


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
        escape = printable_lines if isinstance(e, (ManifestError, ConfigProblems)) else printable
        where = f"environment {e.environment}: " if e.environment else ""
        click.echo(escape(redact.redact(f"Error: {where}{e}")), err=True)
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
