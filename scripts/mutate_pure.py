#!/usr/bin/env python3
"""First-order mutants of the pure modules, each run against the fast tests that pin them.

    python scripts/mutate_pure.py [--jobs 2] [--only tyksync/plan.py] [--match TEXT] [--list]

The pure modules (the planner, the plan, the resolver) are copied with the tests into a
temporary folder, and every mutant is made and run there, one at a time: the working tree
is never written. A mutant is one small change: a comparison flipped or moved off by one,
a `not` removed, `and`/`or` swapped, True/False swapped, a string or number constant
changed, a sort-key component dropped, a sort or a `key=` dropped, the branches of a
conditional expression swapped, `any`/`all` swapped, or a call statement removed. It is
killed when the tests fail (or time out). Survivors are printed with their line; those
listed in EQUIVALENT below change no behaviour and are reported apart. Exit status 1 when
any other mutant survives.

All ~390 mutants take about 20 minutes with --jobs 2 (each runs the TESTS below, about
300 tests, in a fresh pytest); --only and --match pick a few.
"""

from __future__ import annotations

import argparse
import ast
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODULES = ("tyksync/planner.py", "tyksync/plan.py", "tyksync/manifest/resolve.py")
TESTS = (
    "tests/test_planner.py",
    "tests/test_plan.py",
    "tests/test_render.py",
    "tests/test_manifest_resolve.py",
    "tests/test_manifest_loader.py",
    "tests/test_cli_golden.py",
)
TIMEOUT = 300  # seconds; a mutant that makes the tests hang counts as killed

# Mutants that cannot change behaviour, each with the reason, keyed by module, enclosing
# class and function, column, description and source line (stripped): edits elsewhere in
# the module leave the keys valid, an edit of the line itself asks for a new look.
_KEY_LINE = 'return path[len("root[") : -1].strip("\'\\"") if path.startswith("root[") else path'
_FIELDS_LINE = '"fields": dict(sorted(r.fields.items())),'
EQUIVALENT: dict[tuple[str, str, int, str, str], str] = {
    (
        "tyksync/planner.py",
        "_reconcile.new",
        42,
        "string 'approve' -> ''",
        'approve=d.approved if kind != "approve" else True,',
    ): "an approve action is only made for a declaration with approved: true, so "
    "d.approved is True there too",
    ("tyksync/planner.py", "_key", 67, "string 'root[' -> ''", _KEY_LINE): (
        "DeepDiff's paths of dict keys always start with root["
    ),
    ("tyksync/planner.py", "_key", 32, "1 -> 2", _KEY_LINE): (
        "the character cut is the closing quote, which strip() removes anyway"
    ),
    (
        "tyksync/plan.py",
        "Action.sort_key",
        31,
        "string '' -> 'mutant'",
        'self.request_id or "",',
    ): "only creates lack a request id, and they all tie on it, whatever it is",
    (
        "tyksync/plan.py",
        "PlanWarning.sort_key",
        31,
        "string '' -> 'mutant'",
        'self.request_id or "",',
    ): "the planner gives every warning a request id",
    (
        "tyksync/plan.py",
        "PlanWarning.sort_key",
        8,
        "sort-key component #3 dropped",
        "return (",
    ): "warnings tie on email, policies and request id only when one declaration makes "
    "two, and it makes them in message order; the sort is stable",
    ("tyksync/plan.py", "_canonical_request", 23, "sorted() dropped", _FIELDS_LINE): (
        "canonical_json sorts the keys anyway"
    ),
    ("tyksync/plan.py", "_canonical_request", 23, "sorted(reverse=True)", _FIELDS_LINE): (
        "canonical_json sorts the keys anyway"
    ),
}

NEGATE: dict[type[ast.cmpop], type[ast.cmpop]] = {
    ast.Eq: ast.NotEq,
    ast.NotEq: ast.Eq,
    ast.Lt: ast.GtE,
    ast.GtE: ast.Lt,
    ast.Gt: ast.LtE,
    ast.LtE: ast.Gt,
    ast.In: ast.NotIn,
    ast.NotIn: ast.In,
    ast.Is: ast.IsNot,
    ast.IsNot: ast.Is,
}
BOUNDARY: dict[type[ast.cmpop], type[ast.cmpop]] = {
    ast.Lt: ast.LtE,
    ast.LtE: ast.Lt,
    ast.Gt: ast.GtE,
    ast.GtE: ast.Gt,
}
ARITHMETIC: dict[type[ast.operator], type[ast.operator]] = {
    ast.Add: ast.Sub,
    ast.Sub: ast.Add,
    ast.Mult: ast.FloorDiv,
    ast.FloorDiv: ast.Mult,
}
SWAPPED_CALLS = {"any": "all", "all": "any", "min": "max", "max": "min"}
SORT_KEY_FUNCTIONS = {"sort_key", "key"}

