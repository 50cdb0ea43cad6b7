"""Renderers of the audit reports (SPEC section 12): grants as text, JSON, CSV and Markdown;
the access diff as text, JSON and Markdown. Each takes a report and a stream and writes to
that stream only.

Every string from outside (the Dashboard's emails, names, ids, owners, dates; a manifest's
emails and policy names) goes through `tyksync.escape.printable` in text and CSV, and
stands in a code span in Markdown (with its pipes escaped inside a table).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Final, Literal, TextIO

from tyksync.audit import AccessDiff, AccessDiffReport, DiffKind, Grant, GrantsReport
from tyksync.escape import printable
from tyksync.markdown import code_span, table_cell
from tyksync.render import policy_name

GrantsFormat = Literal["text", "json", "csv", "markdown"]
GRANTS_FORMATS: Final[tuple[GrantsFormat, ...]] = ("text", "json", "csv", "markdown")
DiffFormat = Literal["text", "json", "markdown"]
DIFF_FORMATS: Final[tuple[DiffFormat, ...]] = ("text", "json", "markdown")


def _plural(n: int, singular: str, plural: str | None = None) -> str:
    return f"{n} {singular}" if n == 1 else f"{n} {plural or singular + 's'}"


def _yes_no(value: bool | None, unknown: str = "unknown") -> str:
    return unknown if value is None else "yes" if value else "no"


def _date(created: str) -> str:
    """The day of a normalized `date_created` (`2026-01-02T09:00:00.000000Z`)."""
    day = created[:10]
    return day if len(created) > 10 and created[10] == "T" else created


def _json(data: Any, stream: TextIO) -> None:
    # ASCII-only: control characters and bidi overrides arrive as \u escapes, never raw.
    json.dump(data, stream, indent=2, ensure_ascii=True)
    stream.write("\n")


# ---- grants ----------------------------------------------------------------------------

_LEGACY: Final = "legacy API"


def _grants_summary(report: GrantsReport) -> str:
    keys = sum(1 for g in report.grants if g.state == "key")
    pending = len(report.grants) - keys
    line = f"{_plural(len(report.grants), 'grant')}: {_plural(keys, 'key')}, {pending} pending."
    if report.with_manifests and report.not_yet_live and not report.filtered:
        line += (
            f" {_plural(report.not_yet_live, 'declared request has', 'declared requests have')}"
            " no live request yet (tyksync plan creates them)."
        )
    if not report.with_manifests:
        line += " Give the manifest PATHS to see where each is declared and whether it is wanted."
    return line


def _text_policies(g: Grant) -> str:
    if g.for_api is not None:
        return f"[{_LEGACY} {printable(g.for_api)}]"
    return "[" + ", ".join(policy_name(p.name) for p in g.policies) + "]"


def _grant_columns(report: GrantsReport) -> list[tuple[str, Callable[[Grant], str]]]:
    columns: list[tuple[str, Callable[[Grant], str]]] = [
        ("DEVELOPER", lambda g: printable(g.developer.email or g.developer.id)),
        ("POLICIES", _text_policies),
        ("STATE", lambda g: g.state),
        ("REQUEST", lambda g: printable(g.request_id)),
        ("OWNER", lambda g: printable(g.owner) if g.owner else "-"),
    ]
    if report.with_manifests:
        columns.append(("DECLARED", lambda g: printable(g.declared_at or "-")))
    columns += [
        ("CREATED", lambda g: printable(_date(g.created)) or "-"),
        ("AGE", lambda g: "-" if g.age_days is None else f"{g.age_days}d"),
        ("EXPIRES", lambda g: printable(g.expires) if g.expires else "-"),
        ("KEY ON RECORD", _on_record),
    ]
    if report.with_manifests:
        columns.append(("WANTED", lambda g: _yes_no(g.wanted)))
    return columns


def render_grants_text(report: GrantsReport, stream: TextIO) -> None:
    """An aligned table, one row per grant, then a one-line count."""
    head = f"Dashboard: {printable(report.dashboard)} (as of {report.as_of})"
    if not report.grants:
        stream.write(f"{head}\n\nNo grants.\n")
        return
    columns = _grant_columns(report)
    cells = [[title for title, _ in columns]]
    cells += [[cell(g) for _, cell in columns] for g in report.grants]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells
    ]
    stream.write(f"{head}\n\n" + "\n".join(lines) + f"\n\n{_grants_summary(report)}\n")


def render_grants_json(report: GrantsReport, stream: TextIO) -> None:
    """`{"dashboard", "as_of", "grants": [...]}`: exactly one JSON object."""
    _json(report.to_data(), stream)


CSV_COLUMNS: Final = (
    "developer_email",
    "developer_id",
    "policies",
    "policy_ids",
    "state",
    "request_id",
    "owner",
    "declared_at",
    "created",
    "age_days",
    "expires",
    "key_on_record",
    "wanted",
    "for_api",
)
# A cell starting with one of these is a formula to a spreadsheet (CSV injection).
_FORMULA_START: Final = ("=", "+", "-", "@", "\t", "\r")


def _csv_text(value: str | None) -> str:
    """Outside text in a CSV cell: escaped like everywhere tyksync prints, and made inert
    to spreadsheets (a leading `'`, as OWASP advises, on what would start a formula)."""
    if value is None:
        return ""
    text = printable(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def _on_record(g: Grant) -> str:
    """`-` where no key is to be on record (a pending or v1 request)."""
    return "-" if g.state == "pending" or g.for_api else _yes_no(g.key_on_record)


def _csv_bool(value: bool | None) -> str:
    return "" if value is None else "yes" if value else "no"


def render_grants_csv(report: GrantsReport, stream: TextIO) -> None:
    """A header row, then one row per grant. A request's policies are one cell each for
    names and `_id`s, joined by `;` (ids are exact; names are for reading)."""
    writer = csv.writer(stream, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for g in report.grants:
        writer.writerow(
            [
                _csv_text(g.developer.email),
                _csv_text(g.developer.id),
                _csv_text(";".join(p.name for p in g.policies)),
                _csv_text(";".join(p.id for p in g.policies)),
                g.state,
                _csv_text(g.request_id),
                _csv_text(g.owner),
                _csv_text(g.declared_at),
                _csv_text(g.created),
                "" if g.age_days is None else str(g.age_days),
                _csv_text(g.expires),
                _csv_bool(g.key_on_record),
                _csv_bool(g.wanted),
                _csv_text(g.for_api),
            ]
        )


def _md(text: str | None) -> str:
    """Outside text in a table cell: a code span, its pipes escaped; empty stays empty."""
    return "" if not text else table_cell(code_span(text))


def _md_policies(g: Grant) -> str:
    if g.for_api is not None:
        return f"_{_LEGACY}_ {_md(g.for_api)}"
    return ", ".join(_md(p.name) for p in g.policies)


def render_grants_markdown(report: GrantsReport, stream: TextIO) -> None:
    """A heading, the Dashboard, one table row per grant, the count."""
    titles = ["developer", "policies", "state", "request", "owner"]
    if report.with_manifests:
        titles.append("declared")
    titles += ["created", "age (days)", "expires", "key on record"]
    if report.with_manifests:
        titles.append("wanted")
    lines = [
        "### tyksync grants",
        "",
        f"Dashboard: {code_span(report.dashboard)} · as of {code_span(report.as_of)}",
        "",
    ]
    if report.grants:
        lines += [
            "| " + " | ".join(titles) + " |",
            "|" + "|".join("---:" if t == "age (days)" else "---" for t in titles) + "|",
        ]
    for g in report.grants:
        cells = [
            _md(g.developer.email or g.developer.id),
            _md_policies(g),
            g.state,
            _md(g.request_id),
            _md(g.owner),
        ]
        if report.with_manifests:
            cells.append(_md(g.declared_at))
        cells += [
            _md(_date(g.created)),
            "" if g.age_days is None else str(g.age_days),
            _md(g.expires),
            _on_record(g),
        ]
        if report.with_manifests:
            cells.append(_yes_no(g.wanted))
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", _grants_summary(report)] if report.grants else ["No grants."]
    stream.write("\n".join(lines) + "\n")


def render_grants(report: GrantsReport, stream: TextIO, fmt: GrantsFormat) -> None:
    renderers: dict[str, Callable[[GrantsReport, TextIO], None]] = {
        "text": render_grants_text,
        "json": render_grants_json,
        "csv": render_grants_csv,
        "markdown": render_grants_markdown,
    }
    if fmt not in renderers:
        raise ValueError(f"unknown grants format {fmt!r}")
    renderers[fmt](report, stream)


# ---- access diff -----------------------------------------------------------------------

_NO_DIFF: Final = "No access changes."
_STAYS_VALID: Final = "approved: the key it issued stays valid"
_KIND_WORDS: Final[dict[DiffKind, tuple[str, str]]] = {
    "gain": ("gain", "gains"),
    "loss": ("loss", "losses"),
    "approve": ("approval granted", "approvals granted"),
    "unapprove": ("approval taken back", "approvals taken back"),
    "expiry": ("expiry change", "expiry changes"),
    "owner": ("owner change", "owner changes"),
}


def _symbol(c: AccessDiff) -> str:
    if c.change == "gain":
        return "+" if c.after["approved"] else "?"
    return {"loss": "-", "approve": "+"}.get(c.change, "~")


def _diff_summary(report: AccessDiffReport) -> str:
    if not report.differs:
        return _NO_DIFF
    parts = []
    for kind, (one, many) in _KIND_WORDS.items():
        n = report.count(kind)
        if n:
            parts.append(f"{n} {one if n == 1 else many}")
    return "Access changes: " + ", ".join(parts) + "."


def _by_developer(changes: Iterable[AccessDiff]) -> dict[str, list[AccessDiff]]:
    groups: dict[str, list[AccessDiff]] = {}
    for c in changes:
        groups.setdefault(c.developer.lower(), []).append(c)
    return groups


def _value(value: Any) -> str:
    return "none" if value is None else str(value).lower() if isinstance(value, bool) else value


def _what(c: AccessDiff, quote: Callable[[str], str]) -> list[str]:
    """The words after the policies: what changed, and the details that matter."""
    if c.change == "gain":
        what = "gains a key" if c.after["approved"] else "gains a pending request (approved: false)"
        return [what, f"owner {quote(c.after['owner'])}"]
    if c.change == "loss":
        what = (
            f"loses the request ({_STAYS_VALID})"
            if c.before["approved"]
            else "loses the request (pending: no key was issued)"
        )
        return [what, f"owner {quote(c.before['owner'])}"]
    if c.change in ("approve", "unapprove"):
        word = "granted" if c.change == "approve" else "taken back"
        return [f"approval {word} (approved: {_value(c.before)} -> {_value(c.after)})"]
    before, after = _value(c.before), _value(c.after)
    if c.change == "expiry":
        shown = [x if x == "none" else quote(x) for x in (before, after)]
        return [f"expires: {shown[0]} -> {shown[1]}"]
    return [f"owner: {quote(before)} -> {quote(after)}"]


def _diff_head(report: AccessDiffReport) -> str:
    return f"Access diff: {printable(report.old)} -> {printable(report.new)}"


def render_diff_text(report: AccessDiffReport, stream: TextIO) -> None:
    """Per developer, one line per change: `+ [Gold]  gains access: approved ...`."""
    lines = [_diff_head(report), ""]
    for changes in _by_developer(report.changes).values():
        lines.append(printable(changes[-1].developer))
        for c in changes:
            policies = "[" + ", ".join(policy_name(p) for p in c.policies) + "]"
            parts = [f"  {_symbol(c)} {policies}", *_what(c, printable)]
            parts.append(printable(c.declared_at))
            if c.note:
                parts.append(c.note)
            lines.append("  ".join([parts[0], "; ".join(parts[1:])]))
    if report.changes:
        lines.append("")
    lines.append(_diff_summary(report))
    stream.write("\n".join(lines) + "\n")


def render_diff_json(report: AccessDiffReport, stream: TextIO) -> None:
    """`{"old", "new", "changes": [...]}`: exactly one JSON object."""
    _json(report.to_data(), stream)


_MD_TRUNCATED: Final = (
    "_… output truncated: {n} not shown (all of them: tyksync diff --format json)._"
)


def render_diff_markdown(report: AccessDiffReport, stream: TextIO, *, limit: int = 60000) -> None:
    """A pull-request comment, strictly shorter than `limit` characters: a summary table,
    then per developer one item per change. Cut at a whole change when it would not fit."""
    head = [
        "### tyksync access diff",
        "",
        f"{code_span(report.old)} → {code_span(report.new)}",
        "",
    ]
    if report.differs:
        kinds = list(_KIND_WORDS)
        head += [
            "| " + " | ".join(kinds) + " |",
            "|" + "---:|" * len(kinds),
            "| " + " | ".join(str(report.count(k)) for k in kinds) + " |",
        ]
    else:
        head.append(_NO_DIFF)
    body: list[tuple[str, int]] = []  # (line, changes it shows)
    for changes in _by_developer(report.changes).values():
        body += [("", 0), (f"#### {code_span(changes[-1].developer)}", 0), ("", 0)]
        body += [(_md_change(c), 1) for c in changes]
    _write_cut(stream, head, body, limit, len(report.changes))


def _md_change(c: AccessDiff) -> str:
    policies = ", ".join(code_span(p) for p in c.policies)
    details = [*_what(c, code_span), f"from {code_span(c.declared_at)}"]
    if c.note:
        details.append(f"_{c.note}_")
    head, *rest = details
    return f"- `{_symbol(c)}` {policies} — {head}" + "".join(f"; {d}" for d in rest)


def _write_cut(
    stream: TextIO, head: Sequence[str], body: Sequence[tuple[str, int]], limit: int, total: int
) -> None:
    def size(lines: Iterable[str]) -> int:
        return sum(len(line) + 1 for line in lines)

    if size(head) + size(line for line, _ in body) < limit:
        stream.write("".join(line + "\n" for line in [*head, *(line for line, _ in body)]))
        return
    note = _MD_TRUNCATED.format(n=_plural(total, "more change"))
    budget = limit - 1 - size(head) - size(["", note])
    kept: list[tuple[str, int]] = []
    used = 0
    for line, count in body:
        if used + len(line) + 1 > budget:
            break
        kept.append((line, count))
        used += len(line) + 1
    while kept and not kept[-1][1]:
        kept.pop()  # no developer heading without a change under it
    hidden = total - sum(count for _, count in kept)
    note = _MD_TRUNCATED.format(n=_plural(hidden, "more change"))
    lines = [*head, *(line for line, _ in kept), "", note]
    stream.write("".join(line + "\n" for line in lines))


def render_diff(report: AccessDiffReport, stream: TextIO, fmt: DiffFormat) -> None:
    if fmt == "text":
        render_diff_text(report, stream)
    elif fmt == "json":
        render_diff_json(report, stream)
    elif fmt == "markdown":
        render_diff_markdown(report, stream)
    else:
        raise ValueError(f"unknown diff format {fmt!r}")
