"""The one pipeline from manifests to a plan: read live state, resolve, plan.

The CLI, the tests and the benchmarks all plan through here, so there is one way to get
from manifests on disk and a Dashboard to a Plan.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from tyksync.client import DashboardClient
from tyksync.gcpause import collector_paused
from tyksync.manifest import Manifests, resolve
from tyksync.models import LiveState
from tyksync.plan import Plan
from tyksync.planner import EXPIRY_WARNING, make_plan


def plan_live(
    client: DashboardClient,
    manifests: Manifests,
    *,
    dashboard: str = "",
    reissue: bool = False,
    max_deletes: int | None = None,
    now: datetime | None = None,
    expiry_warning: timedelta = EXPIRY_WARNING,
) -> Plan:
    """Read the Dashboard once (three list calls) and plan against what it holds, as of
    `now` (default: the clock, read once the Dashboard has been read)."""
    with collector_paused():
        # The developers' keys matter only to a file that revokes (and to the digest then).
        live = client.read_live(keys=any(f.revoke for f in manifests.files))
        return plan_for(
            manifests,
            live,
            dashboard=dashboard,
            reissue=reissue,
            max_deletes=max_deletes,
            now=now,
            expiry_warning=expiry_warning,
        )


def plan_for(
    manifests: Manifests,
    live: LiveState,
    *,
    dashboard: str = "",
    reissue: bool = False,
    max_deletes: int | None = None,
    now: datetime | None = None,
    expiry_warning: timedelta = EXPIRY_WARNING,
) -> Plan:
    """Resolve the manifests against one read of live state and plan. Raises
    ManifestError for every reference the Dashboard cannot resolve. `now` defaults to the
    clock: the planner itself never reads it."""
    with collector_paused():
        desired = resolve(manifests, live)
        return make_plan(
            desired,
            live,
            dashboard=dashboard,
            reissue=reissue,
            max_deletes=max_deletes,
            now=now if now is not None else datetime.now(timezone.utc),
            expiry_warning=expiry_warning,
        )
