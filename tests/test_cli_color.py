"""Colour (SPEC 14): only on a terminal; NO_COLOR off, FORCE_COLOR / CLICOLOR_FORCE on even
without one, and --no-color wins over all. In-process, stdout is never a terminal."""

from __future__ import annotations

import json

import pytest
from support import Tyk

from tyksync.sandbox import Sandbox

ESC = "\x1b["


@pytest.fixture(autouse=True)
def _no_colour_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("NO_COLOR", "FORCE_COLOR", "CLICOLOR_FORCE", "TERM"):
        monkeypatch.delenv(name, raising=False)


def test_no_terminal_no_colour(dash: Sandbox, tyk: Tyk) -> None:
    assert ESC not in tyk("plan", "manifests").out


@pytest.mark.parametrize("name", ["FORCE_COLOR", "CLICOLOR_FORCE"])
def test_force_colour_without_a_terminal(
    dash: Sandbox, tyk: Tyk, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    monkeypatch.setenv(name, "1")
    r = tyk("plan", "manifests")
    assert r.code == 0, r.err
    assert "\x1b[32m  + create\x1b[0m" in r.out
    assert "\x1b[31m  - delete\x1b[0m" in r.out


@pytest.mark.parametrize("value", ["0", ""])
def test_force_colour_zero_or_empty_is_unset(
    dash: Sandbox, tyk: Tyk, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("FORCE_COLOR", value)
    monkeypatch.setenv("CLICOLOR_FORCE", value)
    assert ESC not in tyk("plan", "manifests").out


def test_no_color_wins_over_force(dash: Sandbox, tyk: Tyk, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FORCE_COLOR", "1")
    monkeypatch.setenv("NO_COLOR", "1")
    assert ESC not in tyk("plan", "manifests").out


@pytest.mark.parametrize(
    "argv",
    [
        ("plan", "manifests", "--no-color"),
        ("--no-color", "plan", "manifests"),
        ("apply", "manifests", "--auto-approve", "--no-color"),
    ],
)
def test_the_option_wins_over_all(
    dash: Sandbox, tyk: Tyk, monkeypatch: pytest.MonkeyPatch, argv: tuple[str, ...]
) -> None:
    monkeypatch.setenv("FORCE_COLOR", "1")
    monkeypatch.setenv("CLICOLOR_FORCE", "1")
    r = tyk(*argv)
    assert r.code == 0, r.err
    assert "create   alice@example.com" in r.out
    assert ESC not in r.all


def test_forced_colour_reaches_apply(
    dash: Sandbox, tyk: Tyk, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FORCE_COLOR", "1")
    r = tyk("apply", "manifests", "--auto-approve")
    assert r.code == 0, r.err
    assert "\x1b[32m  + create\x1b[0m" in r.out


def test_json_never_coloured(dash: Sandbox, tyk: Tyk, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FORCE_COLOR", "1")
    r = tyk("plan", "manifests", "--format", "json")
    assert ESC not in r.out
    json.loads(r.out)
    r = tyk("apply", "manifests", "--auto-approve", "--format", "json")
    assert r.code == 0, r.err
    assert ESC not in r.out
    assert json.loads(r.out)["ok"] is True
