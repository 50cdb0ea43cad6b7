"""Plan renderers: text for a terminal, JSON for scripts, Markdown for a pull-request comment.

Each renderer takes a plan and a stream and writes to that stream only; deciding where the
output goes, and whether it is coloured, is the CLI's business (see `use_color`).

Every string in a plan that came from the Dashboard or a manifest (emails, policy names,
field keys and values, owners, reasons that quote them) is treated as hostile: in text it
cannot inject terminal escape sequences or line breaks, in Markdown it cannot open tags,
links, tables or code spans.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Literal, TextIO

from tyksync import __version__
from tyksync.escape import printable
from tyksync.markdown import code_span as _md_code
from tyksync.plan import (
    AccessChange,
    Action,
    DevRef,
    PendingRequest,
    Plan,
    PlanWarning,
    PolicyRef,
)

Format = Literal["text", "json", "markdown"]
FORMATS: Final[tuple[Format, ...]] = ("text", "json", "markdown")  # for click.Choice

# --- shared wording ---------------------------------------------------------------------

_SYMBOL: Final = {"create": "+", "approve": "~", "replace": "-/+", "delete": "-"}
_STAYS_VALID: Final = "approved: the key it issued stays valid"
_NO_CHANGES: Final = "No changes. The Dashboard matches the manifests."
_NO_POLICIES: Final = "no policies"  # a legacy (`for_api`) request names no policy
PENDING_SHOWN: Final = 20  # the oldest pending requests text and Markdown list; JSON has all


def _revokes(action: Action) -> str:
    """`revoke key#ab12cd34`, or "" for an action that revokes nothing."""
    return f"revoke {action.revoke_key}" if action.revoke_key else ""


def _pending_head(plan: Plan) -> str:
    n = len(plan.pending)
    head = f"{_plural(n, 'pending request')} {'waits' if n == 1 else 'wait'} for a decision"
    return head + (f" (the {PENDING_SHOWN} oldest shown)" if n > PENDING_SHOWN else "")


def _age_text(p: PendingRequest) -> str:
    return "age unknown" if p.age_days is None else f"{_plural(p.age_days, 'day')} old"


def _plural(n: int, singular: str) -> str:
    return f"{n} {singular}" if n == 1 else f"{n} {singular}s"


def _leftovers(plan: Plan) -> str:
    """`2 warnings, 3 unmanaged requests left alone.` — or "" when there is neither."""
    parts = []
    if plan.warnings:
        parts.append(_plural(len(plan.warnings), "warning"))
    if plan.unmanaged:
        parts.append(_plural(plan.unmanaged, "unmanaged request") + " left alone")
    return ", ".join(parts) + "." if parts else ""


def _summary_line(plan: Plan) -> str:
    if plan.has_changes:
        counts = ", ".join(
            f"{plan.count(kind)} to {kind}" for kind in ("create", "approve", "replace", "delete")
        )
        head = f"Plan: {counts}."
    elif plan.warnings:
        # Warnings are drift too: never say that the Dashboard matches.
        tail = _leftovers(dataclasses.replace(plan, warnings=()))
        return f"{_no_actions(plan)} {tail}".rstrip()
    else:
        head = _NO_CHANGES
    tail = _leftovers(plan)
    return f"{head} {tail}" if tail else head


def _no_actions(plan: Plan) -> str:
    n = len(plan.warnings)
    needs = "needs" if n == 1 else "need"
    differences = _plural(n, "difference")
    return f"Nothing will be applied, but {differences} {needs} a person (see the warnings)."


def refusal(plan: Plan) -> str:
    """The safety verdict, when apply would refuse the plan; "" otherwise."""
    safety = plan.safety
    if not safety.refused:
        return ""
    unless = "" if safety.over_cap else " without --force"
    return f"apply will refuse this plan{unless}: {safety.message}"


# --- text -------------------------------------------------------------------------------

_RESET: Final = "\x1b[0m"
_BOLD: Final = "\x1b[1m"
_GREEN: Final = "\x1b[32m"
_YELLOW: Final = "\x1b[33m"
_RED: Final = "\x1b[31m"
_KIND_COLOR: Final = {"create": _GREEN, "approve": _YELLOW, "replace": _YELLOW, "delete": _RED}

# A field key or value made of these prints bare; anything else is quoted so that spaces,
# commas or `=` inside a value cannot be read as a separator.
_BARE_TOKEN: Final = re.compile(r"[\w.:/@+#-]+")
# A policy name keeps its spaces ("Gold Plan") but is quoted when it would blur the list.
_NAME_NEEDS_QUOTES: Final = re.compile(r'^$|^\s|\s$|[,\[\]"]')
# Variables that ask for colour without a terminal (force-color.org; CLICOLOR_FORCE from
# the BSD `ls` convention).
_FORCE_COLOR: Final = ("FORCE_COLOR", "CLICOLOR_FORCE")


def use_color(stream: TextIO, env: Mapping[str, str], *, no_color: bool = False) -> bool:
    """Colour only for a terminal that can show it, and never against the user's wish.

    In order, the first that applies decides:
    - `no_color` (the `--no-color` option): off;
    - `NO_COLOR` (no-color.org): present and not empty turns colour off, whatever its
      value;
    - `FORCE_COLOR` or `CLICOLOR_FORCE`, not empty and not `0`: on, even when `stream` is
      not a terminal (a CI log that renders ANSI, a pager);
    - `TERM=dumb`: off;
    - otherwise colour when `stream` is a terminal. A closed or exotic stream that cannot
      answer `isatty()` gets no colour.
    """
    if no_color or env.get("NO_COLOR", "") != "":
        return False
    if any(env.get(name, "") not in ("", "0") for name in _FORCE_COLOR):
        return True
    if env.get("TERM") == "dumb":
        return False
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


def _quote(text: str) -> str:
    inner = text.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{printable(inner)}"'


def _token(text: str) -> str:
    return text if _BARE_TOKEN.fullmatch(text) else _quote(text)


def policy_name(name: str) -> str:
    """A policy name in a text list: quoted when a comma, bracket or quote would blur it."""
    return _quote(name) if _NAME_NEEDS_QUOTES.search(name) else printable(name)


def _text_policies(policies: Sequence[PolicyRef]) -> str:
    if not policies:
        return f"[{_NO_POLICIES}]"
    return "[" + ", ".join(policy_name(p.name) for p in policies) + "]"


def _text_fields(fields: Mapping[str, str]) -> str:
    return ", ".join(f"{_token(k)}={_token(v)}" for k, v in sorted(fields.items()))


def _text_request(action: Action) -> str:
    """`request <id>: <reason>`, the part that names what is approved, replaced or deleted."""
    parts = []
    if action.request_id is not None:
        parts.append(f"request {printable(action.request_id)}")
    if action.action != "approve" and action.reason:
        parts.append(printable(action.reason))
    text = ": ".join(parts)
    if action.revoke_key:
        text += f" (approved: {_revokes(action)})"
    elif action.deletes and action.approved:
        text += f" ({_STAYS_VALID})"
    return text


def _text_context(action: Action) -> str:
    """`(owner payments-team, manifests/payments.yaml:12)`: where the action comes from."""
    parts = []
    if action.owner:
        parts.append(f"owner {printable(action.owner)}")
    if action.declared_at:
        parts.append(printable(action.declared_at))
    return f"({', '.join(parts)})" if parts else ""


def _text_action(action: Action, paint: Callable[[str, str], str]) -> str:
    # Colour the symbol and the verb, not the padding that aligns the columns after them.
    head = paint(f"{_SYMBOL[action.action]:>3} {action.action}", _KIND_COLOR[action.action])
    parts = [head + " " * (len("approve") - len(action.action))]
    parts.append(printable(action.developer.email or action.developer.id))
    parts.append(_text_policies(action.policies))
    if action.action != "create":
        parts.append(_text_request(action))
    if action.creates:
        parts.append("approve=" + ("yes" if action.approve else "no"))
        if action.fields:
            parts.append("fields: " + _text_fields(action.fields))
    parts.append(_text_context(action))
    return "  ".join(p for p in parts if p)


def _text_warning(warning: PlanWarning, paint: Callable[[str, str], str]) -> str:
    who = printable(warning.developer.email or warning.developer.id)
    where = f"{who} {_text_policies(warning.policies)}"
    if warning.request_id is not None:
        where += f"  request {printable(warning.request_id)}"
    return f"{paint('! warning:', _YELLOW)} {where}: {printable(warning.message)}"


_ACCESS_COLOR: Final = {"gain": _GREEN, "new_key": _YELLOW, "pending": _YELLOW, "loss": _RED}
_ACCESS_HEAD: Final = "Access changes:"


def _by_developer_access(changes: Iterable[AccessChange]) -> dict[DevRef, list[AccessChange]]:
    groups: dict[DevRef, list[AccessChange]] = {}
    for change in changes:
        groups.setdefault(change.developer, []).append(change)
    return groups


def _text_access(plan: Plan, paint: Callable[[str, str], str]) -> list[str]:
    """`Access changes:`, then one line per developer: `+ [Gold]  - [Silver]` (SPEC 12)."""
    groups = _by_developer_access(plan.access_changes)
    if not groups:
        return []
    names = {d: printable(d.email or d.id) for d in groups}
    width = max(len(n) for n in names.values())
    lines = [_ACCESS_HEAD]
    for developer, changes in groups.items():
        parts = [
            f"{paint(c.symbol, _ACCESS_COLOR[c.change])} {_text_policies(c.policies)}"
            for c in changes
        ]
        lines.append(f"  {names[developer]:<{width}}  " + "  ".join(parts))
    return lines


def _text_pending(plan: Plan) -> list[str]:
    """The pending queue: the oldest first, at most PENDING_SHOWN of them."""
    lines = [_pending_head(plan) + ":"]
    for p in plan.pending[:PENDING_SHOWN]:
        who = printable(p.developer.email or p.developer.id)
        lines.append(
            f"  ? {who}  {_text_policies(p.policies)}  request {printable(p.request_id)}  "
            f"{_age_text(p)}"
        )
    if len(plan.pending) > PENDING_SHOWN:
        lines.append(
            f"  ... and {len(plan.pending) - PENDING_SHOWN} more (plan --format json lists all)"
        )
    lines.append("  (declare one to approve it, e.g. from `tyksync export --pending`)")
    return lines


def render_text(plan: Plan, stream: TextIO, *, color: bool) -> None:
    """Terraform-like: the access changes per developer, one line per action in the plan's
    order, then warnings, then the pending queue, then a one-line summary."""

    def paint(text: str, code: str) -> str:
        return f"{code}{text}{_RESET}" if color else text

    blocks: list[list[str]] = []
    if plan.dashboard:
        blocks.append([f"Dashboard: {printable(plan.dashboard)}"])
    if plan.safety.refused:
        blocks.append([paint(f"REFUSED: {refusal(plan)}", _BOLD + _RED)])
    access = _text_access(plan, paint)
    if access:
        blocks.append(access)
    if plan.actions:
        blocks.append([_text_action(a, paint) for a in plan.actions])
    if plan.warnings:
        blocks.append([_text_warning(w, paint) for w in plan.warnings])
    if plan.pending:
        blocks.append(_text_pending(plan))
    blocks.append([paint(_summary_line(plan), _BOLD)])
    stream.write("\n\n".join("\n".join(block) for block in blocks) + "\n")


# --- JSON -------------------------------------------------------------------------------


def render_json(plan: Plan, stream: TextIO) -> None:
    """Exactly one JSON object, `plan.to_data()`, in its own (stable) key order.

    ASCII-only, so that redirecting it to a file never fails on a console whose encoding
    cannot hold a policy name; every JSON parser reads the escapes back.
    """
    json.dump(plan.to_data(), stream, indent=2, sort_keys=False, ensure_ascii=True)
    stream.write("\n")


# --- Markdown ---------------------------------------------------------------------------

_TRUNCATED: Final = "_… output truncated: {n} not shown ({where})._"
# Where the note of a truncated plan sends a reviewer; a CI job that keeps the full plan
# (an artifact, say) names it instead (`plan --truncation-note`).
FULL_PLAN: Final = "full plan: run tyksync plan --format json"


def _md_policies(policies: Sequence[PolicyRef]) -> str:
    if not policies:
        return f"_{_NO_POLICIES}_"
    return ", ".join(_md_code(p.name) for p in policies)


def _md_action(action: Action) -> str:
    head = f"- `{_SYMBOL[action.action]}` **{action.action}** {_md_policies(action.policies)}"
    details = []
    request = [] if action.request_id is None else [f"request {_md_code(action.request_id)}"]
    if action.action in ("replace", "delete") and action.reason:
        request.append(_md_code(action.reason))
    if request:
        details.append(": ".join(request))
    if action.revoke_key:
        details.append(f"**revoke** {_md_code(action.revoke_key)}")
    elif action.deletes and action.approved:
        details.append(f"**{_STAYS_VALID}**")
    if action.creates:
        details.append("approve: " + ("yes" if action.approve else "no"))
        if action.fields:
            pairs = (_md_code(f"{k}={v}") for k, v in sorted(action.fields.items()))
            details.append("fields: " + ", ".join(pairs))
    if action.owner:
        details.append(f"owner {_md_code(action.owner)}")
    if action.declared_at:
        details.append(f"from {_md_code(action.declared_at)}")
    return f"{head} — {'; '.join(details)}" if details else head


def _md_warning(warning: PlanWarning) -> str:
    who = _md_code(warning.developer.email or warning.developer.id)
    where = f"{who} \\[{_md_policies(warning.policies)}\\]"
    if warning.request_id is not None:
        where += f" request {_md_code(warning.request_id)}"
    return f"- {where}: {_md_code(warning.message)}"


def _md_table(plan: Plan) -> list[str]:
    summary = plan.summary()
    columns = ("create", "approve", "replace", "delete", "warnings", "unmanaged")
    return [
        "| " + " | ".join(columns) + " |",
        "|" + "---:|" * len(columns),
        "| " + " | ".join(str(summary[c]) for c in columns) + " |",
    ]


def _by_developer(actions: Iterable[Action]) -> dict[DevRef, list[Action]]:
    """Group in order of first appearance, keeping the plan's order within a group."""
    groups: dict[DevRef, list[Action]] = {}
    for action in actions:
        groups.setdefault(action.developer, []).append(action)
    return groups


