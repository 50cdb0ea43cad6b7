"""JSON chores of the action's step scripts, so that they need neither jq nor gh's --jq.

    gh_json.py comment-id MARKER AUTHOR   < comments   id of the comment to edit, or ""
    gh_json.py body                        < markdown   {"body": ...} for the REST API
    gh_json.py field PATH                  < object     a (dotted) member, e.g. keys.issued
    gh_json.py merged-pr SHA               < pulls      "NUMBER HEAD_SHA" of the PR merged
                                                        as SHA, or ""
    gh_json.py artifact-run HEAD_SHA       < artifacts  the workflow run of the newest
                                                        unexpired artifact made for HEAD_SHA
    gh_json.py strip-saved SAVED OUT                    the JSON plan of a saved plan file

`gh api --paginate` prints one JSON document per page, back to back: every reader here
takes a stream of documents.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from typing import Any


def documents(text: str) -> Iterator[Any]:
    decoder = json.JSONDecoder()
    at = 0
    while True:
        while at < len(text) and text[at].isspace():
            at += 1
        if at >= len(text):
            return
        value, at = decoder.raw_decode(text, at)
        yield value


def items(text: str, member: str | None = None) -> Iterator[dict[str, Any]]:
    """The objects of every page: each page an array, or an object holding one in
    `member` (the artifacts listing)."""
    for page in documents(text):
        if member is not None and isinstance(page, dict):
            page = page.get(member, [])
        if not isinstance(page, list):
            raise SystemExit(f"gh_json: expected a list, got {type(page).__name__}")
        yield from (item for item in page if isinstance(item, dict))


def comment_id(text: str, marker: str, author: str) -> str:
    # Our comment starts with the marker; a comment that merely quotes it is someone's.
    for comment in items(text):
        body = comment.get("body") or ""
        login = (comment.get("user") or {}).get("login", "")
        if body.startswith(marker) and (not author or login == author):
            return str(comment["id"])
    return ""


def merged_pr(text: str, sha: str) -> str:
    merged = [pr for pr in items(text) if pr.get("merged_at")]
    # The PR this push merged: its merge commit is the pushed one (merge, squash or
    # rebase); otherwise the one PR that was merged with this commit in it.
    exact = [pr for pr in merged if pr.get("merge_commit_sha") == sha]
    chosen = exact or (merged if len(merged) == 1 else [])
    if not chosen:
        return ""
    pr = chosen[0]
    return f"{int(pr['number'])} {pr['head']['sha']}"


def artifact_run(text: str, head_sha: str) -> str:
    made = [
        a
        for a in items(text, "artifacts")
        if not a.get("expired") and (a.get("workflow_run") or {}).get("head_sha") == head_sha
    ]
    if not made:
        return ""
    newest = max(made, key=lambda a: (a.get("created_at") or "", a.get("id") or 0))
    return str(int(newest["workflow_run"]["id"]))


def field(text: str, path: str) -> str:
    value: Any = json.loads(text)
    for name in path.split("."):
        value = value.get(name) if isinstance(value, dict) else None
    return "" if value is None else str(value)


def strip_saved(saved: str, out: str) -> None:
    with open(saved, encoding="utf-8") as f:
        data = json.load(f)
    data.pop("saved", None)
    with open(out, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, ensure_ascii=True)
        f.write("\n")


def main(argv: list[str]) -> int:
    command, args = argv[0], argv[1:]
    if command == "strip-saved":
        strip_saved(*args)
        return 0
    text = sys.stdin.read()
    if command == "body":
        answer = json.dumps({"body": text})
    elif command == "comment-id":
        answer = comment_id(text, *args)
    elif command == "merged-pr":
        answer = merged_pr(text, *args)
    elif command == "artifact-run":
        answer = artifact_run(text, *args)
    elif command == "field":
        answer = field(text, *args)
    else:
        raise SystemExit(f"gh_json: unknown command {command!r}")
    sys.stdout.write(answer + "\n" if answer else "")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
