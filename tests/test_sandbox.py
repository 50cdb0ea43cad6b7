"""The sandbox against the API facts of SPEC section 1, over real HTTP, in both dialects."""

from __future__ import annotations

import http.client
import json
import re
import socket
import time
from typing import Any

import pytest
import requests
from conftest import SANDBOX_SECRET, Portal

from tyksync.sandbox import CANARY_PREFIX, Sandbox
from tyksync.sandbox.store import key_id_of

ORG = "5e9d9544a1dcd60001d0ed20"
ALICE, BOB, CAROL, DAVE, ERIN = (f"64a000000000000000000a0{i}" for i in range(1, 6))
GOLD, SILVER, REPORTS, LEGACY_BASIC = (f"64b000000000000000000b0{i}" for i in range(1, 5))
R1, R2, R3, R4, R5, R6 = (f"64c000000000000000000c0{i}" for i in range(1, 7))
UNKNOWN_ID = "64ffffffffffffffffffffff"
OBJECT_ID = re.compile(r"[0-9a-f]{24}")


def error(message: str) -> dict[str, object]:
    return {"Status": "Error", "Message": message, "Meta": None}


def every_request(portal: Portal) -> list[dict[str, Any]]:
    data = portal.get("/api/portal/requests", params={"p": -1}).json()["Data"]
    assert isinstance(data, list)
    return data


# -- authorisation and errors ----------------------------------------------------------------

ROUTES = [
    ("GET", "/api/portal/requests?p=1"),
    ("GET", f"/api/portal/requests/{R1}"),
    ("POST", "/api/portal/requests"),
    ("PUT", f"/api/portal/requests/approve/{R1}"),
    ("DELETE", f"/api/portal/requests/{R1}"),
    ("GET", "/api/portal/developers"),
    ("GET", f"/api/portal/developers/{ALICE}"),
    ("GET", "/api/portal/developers/email/alice@example.com"),
    ("GET", "/api/portal/policies"),
    ("GET", f"/api/portal/policies/{GOLD}"),
    ("GET", "/api/no/such/route"),
]


@pytest.mark.parametrize(("method", "path"), ROUTES)
@pytest.mark.parametrize(
    "header", [None, "", "wrong", f"Bearer {SANDBOX_SECRET}", SANDBOX_SECRET + "x"]
)
def test_every_call_needs_the_raw_secret(
    dialect_sandbox: Sandbox, method: str, path: str, header: str | None
) -> None:
    headers = {} if header is None else {"authorization": header}
    answer = requests.request(method, dialect_sandbox.url + path, headers=headers, timeout=5)
    assert answer.status_code == 401
    assert answer.json() == error("Not authorised")
    assert SANDBOX_SECRET not in answer.text
    assert dialect_sandbox.store.requests()[0]["id"] == R1  # nothing was deleted or approved


def test_the_authorization_header_name_is_case_insensitive(sandbox: Sandbox) -> None:
    answer = requests.get(
        sandbox.url + "/api/portal/policies", headers={"Authorization": SANDBOX_SECRET}, timeout=5
    )
    assert answer.status_code == 200


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", f"/api/portal/requests/{UNKNOWN_ID}"),
        ("PUT", f"/api/portal/requests/approve/{UNKNOWN_ID}"),
        ("DELETE", f"/api/portal/requests/{UNKNOWN_ID}"),
        ("GET", f"/api/portal/developers/{UNKNOWN_ID}"),
        ("GET", "/api/portal/developers/email/nobody@example.com"),
        ("GET", f"/api/portal/policies/{UNKNOWN_ID}"),
        ("GET", "/api/portal/policies/no-such-policy"),
    ],
)
def test_unknown_ids_are_404(portal: Portal, method: str, path: str) -> None:
    answer = portal.call(method, path)
    assert answer.status_code == 404
    assert answer.json()["Status"] == "Error"
    assert answer.json()["Meta"] is None


