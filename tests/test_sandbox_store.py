"""The sandbox's store: ids, dates, persistence, seeding, and the `--sandbox` plumbing."""

from __future__ import annotations

import json
import os
import re
import stat
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import requests
from conftest import SANDBOX_SECRET, Portal

from tyksync.errors import TyksyncError
from tyksync.sandbox import (
    Sandbox,
    SandboxError,
    SeedError,
    StateFileError,
    Store,
    embedded_sandbox,
    key_id_of,
    load_seed,
)
from tyksync.sandbox.seed import apply_seed

ALICE, BOB = "64a000000000000000000a01", "64a000000000000000000a02"
GOLD, SILVER = "64b000000000000000000b01", "64b000000000000000000b02"
R1, R2 = "64c000000000000000000c01", "64c000000000000000000c02"
DATE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")


def _demo_store(path: Path | None = None) -> Store:
    store = Store(path)
    apply_seed(store, load_seed("demo"))
    return store


# -- ids and dates -------------------------------------------------------------------------


def test_new_ids_are_object_ids_stamped_with_the_time() -> None:
    store = Store()
    before = int(time.time())
    developer = store.add_developer("x@example.com")
    policy = store.add_policy("Plan")
    request = store.add_request(developer["id"], [policy["_id"]])
    for new_id in (developer["id"], policy["_id"], request["id"]):
        assert re.fullmatch(r"[0-9a-f]{24}", new_id)
        assert before <= int(new_id[:8], 16) <= int(time.time())


def test_dates_strictly_increase_within_a_store() -> None:
    store = Store()
    developer = store.add_developer("x@example.com")["id"]
    created = [store.add_request(developer, ["p"])["date_created"] for _ in range(500)]
    assert all(DATE.fullmatch(d) for d in created)
    assert created == sorted(created)
    assert len(set(created)) == len(created)


def test_new_dates_follow_explicit_ones_even_in_the_future() -> None:
    store = Store()
    developer = store.add_developer("x@example.com")["id"]
    store.add_request(developer, ["p"], date_created="2999-01-01T00:00:00Z")
    later = store.add_request(developer, ["p"])["date_created"]
    assert later == "2999-01-01T00:00:00.000001Z"


def test_explicit_dates_are_normalised_to_utc() -> None:
    store = Store()
    developer = store.add_developer("x@example.com")["id"]
    created = store.add_request(developer, ["p"], date_created="2026-01-05T12:00:00+02:00")
    assert created["date_created"] == "2026-01-05T10:00:00.000000Z"


# -- out-of-band helpers -------------------------------------------------------------------


def test_add_request_keeps_policies_as_written() -> None:
    store = _demo_store()
    request = store.add_request(ALICE, ["gold", "nothing"], fields={"a": "b"})
    assert request["for_plan"] == "gold"
    assert request["apply_policies"] == ["gold", "nothing"]
    assert request["fields"] == {"a": "b"}
    assert request["version"] == "v2"
    assert request["approved"] is False


def test_add_request_can_store_a_request_without_apply_policies() -> None:
    store = _demo_store()
    request = store.add_request(ALICE, [GOLD], for_plan_only=True)
    assert request["apply_policies"] is None
    assert request["for_plan"] == GOLD


def test_add_request_approved_issues_a_key() -> None:
    store = _demo_store()
    request = store.add_request(ALICE, ["gold"], approved=True)
    assert request["approved"] is True
    key = store.issued_keys()[-1]
    alice = next(d for d in store.developers() if d["id"] == ALICE)
    assert alice["keys"] == {key_id_of(key): [GOLD]}
    assert store.key_valid(key)


def test_add_request_approved_for_a_missing_policy_stores_nothing() -> None:
    store = _demo_store()
    before = store.requests()
    with pytest.raises(ValueError, match="does not exist"):
        store.add_request(ALICE, ["nothing"], approved=True)
    assert store.requests() == before


def test_approve_and_delete_out_of_band() -> None:
    store = _demo_store()
    key = store.approve(R1)
    assert store.issued_keys()[-1] == key
    store.delete_request(R1)
    assert R1 not in [r["id"] for r in store.requests()]
    assert key in store.issued_keys()