@dataclass(frozen=True)
class _Line:
    """A line of Markdown, and how many actions or warnings it would hide if cut."""

    text: str
    actions: int = 0
    warnings: int = 0
    access: int = 0  # developers whose access changes it lists
    pending: int = 0


def _md_access(plan: Plan) -> list[_Line]:
    """`**Access changes**`, then one item per developer: `` `+` `Gold` · `-` `Silver` ``."""
    groups = _by_developer_access(plan.access_changes)
    if not groups:
        return []
    lines = [_Line(""), _Line(f"**{_ACCESS_HEAD[:-1]}**"), _Line("")]
    for developer, changes in groups.items():
        parts = (f"`{c.symbol}` {_md_policies(c.policies)}" for c in changes)
        who = _md_code(developer.email or developer.id)
        lines.append(_Line(f"- {who}: " + " · ".join(parts), access=1))
    return lines


def _md_details(plan: Plan) -> list[_Line]:
    lines: list[_Line] = []
    for developer, actions in _by_developer(plan.actions).items():
        who = _md_code(developer.email or developer.id)
        lines.append(_Line(""))
        lines.append(_Line(f"#### {who} ({_plural(len(actions), 'change')})"))
        lines.append(_Line(""))
        lines.extend(_Line(_md_action(a), actions=1) for a in actions)
    return lines