@pytest.mark.parametrize(
    "bad_id", ["not-an-id", "64c00000000000000000c01", "64c0000000000000000000zz"]
)
@pytest.mark.parametrize(
    ("method", "template"),
    [
        ("GET", "/api/portal/requests/{}"),
        ("PUT", "/api/portal/requests/approve/{}"),
        ("DELETE", "/api/portal/requests/{}"),
        ("GET", "/api/portal/developers/{}"),
    ],
)
def test_malformed_ids_are_400(portal: Portal, method: str, template: str, bad_id: str) -> None:
    answer = portal.call(method, template.format(bad_id))
    assert answer.status_code == 400
    assert answer.json()["Status"] == "Error"


def test_unknown_routes_are_404_and_wrong_methods_405(portal: Portal) -> None:
    assert portal.get("/api/portal/nothing").status_code == 404
    assert portal.get("/api/portal/nothing").json() == error("Not found")
    answer = portal.call("PATCH", "/api/portal/requests")
    assert answer.status_code == 405
    assert answer.json()["Status"] == "Error"


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"[1, 2]",
        b'{"by_user": 42}',
        b'{"by_user": "64a000000000000000000a01", "fields": {"n": 1}}',
        b'{"by_user": "64a000000000000000000a01", "apply_policies": "gold"}',
        b'{"by_user": "64a000000000000000000a01", "apply_policies": [1]}',
    ],
)
def test_malformed_create_bodies_are_400(portal: Portal, body: bytes) -> None:
    answer = portal.call("POST", "/api/portal/requests", data=body)
    assert answer.status_code == 400
    assert answer.json()["Status"] == "Error"
    assert len(portal.sandbox.store.requests()) == 6


@pytest.mark.parametrize("by_user", [None, "", "not-an-id", UNKNOWN_ID])
def test_a_create_must_name_an_existing_developer(portal: Portal, by_user: str | None) -> None:
    body = {"for_plan": GOLD} if by_user is None else {"by_user": by_user, "for_plan": GOLD}
    answer = portal.call("POST", "/api/portal/requests", json=body)
    assert answer.status_code == 400
    assert answer.json()["Status"] == "Error"


# -- create, approve, delete ----------------------------------------------------------------------


def test_create_answers_the_new_id_and_stores_a_pending_request(portal: Portal) -> None:
    body = {
        "by_user": ALICE,
        "for_plan": GOLD,
        "apply_policies": [GOLD],
        "fields": {"tyksync_owner": "team", "tyksync_op": "op-1"},
        "version": "v2",
        "approved": True,  # ignored: approval only ever goes through PUT approve
    }
    keys_before = portal.sandbox.store.issued_keys()
    answer = portal.call("POST", "/api/portal/requests", json=body)
    assert answer.status_code == 200
    created = answer.json()
    assert set(created) == {"Status", "Message", "Meta"}
    assert created["Status"] == "OK"
    assert created["Meta"] is None
    assert OBJECT_ID.fullmatch(created["Message"])

    stored = portal.get(f"/api/portal/requests/{created['Message']}").json()
    assert stored[portal.id_key] == created["Message"]
    assert stored["approved"] is False
    assert stored["by_user"] == ALICE
    assert stored["for_plan"] == GOLD
    assert stored["fields"] == body["fields"]
    assert stored["version"] == "v2"
    assert stored["org_id"] == ORG
    assert "portal_developer" not in stored  # only list answers embed the developer
    assert portal.sandbox.store.issued_keys() == keys_before


def test_approve_issues_a_key_and_records_it_on_the_developer(portal: Portal) -> None:
    answer = portal.approve(R1)  # bob, Silver
    assert answer.status_code == 200
    assert set(answer.json()) == {"RawKey"}
    key = answer.json()["RawKey"]
    assert re.fullmatch(ORG + "[0-9a-f]{32}", key)

    assert portal.get(f"/api/portal/requests/{R1}").json()["approved"] is True
    bob = portal.get(f"/api/portal/developers/{BOB}").json()
    assert bob["keys"] == {key_id_of(key): [SILVER]}
    assert bob["subscriptions"] == {SILVER: key_id_of(key)}
    assert re.fullmatch("[0-9a-f]{16}", key_id_of(key))
    assert portal.sandbox.store.issued_keys()[-1] == key