Make = Callable[[], ast.AST]


@dataclass(frozen=True)
class Site:
    line: int
    col: int
    where: str  # the enclosing class and function, e.g. "Action.sort_key"
    description: str


@dataclass(frozen=True)
class Mutant:
    module: str
    index: int  # the site's number in the module, in Mutator's visiting order
    site: Site
    source_line: str

    def __str__(self) -> str:
        s = self.site
        return f"{self.module}:{s.line}:{s.col} ({s.where}): {s.description}  | {self.source_line}"

    @property
    def equivalent(self) -> str | None:
        s = self.site
        return EQUIVALENT.get((self.module, s.where, s.col, s.description, self.source_line))


class Mutator(ast.NodeTransformer):
    """Numbers every mutation site in visiting order and applies the one numbered `target`
    (-1: none, only count)."""

    def __init__(self, target: int = -1) -> None:
        self.target = target
        self.sites: list[Site] = []
        self._scope: list[str] = []  # enclosing classes and functions

    # ---- where not to look ---------------------------------------------------------------

    def visit_Module(self, node: ast.Module) -> ast.AST:
        if _docstring(node.body):
            node.body = node.body[1:]
        return self.generic_visit(node)

    def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.AST:
        # Annotations are strings under `from __future__ import annotations`: never run.
        node.returns = None
        for arg in [*node.args.args, *node.args.kwonlyargs, *node.args.posonlyargs]:
            arg.annotation = None
        if _docstring(node.body):
            node.body = node.body[1:] or [ast.Pass()]
        return self._inside(node)

    def visit_ClassDef(self, node: ast.ClassDef) -> ast.AST:
        if _docstring(node.body):
            node.body = node.body[1:] or [ast.Pass()]
        return self._inside(node)

    def _inside(self, node: ast.FunctionDef | ast.ClassDef) -> ast.AST:
        self._scope.append(node.name)
        try:
            return self.generic_visit(node)
        finally:
            self._scope.pop()

    def visit_AnnAssign(self, node: ast.AnnAssign) -> ast.AST:
        if node.value is not None:
            node.value = self.visit(node.value)
        return node

    def visit_ImportFrom(self, node: ast.ImportFrom) -> ast.AST:
        return node

    def visit_Import(self, node: ast.Import) -> ast.AST:
        return node

    # ---- the sites -----------------------------------------------------------------------

    def _site(self, node: ast.AST, description: str, make: Make) -> ast.AST | None:
        index = len(self.sites)
        where = ".".join(self._scope) or "<module>"
        line, col = getattr(node, "lineno", 0), getattr(node, "col_offset", 0)
        self.sites.append(Site(line, col, where, description))
        return make() if index == self.target else None

    def _first(self, node: ast.AST, options: list[tuple[str, Make]]) -> ast.AST:
        result = None
        for description, make in options:
            made = self._site(node, description, make)
            result = result or made
        return result or node

    def visit_Compare(self, node: ast.Compare) -> ast.AST:
        self.generic_visit(node)
        options: list[tuple[str, Make]] = []
        for i, op in enumerate(node.ops):
            for table, kind in ((NEGATE, "negated"), (BOUNDARY, "boundary")):
                other = table.get(type(op))
                if other is not None:
                    options.append(
                        (
                            f"{kind} comparison #{i}: {_op(op)} -> {_op(other())}",
                            _replace_op(node, i, other),
                        )
                    )
        return self._first(node, options)

    def visit_UnaryOp(self, node: ast.UnaryOp) -> ast.AST:
        self.generic_visit(node)
        if isinstance(node.op, ast.Not):
            return self._first(node, [("`not` removed", lambda: node.operand)])
        return node

    def visit_BoolOp(self, node: ast.BoolOp) -> ast.AST:
        self.generic_visit(node)
        other = ast.Or() if isinstance(node.op, ast.And) else ast.And()
        swapped = f"{_op(node.op)} -> {_op(other)}"
        return self._first(node, [(swapped, lambda: ast.BoolOp(op=other, values=node.values))])

    def visit_BinOp(self, node: ast.BinOp) -> ast.AST:
        self.generic_visit(node)
        other = ARITHMETIC.get(type(node.op))
        if other is None:
            return node
        return self._first(
            node,
            [
                (
                    f"{type(node.op).__name__} -> {other.__name__}",
                    lambda: ast.BinOp(left=node.left, op=other(), right=node.right),
                )
            ],
        )

    def visit_IfExp(self, node: ast.IfExp) -> ast.AST:
        self.generic_visit(node)
        return self._first(
            node,
            [
                (
                    "conditional branches swapped",
                    lambda: ast.IfExp(test=node.test, body=node.orelse, orelse=node.body),
                )
            ],
        )

    def visit_Constant(self, node: ast.Constant) -> ast.AST:
        value = node.value
        if isinstance(value, bool):
            return self._first(node, [(f"{value} -> {not value}", lambda: ast.Constant(not value))])
        if isinstance(value, int):
            return self._first(node, [(f"{value} -> {value + 1}", lambda: ast.Constant(value + 1))])
        if isinstance(value, str):
            new = "" if value else "mutant"
            return self._first(node, [(f"string {value!r} -> {new!r}", lambda: ast.Constant(new))])
        return node

    def visit_Call(self, node: ast.Call) -> ast.AST:
        self.generic_visit(node)
        name = node.func.id if isinstance(node.func, ast.Name) else None
        options: list[tuple[str, Make]] = []
        if name in SWAPPED_CALLS:
            other = SWAPPED_CALLS[name]
            options.append(
                (
                    f"{name}() -> {other}()",
                    lambda: ast.Call(
                        func=ast.Name(other, ast.Load()), args=node.args, keywords=node.keywords
                    ),
                )
            )
        if name == "sorted" and node.args:
            options.append(
                (
                    "sorted() dropped",
                    lambda: ast.Call(
                        func=ast.Name("list", ast.Load()), args=node.args[:1], keywords=[]
                    ),
                )
            )
            keywords = [k for k in node.keywords if k.arg != "key"]
            if len(keywords) < len(node.keywords):
                options.append(
                    (
                        "sorted(key=...) dropped",
                        lambda: ast.Call(func=node.func, args=node.args, keywords=keywords),
                    )
                )
            options.append(
                (
                    "sorted(reverse=True)",
                    lambda: ast.Call(
                        func=node.func,
                        args=node.args,
                        keywords=[*node.keywords, ast.keyword("reverse", ast.Constant(True))],
                    ),
                )
            )
        return self._first(node, options)

    def visit_Return(self, node: ast.Return) -> ast.AST:
        self.generic_visit(node)
        in_key = self._scope and self._scope[-1] in SORT_KEY_FUNCTIONS
        if in_key and isinstance(node.value, ast.Tuple):
            return self._first(node, _drop_each(node, node.value))
        return node

    def visit_Lambda(self, node: ast.Lambda) -> ast.AST:
        self.generic_visit(node)
        if isinstance(node.body, ast.Tuple):
            options = [
                (d, _lambda_with(node, make)) for d, make in _drop_each(node.body, node.body)
            ]
            return self._first(node, options)
        return node

    def visit_Expr(self, node: ast.Expr) -> ast.AST:
        self.generic_visit(node)
        if isinstance(node.value, ast.Call):
            return self._first(node, [("call statement removed", lambda: ast.Pass())])
        return node


