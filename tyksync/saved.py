"""Saved plans: a record for reviewers, never an authority (SPEC section 9).

A saved plan is the JSON plan plus what re-deriving it needs (the manifest paths and the
options it was made with). `apply --plan` reads the manifests and the Dashboard again,
plans again, and goes on only when the plan computed now is the one in the file: nothing
in the file is applied or trusted, so a file edited by hand, or written by someone other
than tyksync, can at most be refused.

A plan made with `--as-of` (a preview of another moment) records it and is refused by
`apply --plan` (exit 3): apply always plans for now, so such a plan could only be applied
as something other than what was reviewed. The pending queue is information, not part of
what must match: it spans the whole Dashboard and its ages grow by the day.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tyksync.errors import ManifestError, StalePlan, TyksyncError
from tyksync.escape import printable, printable_lines
from tyksync.fileutil import atomic_write, read_regular
from tyksync.plan import FORMAT_VERSION, Plan, canonical_json
from tyksync.planner import MAX_EXPIRY_WARNING_DAYS

SAVED = "saved"  # the member of a saved plan that holds what re-deriving needs
MAX_PLAN_BYTES = 256 * 1024 * 1024
# Figures computed at apply time from apply's own options, never compared.
_NOT_COMPARED = frozenset({"safety", "tool_version", SAVED, "pending"})


@dataclass(frozen=True)
class SavedPlan:
    path: Path
    data: dict[str, Any]  # the file's JSON plan, as written
    dashboard: str
    manifest_paths: tuple[str, ...]
    reissue: bool
    environment: str | None = None  # the environment of tyksync.toml it was made for
    expiry_warning_days: int = 14
    as_of: str | None = None  # the --as-of the plan was made with: never applied


def _environment_of(saved: dict[str, Any]) -> tuple[bool, str | None]:
    """(well-formed, the environment). Plans saved before environments existed have no
    member: they belong to no environment."""
    value = saved.get("environment")
    return value is None or (isinstance(value, str) and bool(value)), value


def write_saved_plan(
    plan: Plan,
    out: Path,
    *,
    manifest_paths: Sequence[Path],
    reissue: bool,
    environment: str | None = None,
    expiry_warning_days: int = 14,
    as_of: str | None = None,
) -> None:
    data = plan.to_data()
    data[SAVED] = {
        "manifest_paths": [os.path.relpath(os.path.abspath(p)) for p in manifest_paths],
        "reissue": reissue,
        "environment": environment,
        "expiry_warning_days": expiry_warning_days,
        "as_of": as_of,
    }
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(out, json.dumps(data, indent=2, ensure_ascii=True) + "\n")
    except OSError as e:
        shown = printable(str(out))
        raise TyksyncError(f"--out {shown}: cannot write the plan: {e.strerror}") from None


def read_saved_plan(path: Path) -> SavedPlan:
    """The file's plan, checked for shape only (exit 1 for a file that is not one)."""
    shown = printable(str(path))
    try:
        raw = read_regular(path, MAX_PLAN_BYTES)
    except OSError as e:
        raise TyksyncError(f"--plan {shown}: cannot read it: {e.strerror}") from None
    if len(raw) > MAX_PLAN_BYTES:
        raise TyksyncError(f"--plan {shown}: not a tyksync plan file (larger than any plan)")
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        raise TyksyncError(f"--plan {shown}: not a tyksync plan file (not JSON)") from None
    saved = data.get(SAVED) if isinstance(data, dict) else None
    if (
        not isinstance(data, dict)
        or data.get("format_version") != FORMAT_VERSION
        or not isinstance(saved, dict)
        or not isinstance(data.get("dashboard"), str)
        or not isinstance(saved.get("manifest_paths"), list)
        or not all(isinstance(p, str) and p for p in saved["manifest_paths"])
        or not isinstance(saved.get("reissue"), bool)
        or not _environment_of(saved)[0]
        or type(saved.get("expiry_warning_days", 14)) is not int
        or not 0 <= saved.get("expiry_warning_days", 14) <= MAX_EXPIRY_WARNING_DAYS
        or not isinstance(saved.get("as_of"), (str, type(None)))
    ):
        raise TyksyncError(
            f"--plan {shown}: not a tyksync plan file (save one with `tyksync plan --out`)"
        )
    try:
        Plan.from_data(data)  # the shape of every member, actions and warnings included
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise TyksyncError(
            f"--plan {shown}: not a tyksync plan file ({type(e).__name__}: {printable(str(e))})"
        ) from None
    return SavedPlan(
        path=path,
        data=data,
        dashboard=data["dashboard"],
        manifest_paths=tuple(saved["manifest_paths"]),
        reissue=saved["reissue"],
        environment=_environment_of(saved)[1],
        expiry_warning_days=saved.get("expiry_warning_days", 14),
        as_of=saved.get("as_of"),
    )