def _md_warnings(plan: Plan) -> list[_Line]:
    if not plan.warnings:
        return []
    head = [_Line(""), _Line("#### Warnings"), _Line("")]
    return head + [_Line(_md_warning(w), warnings=1) for w in plan.warnings]


def _md_pending(plan: Plan) -> list[_Line]:
    if not plan.pending:
        return []
    lines = [_Line(""), _Line(f"#### {_pending_head(plan)}"), _Line("")]
    for p in plan.pending[:PENDING_SHOWN]:
        who = _md_code(p.developer.email or p.developer.id)
        lines.append(
            _Line(
                f"- {who} \\[{_md_policies(p.policies)}\\] request {_md_code(p.request_id)}, "
                f"{_age_text(p)}",
                pending=1,
            )
        )
    more = len(plan.pending) - PENDING_SHOWN
    if more > 0:
        lines.append(_Line(f"- _… and {more} more (`tyksync plan --format json` lists all)_"))
    return lines


def _md_head(plan: Plan) -> list[str]:
    lines = ["### tyksync plan", ""]
    if plan.safety.refused:
        # First thing a reviewer reads: the refusal must not surface only after merge.
        lines += [f"> [!CAUTION]\n> **{refusal(plan)}**", ""]
    if plan.dashboard:
        lines += [f"Dashboard: {_md_code(plan.dashboard)}", ""]
    lines += _md_table(plan)
    if not plan.has_changes:
        lines += ["", _no_actions(plan) if plan.warnings else "No changes."]
    return lines