def _docstring(body: list[ast.stmt]) -> bool:
    first = body[0] if body else None
    return (
        isinstance(first, ast.Expr)
        and isinstance(first.value, ast.Constant)
        and isinstance(first.value.value, str)
    )


def _op(op: ast.AST) -> str:
    return {
        ast.Eq: "==", ast.NotEq: "!=", ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=",
        ast.In: "in", ast.NotIn: "not in", ast.Is: "is", ast.IsNot: "is not",
        ast.And: "and", ast.Or: "or",
    }[type(op)]  # fmt: skip


def _replace_op(node: ast.Compare, i: int, other: type[ast.cmpop]) -> Make:
    def make() -> ast.AST:
        ops = list(node.ops)
        ops[i] = other()
        return ast.Compare(left=node.left, ops=ops, comparators=node.comparators)

    return make


def _drop_each(holder: ast.AST, value: ast.Tuple) -> list[tuple[str, Make]]:
    def without(i: int) -> Make:
        def make() -> ast.AST:
            elts = [e for j, e in enumerate(value.elts) if j != i]
            new = ast.Tuple(elts=elts, ctx=ast.Load())
            if isinstance(holder, ast.Return):
                return ast.Return(value=new)
            return new

        return make

    if len(value.elts) < 2:
        return []
    return [(f"sort-key component #{i} dropped", without(i)) for i in range(len(value.elts))]


def _lambda_with(node: ast.Lambda, make_body: Make) -> Make:
    return lambda: ast.Lambda(args=node.args, body=make_body())


def mutants(module: str, source: str) -> list[Mutant]:
    counter = Mutator()
    counter.visit(ast.parse(source))
    lines = source.splitlines()
    return [
        Mutant(module, i, site, lines[site.line - 1].strip() if site.line else "")
        for i, site in enumerate(counter.sites)
    ]