def test_each_approval_issues_a_different_key(portal: Portal) -> None:
    first = portal.approve(R1).json()["RawKey"]
    second = portal.approve(R3).json()["RawKey"]
    assert first != second
    assert len(set(portal.sandbox.store.issued_keys())) == 5  # the demo issued 3


def test_a_second_approve_is_refused(portal: Portal) -> None:
    assert portal.approve(R1).status_code == 200
    again = portal.approve(R1)
    assert again.status_code == 400
    assert again.json() == error("Key request has already been processed.")
    seeded_approved = portal.approve(R2)
    assert seeded_approved.status_code == 400
    assert seeded_approved.json() == error("Key request has already been processed.")
    assert len(portal.sandbox.store.issued_keys()) == 4  # the demo issued 3


def test_a_request_for_a_missing_policy_is_accepted_and_its_approve_refused(
    portal: Portal,
) -> None:
    request_id = portal.create(by_user=ALICE, for_plan=UNKNOWN_ID, version="v2")
    keys_before = portal.sandbox.store.issued_keys()
    answer = portal.approve(request_id)
    assert answer.status_code == 400
    assert answer.json()["Status"] == "Error"
    assert UNKNOWN_ID in answer.json()["Message"]
    assert portal.sandbox.store.issued_keys() == keys_before
    assert portal.get(f"/api/portal/requests/{request_id}").json()["approved"] is False
    assert portal.get(f"/api/portal/developers/{ALICE}").json()["keys"] == {}


def test_approve_needs_every_policy_of_the_request(sandbox: Sandbox) -> None:
    portal = Portal(sandbox)
    request_id = portal.create(
        by_user=ALICE, for_plan=GOLD, apply_policies=[GOLD, UNKNOWN_ID], version="v2"
    )
    assert portal.approve(request_id).status_code == 400
    assert len(sandbox.store.issued_keys()) == 3  # the demo's
    portal.close()


def test_a_multi_policy_request_records_every_policy(sandbox: Sandbox) -> None:
    portal = Portal(sandbox)
    request_id = portal.create(by_user=ALICE, for_plan=GOLD, apply_policies=[GOLD, REPORTS])
    key = portal.approve(request_id).json()["RawKey"]
    alice = portal.get(f"/api/portal/developers/{ALICE}").json()
    assert alice["keys"] == {key_id_of(key): [GOLD, REPORTS]}
    assert alice["subscriptions"] == {GOLD: key_id_of(key), REPORTS: key_id_of(key)}
    portal.close()


def test_delete_answers_data_deleted_and_does_not_revoke_the_key(portal: Portal) -> None:
    key = portal.approve(R1).json()["RawKey"]
    answer = portal.call("DELETE", f"/api/portal/requests/{R1}")
    assert answer.status_code == 200
    assert answer.json() == {"Status": "OK", "Message": "Data deleted", "Meta": None}
    assert portal.get(f"/api/portal/requests/{R1}").status_code == 404
    assert portal.call("DELETE", f"/api/portal/requests/{R1}").status_code == 404
    assert portal.get(f"/api/portal/developers/{BOB}").json()["keys"] == {key_id_of(key): [SILVER]}
    assert key in portal.sandbox.store.issued_keys()
    assert portal.sandbox.store.key_valid(key)


def test_revoke_removes_the_key_from_the_developer_and_invalidates_it(portal: Portal) -> None:
    store = portal.sandbox.store
    first = portal.approve(R1).json()["RawKey"]  # bob, Silver
    other = portal.create(by_user=BOB, for_plan=SILVER, apply_policies=[SILVER, GOLD])
    second = portal.approve(other).json()["RawKey"]  # bob, Silver and Gold
    assert store.key_valid(first) and store.key_valid(second)
    path = f"/api/portal/developers/{BOB}/keys/{key_id_of(second)}"

    answer = portal.call("DELETE", path)
    assert answer.status_code == 200
    assert answer.json()["Status"] == "OK"
    bob = portal.get(f"/api/portal/developers/{BOB}").json()
    assert bob["keys"] == {key_id_of(first): [SILVER]}
    # Silver falls back on the key that still grants it; Gold had only the revoked one.
    assert bob["subscriptions"] == {SILVER: key_id_of(first)}
    assert not store.key_valid(second)
    assert store.key_valid(first)
    assert second in store.issued_keys()  # issued, once, and now revoked
    assert [k["revoked"] for k in store.issued() if k["key"] == second] == [True]
    # The request is untouched: revoking is not deleting, nor the other way round.
    assert portal.get(f"/api/portal/requests/{other}").json()["approved"] is True

    again = portal.call("DELETE", path)
    assert again.status_code == 404
    assert again.json()["Status"] == "Error"