def test_duplicates_are_refused() -> None:
    store = _demo_store()
    with pytest.raises(ValueError):
        store.add_developer("ALICE@example.com")
    with pytest.raises(ValueError):
        store.add_developer("new@example.com", id=ALICE)
    with pytest.raises(ValueError):
        store.add_policy("Other", id="gold")
    with pytest.raises(ValueError):
        store.add_request(ALICE, [GOLD], id=R1)


def test_copies_handed_out_do_not_change_the_store() -> None:
    store = _demo_store()
    store.requests()[0]["fields"]["x"] = "y"
    store.developers()[0]["keys"]["k"] = []
    assert "x" not in store.requests()[0]["fields"]
    assert store.developers()[0]["keys"] == {}


def test_reset_forgets_everything() -> None:
    store = _demo_store()
    store.reset()
    assert store.is_empty()
    assert store.requests() == store.developers() == store.policies() == []
    assert store.issued_keys() == []


def test_sandbox_reset_returns_to_the_seed(sandbox: Sandbox) -> None:
    sandbox.store.delete_request(R1)
    sandbox.store.add_developer("new@example.com")
    sandbox.reset()
    assert sandbox.store.requests()[0]["id"] == R1
    assert len(sandbox.store.developers()) == 5


def test_bulk_add_is_fast_and_writes_the_state_once(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    store = _demo_store(path)
    started = time.perf_counter()
    store.add_requests({"developer_id": ALICE, "policies": [GOLD]} for _ in range(10_000))
    assert time.perf_counter() - started < 1.5
    assert len(json.loads(path.read_text())["requests"]) == 10_006


def test_a_failed_bulk_add_keeps_what_was_added_and_saves_it(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    store = _demo_store(path)
    specs: list[dict[str, Any]] = [
        {"developer_id": ALICE, "policies": [GOLD]},
        {"developer_id": ALICE, "id": R1},
    ]
    with pytest.raises(ValueError):
        store.add_requests(specs)
    assert len(json.loads(path.read_text())["requests"]) == 7


# -- persistence ---------------------------------------------------------------------------


def test_state_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "sandbox.json"
    with Sandbox(SANDBOX_SECRET, state_path=path, seed="demo") as first:
        portal = Portal(first)
        created = portal.create(by_user=ALICE, for_plan=GOLD, fields={"a": "b"})
        key = portal.approve(created).json()["RawKey"]
        assert portal.call("DELETE", f"/api/portal/requests/{R1}").status_code == 200
        portal.close()
        state = (first.store.requests(), first.store.developers(), first.store.policies())
        keys = first.store.issued_keys()
    with Sandbox("another-secret", state_path=path, seed="demo") as second:
        # Not seeded again: r1 stays deleted and the keys stay those issued before.
        assert (second.store.requests(), second.store.developers(), second.store.policies()) == (
            state
        )
        assert second.store.issued_keys() == keys
        assert key in keys
        later = second.store.add_request(ALICE, [GOLD])["date_created"]
        assert later > max(r["date_created"] for r in state[0])


def test_the_state_file_is_private_and_leaves_no_temporary_files(tmp_path: Path) -> None:
    path = tmp_path / "sandbox.json"
    store = _demo_store(path)
    store.approve(R1)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    # The lock file stays: removing it would let two processes lock two different files.
    assert sorted(os.listdir(tmp_path)) == [".sandbox.json.lock", "sandbox.json"]


def test_the_state_file_is_always_whole_json(tmp_path: Path) -> None:
    path = tmp_path / "sandbox.json"
    store = _demo_store(path)
    store.add_requests({"developer_id": ALICE, "policies": [GOLD]} for _ in range(2_000))
    done = threading.Event()
    seen: list[int] = []
    failures: list[str] = []

    def read_repeatedly() -> None:
        while not done.is_set():
            try:
                seen.append(len(json.loads(path.read_text())["requests"]))
            except ValueError as e:
                failures.append(str(e))

    reader = threading.Thread(target=read_repeatedly)
    reader.start()
    try:
        for _ in range(40):
            store.add_request(ALICE, [GOLD])
    finally:
        done.set()
        reader.join()
    assert failures == []
    assert seen == sorted(seen)
    assert len(json.loads(path.read_text())["requests"]) == 2_046


def test_an_empty_state_file_is_a_new_store(tmp_path: Path) -> None:
    path = tmp_path / "sandbox.json"
    path.write_text("")
    path.chmod(0o600)  # as tyksync makes it: one that others can read is refused
    with Sandbox(SANDBOX_SECRET, state_path=path, seed="demo") as sandbox:
        assert len(sandbox.store.requests()) == 6
    assert len(json.loads(path.read_text())["requests"]) == 6


@pytest.mark.parametrize("content", ["{not json", "[]", '{"format": 99}', '{"format": 1}'])
def test_an_unreadable_state_file_is_a_clear_error(tmp_path: Path, content: str) -> None:
    path = tmp_path / "sandbox.json"
    path.write_text(content)
    path.chmod(0o600)  # as tyksync makes it: one that others can read is refused
    with pytest.raises(StateFileError, match="not a valid sandbox state file") as caught:
        Sandbox(SANDBOX_SECRET, state_path=path, seed="demo")
    assert str(path) in str(caught.value)
    assert isinstance(caught.value, TyksyncError)  # the CLI maps it to exit 1
    assert path.read_text() == content  # left alone for the user to look at


def test_an_unwritable_state_is_a_sandbox_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(SandboxError):
        Sandbox(SANDBOX_SECRET, state_path=blocker / "sandbox.json", seed="demo")


# -- seeding -------------------------------------------------------------------------------


SEED = """
org_id: 5e9d9544a1dcd60001d0ed99
developers:
  - {id: 64a000000000000000000a01, email: alice@example.com}
  - {email: bob@example.com, inactive: true}
policies:
  - {_id: 64b000000000000000000b01, id: gold, name: Gold}
  - {name: Silver}
  - {_id: 64b000000000000000000b03, name: Reports, active: false}
requests:
  - {developer: bob@example.com, policies: [Gold, Silver], fields: {ticket: T-1}}
  - {developer: 64a000000000000000000a01, policies: [gold], approved: true,
     date_created: 2026-02-01T10:00:00Z}
  - {developer: Alice@Example.com, policies: [64b000000000000000000b03]}
  - {developer: bob@example.com, for_api: 5f1e7e0a1dcd600011112222, approved: true}
"""


def test_a_seed_file(tmp_path: Path) -> None:
    seed = tmp_path / "seed.yaml"
    seed.write_text(SEED)
    with Sandbox(SANDBOX_SECRET, seed=seed) as sandbox:
        store = sandbox.store
        assert store.org_id == "5e9d9544a1dcd60001d0ed99"
        bob = next(d for d in store.developers() if d["email"] == "bob@example.com")
        assert bob["inactive"] is True
        silver = next(p for p in store.policies() if p["name"] == "Silver")
        assert silver["id"] == ""
        requests_ = store.requests()
        assert requests_[0]["apply_policies"] == [GOLD, silver["_id"]]
        assert requests_[0]["for_plan"] == GOLD
        assert requests_[0]["by_user"] == bob["id"]
        assert requests_[1]["approved"] is True
        assert requests_[1]["date_created"] == "2026-02-01T10:00:00.000000Z"
        assert requests_[2]["by_user"] == ALICE
        assert requests_[3]["version"] == ""
        assert requests_[3]["apply_policies"] == []
        assert len(store.issued_keys()) == 2
        assert all(k.startswith("5e9d9544a1dcd60001d0ed99") for k in store.issued_keys())


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("developers: [{email: a@example.com, colour: red}]", "colour"),
        ("developers: [{email: a@example.com, id: 12345}]", "developers.0.id"),
        ("developers: [{email: a@example.com, id: not-hex}]", "ObjectId"),
        ("requests: [{developer: nobody@example.com}]", "unknown developer 'nobody"),
        (
            "developers: [{email: a@example.com}]\nrequests: [{developer: a@example.com, "
            "policies: [Nope]}]",
            "unknown policy 'Nope'",
        ),
        (
            "developers: [{email: a@example.com}]\npolicies: [{name: P}, {name: P}]\n"
            "requests: [{developer: a@example.com, policies: [P]}]",
            "ambiguous policy 'P'",
        ),
        ("developers: [{email: a@example.com}, {email: A@example.com}]", "already exists"),
        ("requests: [{developer: a, date_created: yesterday}]", "date_created"),
        ("developers: [unclosed", "not valid YAML"),
        ("[1, 2]", "top level"),
    ],
)
def test_bad_seed_files_are_clear_errors(tmp_path: Path, content: str, message: str) -> None:
    seed = tmp_path / "seed.yaml"
    seed.write_text(content)
    state = tmp_path / "state.json"
    with pytest.raises(SeedError, match=re.escape(message)):
        Sandbox(SANDBOX_SECRET, state_path=state, seed=seed)
    # Nothing half-seeded is kept: the next start seeds again.
    assert not state.exists() or json.loads(state.read_text())["requests"] == []


