"""Fault injection: each kind over real HTTP, and the same seed giving the same faults."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
import requests
from conftest import SANDBOX_SECRET, Portal

from tyksync.sandbox import Faults, Sandbox, key_id_of

ALICE = "64a000000000000000000a01"
GOLD = "64b000000000000000000b01"
R1 = "64c000000000000000000c01"


@pytest.fixture
def client(sandbox: Sandbox) -> Iterator[Portal]:
    portal = Portal(sandbox)
    yield portal
    portal.close()


def _statuses(portal: Portal, count: int) -> list[int]:
    return [portal.get("/api/portal/policies").status_code for _ in range(count)]


def test_no_faults_by_default(client: Portal) -> None:
    assert client.sandbox.faults == Faults.none()
    assert set(_statuses(client, 20)) == {200}
    assert set(client.sandbox.fault_counts().values()) == {0}


def test_latency_and_jitter(client: Portal) -> None:
    client.sandbox.faults = Faults(latency=0.05, jitter=0.05)
    started = time.perf_counter()
    _statuses(client, 4)
    elapsed = time.perf_counter() - started
    assert 0.2 <= elapsed < 0.2 + 4 * 0.05 + 0.5


def test_errors_answer_a_5xx_and_do_nothing(client: Portal) -> None:
    client.sandbox.faults = Faults(error_rates={"POST": 1.0, "put": 1.0, "DELETE": 1.0})
    before = client.sandbox.store.requests()
    created = client.call("POST", "/api/portal/requests", json={"by_user": ALICE})
    approved = client.approve(R1)
    deleted = client.call("DELETE", f"/api/portal/requests/{R1}")
    for answer in (created, approved, deleted):
        assert answer.status_code in (500, 502, 503)
    assert client.sandbox.store.requests() == before
    assert client.get("/api/portal/policies").status_code == 200  # GET not configured
    assert client.sandbox.fault_counts()["error"] == 3


REVOKE = "DELETE /api/portal/developers/{id}/keys/{key_id}"


def test_route_faults_hit_their_route_only(client: Portal) -> None:
    store = client.sandbox.store
    client.sandbox.faults = Faults(route_errors={REVOKE: 1.0})
    key = client.approve(R1).json()["RawKey"]  # PUT: not the route
    bob = store.get_request(R1)["by_user"]
    path = f"/api/portal/developers/{bob}/keys/{key_id_of(key)}"
    assert client.call("DELETE", path).status_code in (500, 502, 503)
    assert store.key_valid(key)
    client.sandbox.faults = Faults(route_drops={REVOKE: 1.0})
    with pytest.raises(requests.ConnectionError):
        client.call("DELETE", path)
    assert not store.key_valid(key)  # committed, then the answer was lost
    assert client.sandbox.fault_counts()["drop_after_write"] == 1
    assert client.call("DELETE", f"/api/portal/requests/{R1}").status_code == 200


def test_error_statuses_are_drawn_from_the_configured_ones(client: Portal) -> None:
    client.sandbox.faults = Faults(error_rates={"GET": 1.0}, seed=3)
    statuses = _statuses(client, 30)
    assert set(statuses) == {500, 502, 503}
    client.sandbox.faults = Faults(error_rates={"GET": 1.0}, error_statuses=(502,))
    answer = client.get("/api/portal/policies")
    assert answer.status_code == 502
    assert answer.headers["Content-Type"] == "text/html"  # a proxy's page, not the API's JSON
    client.sandbox.faults = Faults(error_rates={"GET": 1.0}, error_statuses=(500,))
    assert client.get("/api/portal/policies").json()["Status"] == "Error"


def test_rate_limits_answer_429_with_retry_after(client: Portal) -> None:
    client.sandbox.faults = Faults(rate_limit={"POST": 1.0}, retry_after=3)
    answer = client.call("POST", "/api/portal/requests", json={"by_user": ALICE})
    assert answer.status_code == 429
    assert answer.headers["Retry-After"] == "3"
    assert len(client.sandbox.store.requests()) == 6
    assert client.get("/api/portal/policies").status_code == 200


def test_a_dropped_answer_after_a_committed_create(client: Portal) -> None:
    client.sandbox.faults = Faults(drop_after_write=1.0)
    with pytest.raises(requests.ConnectionError):
        client.call("POST", "/api/portal/requests", json={"by_user": ALICE, "fields": {"op": "x"}})
    assert client.sandbox.store.requests()[-1]["fields"] == {"op": "x"}
    assert client.get("/api/portal/policies").status_code == 200  # reads are answered
    assert client.sandbox.fault_counts()["drop_after_write"] == 1


def test_a_dropped_answer_after_a_committed_approve(client: Portal) -> None:
    client.sandbox.faults = Faults(drop_after_write=1.0)
    with pytest.raises(requests.ConnectionError):
        client.approve(R1)
    assert len(client.sandbox.store.issued_keys()) == 4  # the demo's three, and this one
    client.sandbox.faults = Faults.none()
    assert client.approve(R1).status_code == 400  # already processed


def test_a_refused_write_is_answered_even_with_drops(client: Portal) -> None:
    client.sandbox.faults = Faults(drop_after_write=1.0)
    assert client.approve("64c0000000000000000000ff").status_code == 404


def test_a_reset_before_handling_commits_nothing(client: Portal) -> None:
    client.sandbox.faults = Faults(reset_before=1.0)
    with pytest.raises(requests.ConnectionError):
        client.call("POST", "/api/portal/requests", json={"by_user": ALICE})
    with pytest.raises(requests.ConnectionError):
        client.get("/api/portal/requests")
    assert len(client.sandbox.store.requests()) == 6
    assert client.sandbox.fault_counts()["reset_before"] == 2
    # Reset calls still arrived, and are counted.
    assert client.sandbox.counts()[("POST", "/api/portal/requests")] == 1


def test_invalid_json_on_reads_only(client: Portal) -> None:
    client.sandbox.faults = Faults(invalid_json=1.0)
    answer = client.get("/api/portal/requests")
    assert answer.status_code == 200
    with pytest.raises(ValueError):
        json.loads(answer.content)
    created = client.call("POST", "/api/portal/requests", json={"by_user": ALICE})
    assert created.json()["Status"] == "OK"


@pytest.mark.parametrize(("dialect", "everything", "first"), [("modern", 0, 1), ("legacy", -1, 0)])
def test_a_dashboard_that_refuses_everything_at_once(
    dialect: str, everything: int, first: int
) -> None:
    with Sandbox(SANDBOX_SECRET, dialect=dialect, seed="demo") as sandbox:  # type: ignore[arg-type]
        sandbox.faults = Faults(refuse_all_pages=True)
        portal = Portal(sandbox)
        assert portal.get(f"/api/portal/requests?p={everything}").status_code == 400
        assert portal.get("/api/portal/requests?p=-1").status_code == 400
        assert portal.get(f"/api/portal/developers?p={everything}").status_code == 400
        page = portal.get(f"/api/portal/requests?p={first}")
        assert page.status_code == 200
        assert page.json()["Pages"] == 1
        portal.close()


def test_a_dashboard_that_caps_everything_at_one_page(client: Portal) -> None:
    client.sandbox.store.add_requests(
        {"developer_id": ALICE, "policies": [GOLD]} for _ in range(20)
    )
    client.sandbox.faults = Faults(cap_all_pages=True)
    answer = client.get("/api/portal/requests?p=-1").json()
    assert len(answer["Data"]) == 10
    assert answer["Pages"] == 3  # the truth, so a client can see the answer is short
    assert len(client.get("/api/portal/requests?p=3").json()["Data"]) == 6
    assert client.sandbox.fault_counts()["cap_all_pages"] == 1


def _trace(faults: Faults, calls: int) -> list[tuple[bool, int | None, bool]]:
    return [
        (faults.rate_limited("GET"), faults.error_status("GET"), faults.drop_answer("POST"))
        for _ in range(calls)
    ]


def _flaky(seed: int) -> Faults:
    return Faults(
        rate_limit={"GET": 0.3}, error_rates={"GET": 0.3}, drop_after_write=0.5, seed=seed
    )


def test_the_same_seed_gives_the_same_faults() -> None:
    assert _trace(_flaky(7), 200) == _trace(_flaky(7), 200)
    assert _trace(_flaky(7), 200) != _trace(_flaky(8), 200)


def test_the_same_seed_gives_the_same_answers_over_http(client: Portal) -> None:
    client.sandbox.faults = _flaky(11)
    first = _statuses(client, 40)
    client.sandbox.faults = _flaky(11)
    assert _statuses(client, 40) == first
    assert {200, 429} <= set(first)
    assert set(first) & {500, 502, 503}


def test_one_kind_does_not_shift_another() -> None:
    alone = Faults(error_rates={"GET": 0.5}, seed=5)
    mixed = Faults(error_rates={"GET": 0.5}, invalid_json=0.5, seed=5)
    for _ in range(50):
        mixed.corrupt("GET")
    assert [alone.error_status("GET") for _ in range(50)] == [
        mixed.error_status("GET") for _ in range(50)
    ]


def test_faults_are_counted() -> None:
    faults = Faults(rate_limit={"GET": 1.0}, invalid_json=1.0)
    for _ in range(3):
        faults.rate_limited("GET")
    faults.corrupt("GET")
    faults.corrupt("POST")  # only reads are corrupted
    counts = faults.counts()
    assert counts["rate_limit"] == 3
    assert counts["invalid_json"] == 1
    assert counts["error"] == 0


@pytest.mark.parametrize(
    "bad",
    [
        {"error_rates": {"GET": 1.5}},
        {"error_rates": {"FETCH": 0.1}},
        {"rate_limit": {"GET": -0.1}},
        {"drop_after_write": 2.0},
        {"latency": -1.0},
        {"error_statuses": ()},
        {"retry_after": -1},
        {"route_errors": {"/api/portal/requests": 1.0}},
        {"route_drops": {"DELETE /api/portal/requests/{id}": 1.5}},
    ],
)
def test_nonsense_faults_are_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        Faults(**bad)  # type: ignore[arg-type]