def test_revoke_of_an_unknown_developer_or_key(portal: Portal) -> None:
    key = portal.approve(R1).json()["RawKey"]
    unknown_key = portal.call("DELETE", f"/api/portal/developers/{BOB}/keys/{'0' * 16}")
    assert unknown_key.status_code == 404
    someone_else = portal.call("DELETE", f"/api/portal/developers/{ALICE}/keys/{key_id_of(key)}")
    assert someone_else.status_code == 404
    unknown_dev = portal.call("DELETE", f"/api/portal/developers/{UNKNOWN_ID}/keys/{'0' * 16}")
    assert unknown_dev.status_code == 404
    malformed = portal.call("DELETE", f"/api/portal/developers/nope/keys/{key_id_of(key)}")
    assert malformed.status_code == 400
    assert portal.sandbox.store.key_valid(key)
    assert not portal.sandbox.store.key_valid("not a key")


def test_seeded_approved_requests_record_their_keys_by_id(portal: Portal) -> None:
    carol = portal.get(f"/api/portal/developers/{CAROL}").json()
    (seeded,) = [k for k in portal.sandbox.store.issued() if k["request_id"] == R2]
    assert carol["keys"] == {key_id_of(seeded["key"]): [GOLD]}
    assert carol["subscriptions"] == {GOLD: key_id_of(seeded["key"])}
    assert portal.sandbox.store.key_valid(seeded["key"])


def test_a_policy_can_be_named_by_its_explicit_id_in_the_modern_dialect(sandbox: Sandbox) -> None:
    portal = Portal(sandbox)
    assert portal.get("/api/portal/policies/gold").json()["_id"] == GOLD
    request_id = portal.create(by_user=ALICE, for_plan="gold", apply_policies=["gold"])
    key = portal.approve(request_id).json()["RawKey"]
    assert portal.get(f"/api/portal/developers/{ALICE}").json()["keys"] == {key_id_of(key): [GOLD]}
    portal.close()


# -- list answers ---------------------------------------------------------------------------------


def test_list_answers_embed_the_whole_developer(portal: Portal) -> None:
    data = every_request(portal)
    by_id = {r[portal.id_key]: r for r in data}
    carol = by_id[R2]["portal_developer"]
    assert isinstance(carol, dict)
    assert carol[portal.id_key] == CAROL
    assert carol["email"] == "carol@example.com"
    assert len(carol["keys"]) == 1
    assert list(carol["subscriptions"]) == [GOLD]
    for member in ("sso_key", "nonce", "password"):
        assert carol[member].startswith(CANARY_PREFIX)
    for request in data:
        assert request["catalogue_entry"] is None
        assert request["catalogues"] == []
        assert request["portal_developer"][portal.id_key] == request["by_user"]


def test_the_canaries_differ_per_developer(sandbox: Sandbox) -> None:
    canaries = [d["sso_key"] for d in sandbox.store.developers()]
    assert len(set(canaries)) == len(canaries)


def test_the_dialects_name_ids_differently(portal: Portal, dialect: str) -> None:
    request = every_request(portal)[0]
    developer = portal.get(f"/api/portal/developers/{ALICE}").json()
    policy = portal.get(f"/api/portal/policies/{GOLD}").json()
    if dialect == "modern":
        assert request["id"] == R1 and "_id" not in request
        assert developer["id"] == ALICE and "_id" not in developer
        assert "apply_policies" in request
        assert policy["id"] == "gold"
    else:
        assert request["_id"] == R1 and "id" not in request
        assert developer["_id"] == ALICE and "id" not in developer
        assert "apply_policies" not in request
        assert "id" not in policy  # legacy Dashboards know no explicit policy ids
    assert policy["_id"] == GOLD
    assert policy["name"] == "Gold"