def check_not_a_preview(saved: SavedPlan) -> None:
    """Refuse a plan made for another moment (`plan --as-of`): apply plans for now."""
    if saved.as_of is not None:
        raise StalePlan(
            f"the saved plan was made with --as-of {printable(saved.as_of)}, a preview of "
            "another moment; apply always plans for now: run `tyksync plan --out` without "
            "--as-of and review that plan"
        )


def _compared(data: dict[str, Any]) -> dict[str, Any]:
    """What must be identical. The count of unmanaged requests is left out: requests out
    of the plan's scope may come and go without changing what it does."""
    compared = {k: v for k, v in data.items() if k not in _NOT_COMPARED}
    summary = compared.get("summary")
    if isinstance(summary, dict):
        compared["summary"] = {k: v for k, v in summary.items() if k != "unmanaged"}
    return compared


def stale_resolution(e: ManifestError) -> StalePlan:
    """The manifests no longer resolve against the Dashboard a saved plan is applied to:
    the Dashboard changed under the plan (a policy or developer went away)."""
    return StalePlan(
        "the saved plan is stale: the manifests no longer resolve against the Dashboard; "
        + printable_lines(str(e))
    )


def check_environment(saved: SavedPlan, environment: str | None) -> None:
    """Refuse a plan made for another environment of tyksync.toml (or for one, applied
    without one, or the other way round): a saved plan belongs to one environment."""
    if saved.environment == environment:
        return
    shown = printable(str(saved.path))
    if saved.environment is None:
        raise StalePlan(
            f"the saved plan was made without an environment, not for environment "
            f"{environment}; run `tyksync plan --env {environment} --out` and review that plan"
        )
    made_for = printable(saved.environment)
    if environment is None:
        raise StalePlan(
            f"the saved plan was made for environment {made_for}; apply it with "
            f"`tyksync apply --plan {shown} --env {made_for}`"
        )
    raise StalePlan(
        f"the saved plan was made for environment {made_for}, not {environment}; run "
        f"`tyksync plan --env {environment} --out` and review that plan"
    )


def check_dashboard(saved: SavedPlan, dashboard: str, environment: str | None = None) -> None:
    """Refuse a plan made for another environment, against no Dashboard, or against
    another one, before reading anything."""
    check_environment(saved, environment)
    if not saved.dashboard:
        raise StalePlan(
            "the saved plan names no Dashboard, so it was not made by tyksync (or was "
            "edited); run `tyksync plan --out` against the Dashboard and review that plan"
        )
    if saved.dashboard != dashboard:
        raise StalePlan(
            f"the saved plan was made against {printable(saved.dashboard)}, not "
            f"{printable(dashboard)}; run `tyksync plan --out` again against this Dashboard"
        )


def check_same(saved: SavedPlan, now: Plan, environment: str | None = None) -> None:
    """Go on only when the plan computed now is the saved one; otherwise say what moved."""
    check_dashboard(saved, now.dashboard, environment)
    then, current = _compared(saved.data), _compared(now.to_data())
    if canonical_json(then) == canonical_json(current):
        return
    again = "; run `tyksync plan --out` again and review the new plan"
    if then.get("manifest_digest") != current["manifest_digest"]:
        raise StalePlan("the saved plan is stale: the manifests changed since it was made" + again)
    if then.get("live_digest") != current["live_digest"]:
        raise StalePlan(
            "the saved plan is stale: the live key requests, developers or policies it was "
            "computed from have changed since" + again
        )
    if then.get("actions") == current["actions"] and then.get("warnings") != current["warnings"]:
        raise StalePlan(
            "the saved plan is stale: its warnings differ from the plan computed now (an "
            "`expires` date came nearer, or the file was edited)" + again
        )
    what = "its actions differ" if then.get("actions") != current["actions"] else "it was edited"
    raise StalePlan(
        f"the saved plan was not made by tyksync from these manifests ({what} from the plan "
        "computed now from the same manifests and Dashboard)" + again
    )