def mutated_source(source: str, index: int) -> str:
    mutator = Mutator(index)
    tree = ast.fix_missing_locations(mutator.visit(ast.parse(source)))
    return ast.unparse(tree)


# ---- running ---------------------------------------------------------------------------------


class Copy:
    """A copy of the package and the tests in a temporary folder, where mutants are made."""

    def __init__(self, parent: Path, n: int) -> None:
        self.root = parent / f"copy-{n}"
        self.root.mkdir()
        for name in ("tyksync", "tests", "examples"):
            shutil.copytree(
                ROOT / name, self.root / name, ignore=shutil.ignore_patterns("__pycache__")
            )
        shutil.copy2(ROOT / "pyproject.toml", self.root / "pyproject.toml")
        self.env = {**os.environ, "PYTHONPATH": str(self.root), "PYTHONDONTWRITEBYTECODE": "1"}
        self.env.pop("TYKSYNC_UPDATE_GOLDEN", None)

    def check_isolated(self) -> None:
        done = subprocess.run(
            [sys.executable, "-c", "import tyksync; print(tyksync.__file__)"],
            cwd=self.root, env=self.env, capture_output=True, text=True, check=True,
        )  # fmt: skip
        if not done.stdout.strip().startswith(str(self.root)):
            raise SystemExit(f"the copy is not what gets imported: {done.stdout.strip()}")

    def passes(self, tests: tuple[str, ...]) -> bool:
        try:
            done = subprocess.run(
                [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *tests],
                cwd=self.root, env=self.env, capture_output=True, timeout=TIMEOUT, check=False,
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            return False
        return done.returncode == 0

    def run(self, mutant: Mutant, original: str, tests: tuple[str, ...]) -> bool:
        """True when the mutant survives."""
        path = self.root / mutant.module
        try:
            path.write_text(mutated_source(original, mutant.index), encoding="utf-8")
            return self.passes(tests)
        finally:
            path.write_text(original, encoding="utf-8")


def run_all(todo: list[Mutant], jobs: int, tests: tuple[str, ...]) -> Iterator[tuple[Mutant, bool]]:
    sources = {m: (ROOT / m).read_text(encoding="utf-8") for m in {x.module for x in todo}}
    with tempfile.TemporaryDirectory(prefix="tyksync-mutants-") as tmp:
        copies = [Copy(Path(tmp), n) for n in range(jobs)]
        for c in copies:
            c.check_isolated()
        if not copies[0].passes(tests):
            raise SystemExit("the tests fail without any mutant: fix them first")
        free = list(copies)

        def one(m: Mutant) -> tuple[Mutant, bool]:
            c = free.pop()
            try:
                return m, c.run(m, sources[m.module], tests)
            finally:
                free.append(c)

        with ThreadPoolExecutor(max_workers=jobs) as pool:
            yield from pool.map(one, todo)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", action="append", help="a module (default: all three)")
    parser.add_argument("--jobs", type=int, default=1, help="mutants run at once")
    parser.add_argument("--list", action="store_true", help="list the mutants, run nothing")
    parser.add_argument(
        "--match", action="append", help="only mutants whose line or description has this"
    )
    parser.add_argument("--tests", nargs="+", default=list(TESTS), help="the tests to run")
    args = parser.parse_args(argv)
    todo = [
        m
        for module in args.only or MODULES
        for m in mutants(module, (ROOT / module).read_text(encoding="utf-8"))
    ]
    if args.match:
        todo = [m for m in todo if any(text in str(m) for text in args.match)]
    if args.list:
        for m in todo:
            print(m)
        print(f"{len(todo)} mutants")
        return 0
    started = time.monotonic()
    survivors: list[Mutant] = []
    for n, (m, survived) in enumerate(run_all(todo, args.jobs, tuple(args.tests)), 1):
        if survived:
            survivors.append(m)
            print(f"[{n}/{len(todo)}] SURVIVED {m}", flush=True)
    equivalent = [m for m in survivors if m.equivalent]
    live = [m for m in survivors if not m.equivalent]
    print(f"\nmutants:    {len(todo)}")
    print(f"killed:     {len(todo) - len(survivors)}")
    print(f"equivalent: {len(equivalent)}")
    for m in equivalent:
        print(f"  {m}\n      ({m.equivalent})")
    print(f"survivors:  {len(live)}")
    for m in live:
        print(f"  {m}")
    print(f"wall time:  {time.monotonic() - started:.0f} s")
    return 1 if live else 0


if __name__ == "__main__":
    sys.exit(main())