def test_a_legacy_dashboard_keeps_only_for_plan(portal: Portal, dialect: str) -> None:
    request_id = portal.create(by_user=ALICE, for_plan=GOLD, apply_policies=[GOLD, REPORTS])
    stored = portal.get(f"/api/portal/requests/{request_id}").json()
    key = portal.approve(request_id).json()["RawKey"]
    keys = portal.get(f"/api/portal/developers/{ALICE}").json()["keys"]
    if dialect == "modern":
        assert stored["apply_policies"] == [GOLD, REPORTS]
        assert keys == {key_id_of(key): [GOLD, REPORTS]}
    else:
        assert "apply_policies" not in stored
        assert keys == {key_id_of(key): [GOLD]}
    assert stored["for_plan"] == GOLD


def test_a_legacy_dashboard_knows_no_explicit_policy_ids(portal: Portal, dialect: str) -> None:
    by_explicit = portal.get("/api/portal/policies/gold")
    request_id = portal.create(by_user=ALICE, for_plan="gold")
    approved = portal.approve(request_id)
    if dialect == "modern":
        assert by_explicit.status_code == 200
        assert approved.status_code == 200
    else:
        assert by_explicit.status_code == 404
        assert approved.status_code == 400


def test_developers_by_email(portal: Portal) -> None:
    erin = portal.get("/api/portal/developers/email/erin@example.com")
    assert erin.status_code == 200
    assert erin.json()[portal.id_key] == ERIN
    assert erin.json()["email"] == "erin@example.com"
    shouting = portal.get("/api/portal/developers/email/ERIN@Example.com")
    assert shouting.json()[portal.id_key] == ERIN
    portal.sandbox.store.add_developer("a+b@example.com")
    plus = portal.get("/api/portal/developers/email/a%2Bb@example.com")
    assert plus.json()["email"] == "a+b@example.com"


def test_the_demo_data(portal: Portal) -> None:
    developers = portal.get("/api/portal/developers", params={"p": -1}).json()["Data"]
    assert [(d[portal.id_key], d["email"]) for d in developers] == [
        (ALICE, "alice@example.com"),
        (BOB, "bob@example.com"),
        (CAROL, "carol@example.com"),
        (DAVE, "dave@example.com"),
        (ERIN, "erin@example.com"),
    ]
    policies = portal.get("/api/portal/policies", params={"p": -1}).json()["Data"]
    assert [(p["_id"], p["name"], p["active"]) for p in policies] == [
        (GOLD, "Gold", True),
        (SILVER, "Silver", True),
        (REPORTS, "Reports", True),
        (LEGACY_BASIC, "Legacy Basic", False),
    ]
    summary = [
        (
            r[portal.id_key],
            r["by_user"],
            r["for_plan"],
            r["approved"],
            r["fields"].get("ticket"),
            r["date_created"],
        )
        for r in every_request(portal)
    ]
    assert summary == [
        (R1, BOB, SILVER, False, "OPS-7", "2026-01-05T10:00:00.000000Z"),
        (R2, CAROL, GOLD, True, "OPS-1", "2026-01-02T09:00:00.000000Z"),
        (R3, DAVE, REPORTS, False, "OPS-9", "2026-01-06T11:00:00.000000Z"),
        (R4, ERIN, SILVER, True, "OPS-3", "2026-01-03T12:00:00.000000Z"),
        (R5, ERIN, REPORTS, False, None, "2026-01-07T08:00:00.000000Z"),
        (R6, DAVE, "", True, None, "2025-11-01T08:00:00.000000Z"),
    ]
    r6 = portal.get(f"/api/portal/requests/{R6}").json()
    assert r6["for_api"] == "5f1e7e0a1dcd600011112222"
    assert r6["version"] == ""
    assert every_request(portal)[4]["fields"] == {}
    assert all(r["org_id"] == ORG for r in every_request(portal))