def _md_footer(plan: Plan) -> list[str]:
    return ["", f"<sub>fingerprint {_md_code(plan.fingerprint)} · tyksync {__version__}</sub>"]


def _size(lines: Iterable[str]) -> int:
    return sum(len(line) + 1 for line in lines)  # every line ends with "\n"


def _fit(lines: Sequence[_Line], budget: int) -> tuple[list[_Line], list[_Line]]:
    """The longest run of whole lines that fits in `budget` characters, and the rest.

    A cut never leaves a developer's heading without a single action under it.
    """
    used = 0
    count = 0
    for line in lines:
        if used + len(line.text) + 1 > budget:
            break
        used += len(line.text) + 1
        count += 1
    if count < len(lines):
        while count and not (
            lines[count - 1].actions
            or lines[count - 1].warnings
            or lines[count - 1].access
            or lines[count - 1].pending
        ):
            count -= 1
    return list(lines[:count]), list(lines[count:])


def _truncation_note(
    actions: int, warnings: int, where: str, access: int = 0, pending: int = 0
) -> str:
    hidden = []
    if access:
        hidden.append("the access changes of " + _plural(access, "more developer"))
    if actions:
        hidden.append(_plural(actions, "more action"))
    if warnings:
        hidden.append(_plural(warnings, "more warning"))
    if pending:
        hidden.append(_plural(pending, "more pending request"))
    return _TRUNCATED.format(n=" and ".join(hidden), where=where)