def test_a_missing_seed_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SeedError, match="cannot read"):
        load_seed(tmp_path / "nope.yaml")


def test_seeding_happens_only_for_a_new_store(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    with Sandbox(SANDBOX_SECRET, state_path=path) as unseeded:
        unseeded.store.add_developer("only@example.com")
    with Sandbox(SANDBOX_SECRET, state_path=path, seed="demo") as sandbox:
        assert [d["email"] for d in sandbox.store.developers()] == ["only@example.com"]


# -- embedded ------------------------------------------------------------------------------


def test_the_embedded_sandbox(tmp_path: Path) -> None:
    path = tmp_path / ".tyksync" / "sandbox.json"
    with embedded_sandbox(path) as first:
        assert first.url.startswith("http://127.0.0.1:")
        assert first.dialect == "modern"
        answer = requests.get(
            first.url + "/api/portal/requests?p=-1",
            headers={"authorization": first.secret},
            timeout=5,
        )
        assert len(answer.json()["Data"]) == 6
        first.store.delete_request(R2)
        secret = first.secret
    assert path.exists()
    with embedded_sandbox(path, dialect="legacy") as second:
        assert second.secret != secret
        assert second.dialect == "legacy"
        assert len(second.store.requests()) == 5
        url = second.url
    with pytest.raises(requests.ConnectionError):
        requests.get(url + "/api/portal/requests", timeout=5)


def test_a_sandbox_needs_a_secret_and_a_known_dialect() -> None:
    with pytest.raises(ValueError):
        Sandbox("")
    with pytest.raises(ValueError):
        Sandbox("s", dialect="ancient")  # type: ignore[arg-type]


def test_a_taken_port_is_a_sandbox_error(sandbox: Sandbox) -> None:
    with pytest.raises(SandboxError, match="cannot listen"):
        Sandbox(SANDBOX_SECRET, port=sandbox.port).start()


def test_a_state_file_with_raw_keys_on_developers_is_read_by_key_id(tmp_path: Path) -> None:
    """State files written before keys were recorded by id held raw keys on developers."""
    state = tmp_path / "state.json"
    store = Store(state)
    store.add_developer("alice@example.com", id=ALICE)
    store.add_policy("Gold", db_id=GOLD)
    store.add_request(ALICE, [GOLD], approved=True)
    key = store.issued_keys()[0]
    data = json.loads(state.read_text())
    data["developers"][0]["keys"] = {key: [GOLD]}
    data["developers"][0]["subscriptions"] = {GOLD: key}
    for record in data["issued_keys"]:
        del record["key_id"], record["revoked"]
    state.write_text(json.dumps(data))
    state.chmod(0o600)

    reread = Store(state)
    (alice,) = reread.developers()
    assert alice["keys"] == {key_id_of(key): [GOLD]}
    assert alice["subscriptions"] == {GOLD: key_id_of(key)}
    assert reread.key_valid(key)
    reread.revoke_key(ALICE, key_id_of(key))
    assert not Store(state).key_valid(key)