def test_the_demo_keys_are_random_per_store() -> None:
    with Sandbox("a", seed="demo") as one, Sandbox("b", seed="demo") as two:
        assert len(one.store.issued_keys()) == 3  # r2, r4 and the legacy r6
        assert not set(one.store.issued_keys()) & set(two.store.issued_keys())


# -- paging ----------------------------------------------------------------------------------------


def _add_requests(sandbox: Sandbox, count: int) -> None:
    sandbox.store.add_requests(
        {"developer_id": ALICE, "policies": [GOLD], "fields": {"n": str(i)}} for i in range(count)
    )


def _page(portal: Portal, path: str, p: int | str | None) -> requests.Response:
    return portal.get(path, params=None if p is None else {"p": p})


def test_modern_paging_counts_from_one_and_any_p_below_one_is_everything(
    sandbox: Sandbox,
) -> None:
    portal = Portal(sandbox)
    _add_requests(sandbox, 25)  # 31 in all: 4 pages
    everything = [r["id"] for r in every_request(portal)]
    assert len(everything) == 31
    pages = [_page(portal, "/api/portal/requests", p).json() for p in (1, 2, 3, 4, 5)]
    assert all(page["Pages"] == 4 for page in pages)
    assert [len(page["Data"]) for page in pages] == [10, 10, 10, 1, 0]
    assert [r["id"] for page in pages for r in page["Data"]] == everything
    assert _page(portal, "/api/portal/requests", None).json() == pages[0]
    for p in (0, -1, -7):
        answer = _page(portal, "/api/portal/requests", p).json()
        assert [r["id"] for r in answer["Data"]] == everything
        assert answer["Pages"] == 4
    portal.close()


def test_legacy_paging_counts_from_zero_and_only_minus_one_is_everything() -> None:
    with Sandbox(SANDBOX_SECRET, dialect="legacy", seed="demo") as sandbox:
        portal = Portal(sandbox)
        _add_requests(sandbox, 25)
        everything = [r["_id"] for r in every_request(portal)]
        assert len(everything) == 31
        pages = [_page(portal, "/api/portal/requests", p).json() for p in (0, 1, 2, 3, 4)]
        assert [len(page["Data"]) for page in pages] == [10, 10, 10, 1, 0]
        assert [r["_id"] for page in pages for r in page["Data"]] == everything
        assert all(page["Pages"] == 4 for page in pages)
        assert _page(portal, "/api/portal/requests", None).json() == pages[0]
        refused = _page(portal, "/api/portal/requests", -2)
        assert refused.status_code == 400
        assert refused.json()["Status"] == "Error"
        portal.close()


@pytest.mark.parametrize("path", ["/api/portal/developers", "/api/portal/policies"])
def test_developers_and_policies_page_the_same_way(portal: Portal, path: str) -> None:
    for i in range(12):
        portal.sandbox.store.add_developer(f"dev{i}@example.com")
        portal.sandbox.store.add_policy(f"Plan {i}")
    everything = _page(portal, path, -1).json()
    assert everything["Pages"] == 2
    assert (
        len(everything["Data"]) == {"/api/portal/developers": 17, "/api/portal/policies": 16}[path]
    )
    first = _page(portal, path, None).json()
    assert first["Data"] == everything["Data"][:10]
    assert first["Pages"] == 2


@pytest.mark.parametrize("p", ["one", "1.5", "0x1"])
def test_a_page_that_is_not_a_number_is_400(portal: Portal, p: str) -> None:
    answer = portal.get(f"/api/portal/requests?p={p}")
    assert answer.status_code == 400


def test_an_empty_page_is_no_page(portal: Portal) -> None:
    # Go's Query().Get cannot tell `p=` from no `p`.
    assert portal.get("/api/portal/requests?p=").json() == portal.get("/api/portal/requests").json()


def test_an_empty_list_has_no_pages() -> None:
    with Sandbox(SANDBOX_SECRET) as empty:
        portal = Portal(empty)
        assert portal.get("/api/portal/requests?p=-1").json() == {"Data": [], "Pages": 0}
        assert portal.get("/api/portal/policies").json() == {"Data": [], "Pages": 0}
        portal.close()