def render_markdown(
    plan: Plan, stream: TextIO, *, limit: int = 60000, full_plan: str = FULL_PLAN
) -> None:
    """A pull-request comment, strictly shorter than `limit` characters.

    When the whole plan does not fit, lines are cut whole: the access changes are kept
    first (they open the plan), then the warnings (what a reviewer must not miss), then as
    many actions as there is room for, and a note says how much was left out and, in the
    words of `full_plan` (Markdown, from whoever runs tyksync, not from the Dashboard),
    where the whole plan is. The heading, the summary table and the footer are always
    there.
    """
    where = " ".join(full_plan.split()) or FULL_PLAN  # one line: the note is one paragraph
    head, footer = _md_head(plan), _md_footer(plan)
    access, details = _md_access(plan), _md_details(plan)
    warnings = _md_warnings(plan) + _md_pending(plan)
    body = access + details + warnings
    if _size(head) + _size(line.text for line in body) + _size(footer) < limit:
        _write_lines(stream, head + [line.text for line in body] + footer)
        return

    # Room for the note as if everything were hidden: its length only shrinks after.
    shown_pending = min(len(plan.pending), PENDING_SHOWN)
    worst_note = _truncation_note(
        len(plan.actions),
        len(plan.warnings),
        where,
        sum(x.access for x in access),
        shown_pending,
    )
    budget = limit - 1 - _size(head) - _size(["", worst_note]) - _size(footer)
    if budget < 0:
        raise ValueError(f"a Markdown limit of {limit} characters cannot hold the plan summary")
    kept_access, cut = _fit(access, budget)
    budget -= _size(line.text for line in kept_access)
    warnings_size = _size(line.text for line in warnings)
    if warnings_size <= budget:
        kept, cut_details = _fit(details, budget - warnings_size)
        kept += warnings
    else:
        kept, cut_details = _fit(warnings, budget)
        cut_details += details
    cut += cut_details
    note = _truncation_note(
        sum(x.actions for x in cut),
        sum(x.warnings for x in cut),
        where,
        sum(x.access for x in cut),
        sum(x.pending for x in cut),
    )
    lines = head + [line.text for line in kept_access + kept] + ["", note] + footer
    _write_lines(stream, lines)


def _write_lines(stream: TextIO, lines: Iterable[str]) -> None:
    stream.write("".join(line + "\n" for line in lines))


# --- dispatch ---------------------------------------------------------------------------


def render(
    plan: Plan, stream: TextIO, fmt: Format, *, color: bool = False, full_plan: str = FULL_PLAN
) -> None:
    """Render `plan` to `stream` in `fmt`; `color` only applies to text, `full_plan` (where
    a truncated Markdown plan sends its reader) to Markdown."""
    if fmt == "text":
        render_text(plan, stream, color=color)
    elif fmt == "json":
        render_json(plan, stream)
    elif fmt == "markdown":
        render_markdown(plan, stream, full_plan=full_plan)
    else:
        raise ValueError(f"unknown plan format {fmt!r}; expected one of {', '.join(FORMATS)}")
