"""Outside text in Markdown for a pull-request page or a report: nothing in it is live.

Shared by the plan, grants and access-diff renderers.
"""

from __future__ import annotations

import re

from tyksync.escape import printable


def code_span(text: str) -> str:
    """Outside text (emails, names, ids, values, reasons quoting them) as a CommonMark code
    span: nothing in it is live on a PR page, no mention, link, image, HTML, heading or
    table break. Not an HTML <code> element, whose content other renderers (and GitHub,
    for @mentions and bare URLs) still interpret."""
    text = printable(text)
    # The fence is one backtick longer than the longest run inside; a space pads content
    # that starts or ends with a backtick or a space (CommonMark strips one from each side).
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    if not text or text[0] in "` " or text[-1] in "` ":
        text = f" {text} "
    return f"{fence}{text}{fence}"


def table_cell(markdown: str) -> str:
    """Markdown made safe inside a GFM table cell: every `|` escaped as `\\|`.

    A GFM table splits its rows at pipes before parsing inlines, so a pipe inside a code
    span still ends the cell unless escaped; the escape is removed again inside the span.
    A pipe right after a backslash is an escaped pipe to GFM whatever comes before it (the
    row scanner takes the longest match), so escaping every pipe is always enough.
    """
    return markdown.replace("|", "\\|")