def test_listing_ten_thousand_requests_is_fast(sandbox: Sandbox) -> None:
    developers = [sandbox.store.add_developer(f"bulk{i}@example.com")["id"] for i in range(50)]
    sandbox.store.add_requests(
        {"developer_id": developers[i % 50], "policies": [GOLD], "approved": i % 100 == 0}
        for i in range(10_000)
    )
    portal = Portal(sandbox)
    started = time.perf_counter()
    answer = portal.get("/api/portal/requests?p=-1")
    elapsed = time.perf_counter() - started
    assert len(answer.json()["Data"]) == 10_006
    assert elapsed < 1.0, elapsed
    portal.close()


# -- the wire -------------------------------------------------------------------------------------


def test_connections_are_kept_alive_and_answers_sized(sandbox: Sandbox) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", sandbox.port, timeout=5)
    try:
        for path in ("/api/portal/policies", "/api/portal/nothing", f"/api/portal/requests/{R1}"):
            connection.request("GET", path, headers={"authorization": SANDBOX_SECRET})
            answer = connection.getresponse()
            body = answer.read()
            assert answer.getheader("Content-Length") == str(len(body))
            assert answer.getheader("Content-Type") == "application/json"
            json.loads(body)
        assert connection.sock is not None  # still the same connection
    finally:
        connection.close()


def test_100_continue_is_sent_before_the_body_is_read(sandbox: Sandbox) -> None:
    # Answers are buffered (headers and body leave in one write), but a "100 Continue"
    # must go out at once: the client waits for it before sending its body.
    body = json.dumps({"by_user": ALICE, "for_plan": GOLD, "apply_policies": [GOLD]}).encode()
    with socket.create_connection(("127.0.0.1", sandbox.port), timeout=5) as conn:
        conn.sendall(
            b"POST /api/portal/requests HTTP/1.1\r\nHost: sandbox\r\n"
            b"authorization: " + SANDBOX_SECRET.encode() + b"\r\n"
            b"Expect: 100-continue\r\nContent-Length: %d\r\n\r\n" % len(body)
        )
        assert conn.recv(64).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        conn.sendall(body)
        answer = b""
        while not answer.endswith(b"}"):
            answer += conn.recv(4096)
    head, _, payload = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ") and json.loads(payload)["Status"] == "OK"


def test_a_stopped_sandbox_hangs_up_on_kept_alive_clients() -> None:
    sandbox = Sandbox(SANDBOX_SECRET, seed="demo").start()
    portal = Portal(sandbox)
    url = sandbox.url
    assert portal.get("/api/portal/policies").status_code == 200
    sandbox.stop()
    with pytest.raises(requests.ConnectionError):
        portal.session.get(url + "/api/portal/policies", timeout=5)
    portal.close()


# -- counters -------------------------------------------------------------------------------


def test_calls_are_counted_by_route(portal: Portal) -> None:
    portal.get("/api/portal/requests?p=1")
    portal.get("/api/portal/requests?p=2")
    portal.get(f"/api/portal/requests/{R1}")
    portal.approve(R1)
    portal.approve(R1)  # refused, still counted
    portal.call("DELETE", f"/api/portal/requests/{R3}")
    portal.create(by_user=ALICE, for_plan=GOLD)
    portal.get("/api/portal/developers/email/bob@example.com")
    portal.get("/nowhere")
    assert portal.sandbox.counts() == {
        ("GET", "/api/portal/requests"): 2,
        ("GET", "/api/portal/requests/{id}"): 1,
        ("PUT", "/api/portal/requests/approve/{id}"): 2,
        ("DELETE", "/api/portal/requests/{id}"): 1,
        ("POST", "/api/portal/requests"): 1,
        ("GET", "/api/portal/developers/email/{email}"): 1,
        ("GET", "<unknown>"): 1,
    }
    assert portal.sandbox.mutating_calls() == 4
    portal.sandbox.reset_counts()
    assert portal.sandbox.counts() == {}
    assert portal.sandbox.mutating_calls() == 0


def test_the_sandbox_repr_holds_no_secret(sandbox: Sandbox) -> None:
    assert SANDBOX_SECRET not in repr(sandbox)
    assert sandbox.url in repr(sandbox)
