"""The Dashboard client against the sandbox over real HTTP, faults included."""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator

import pytest

from tyksync import client, wire
from tyksync.client import DashboardClient, RetryPolicy
from tyksync.errors import AlreadyProcessed, AnswerLost, ApiError, ConfigError, NetworkError
from tyksync.sandbox import DIALECTS, Faults, Sandbox

SECRET = "client-secret-CANARY-7f3a9"
LIST = ("GET", "/api/portal/requests")
CREATE = ("POST", "/api/portal/requests")


@pytest.fixture(params=["modern", "legacy"])
def sandbox(request: pytest.FixtureRequest) -> Iterator[Sandbox]:
    with Sandbox(SECRET, dialect=request.param, seed="demo") as sb:
        yield sb


@pytest.fixture
def modern() -> Iterator[Sandbox]:
    with Sandbox(SECRET, seed="demo") as sb:
        yield sb


def client_for(sb: Sandbox, sleeps: list[float] | None = None, **kw: object) -> DashboardClient:
    record = sleeps if sleeps is not None else []
    return DashboardClient(
        sb.url,
        SECRET,
        retry=RetryPolicy(attempts=kw.pop("attempts", 5), max_retry_after=kw.pop("cap", 30.0)),  # type: ignore[arg-type]
        sleep=record.append,
        timeout=(2.0, 5.0),
    )


def sensitive_values(sb: Sandbox) -> list[str]:
    values = []
    for d in sb.store.developers():
        for name in ("password", "nonce", "sso_key"):
            if d.get(name):
                values.append(str(d[name]))
        values.extend(d.get("keys", {}).keys())
    return [v for v in values if len(v) >= 6]


def test_read_live_parses_both_dialects(sandbox: Sandbox) -> None:
    live = client_for(sandbox).read_live()
    assert live.legacy is (sandbox.dialect == "legacy")
    assert {d.email for d in live.developers} >= {"alice@example.com", "erin@example.com"}
    by_name = {p.name: p for p in live.policies}
    assert by_name["Gold"].db_id == "64b000000000000000000b01"
    assert by_name["Legacy Basic"].active is False
    requests = {r.id: r for r in live.requests}
    bob = requests["64c000000000000000000c01"]
    assert bob.developer_id == "64a000000000000000000a02"
    assert bob.policies == ("64b000000000000000000b02",)
    assert bob.approved is False
    assert bob.owner == "payments-team"
    assert bob.user_fields == {"ticket": "OPS-7"}
    legacy = requests["64c000000000000000000c06"]
    assert legacy.policies == () and legacy.for_api and legacy.is_v1


def test_sensitive_embedded_members_are_dropped(sandbox: Sandbox) -> None:
    canaries = sensitive_values(sandbox)
    assert canaries, "the demo data should carry sensitive members to drop"
    text = repr(client_for(sandbox).read_live())
    for value in canaries:
        assert value not in text


def test_ten_thousand_requests_cost_one_get(modern: Sandbox) -> None:
    dev = "64a000000000000000000a01"
    modern.store.add_requests(
        {"developer_id": dev, "policies": ["64b000000000000000000b01"], "fields": {"n": str(i)}}
        for i in range(10_000)
    )
    modern.reset_counts()
    requests = client_for(modern).list_requests()
    assert len(requests) == 10_006
    assert len({r.id for r in requests}) == 10_006
    assert modern.counts().get(LIST, 0) == 1


@pytest.mark.parametrize("dialect", DIALECTS)
def test_listings_read_as_they_arrive_give_what_reading_them_whole_gives(
    dialect: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Over HTTP, in both dialects: items decoded a few KiB at a time (the reader's piece
    shrunk from MiB) are the items of the whole listing, canaries dropped all the same."""
    with Sandbox(SECRET, dialect=dialect, seed="demo") as sb:  # type: ignore[arg-type]
        sb.store.add_requests(
            {
                "developer_id": "64a000000000000000000a01",
                "policies": ["64b000000000000000000b01"],
                "approved": i % 3 == 0,
                "fields": {"n": str(i)},
            }
            for i in range(2_000)
        )
        whole = client_for(sb).read_live()
        monkeypatch.setattr(wire, "PIECE", 4096)
        held: list[int] = []
        fed: list[int] = []
        feed = wire.ListingReader.feed

        def watched(reader: wire.ListingReader, chunk: bytes) -> None:
            feed(reader, chunk)
            held.append(reader.held)
            fed.append(len(chunk))

        monkeypatch.setattr(wire.ListingReader, "feed", watched)
        streamed = client_for(sb).read_live()
    assert streamed == whole
    assert len(streamed.requests) == 2_006
    listings = sum(fed)
    assert listings > 2 * client.CHUNK
    assert max(held) < client.CHUNK + 2 * 4096 < listings / 2  # a chunk, never the listing
    for value in sensitive_values(sb):
        assert value not in repr(streamed)


@pytest.mark.parametrize("fault", ["refuse_all_pages", "cap_all_pages"])
def test_page_walk_fallback(sandbox: Sandbox, fault: str) -> None:
    sandbox.store.add_requests(
        {"developer_id": "64a000000000000000000a01", "policies": ["64b000000000000000000b01"]}
        for _ in range(37)
    )
    sandbox.faults = Faults(**{fault: True})  # type: ignore[arg-type]
    requests = client_for(sandbox).list_requests()
    assert len(requests) == 43
    assert len({r.id for r in requests}) == 43
    assert sandbox.counts()[LIST] > 2


def test_reads_are_retried_on_5xx_and_connection_resets(modern: Sandbox) -> None:
    modern.faults = Faults(error_rates={"GET": 0.5}, reset_before=0.2, seed=3)
    sleeps: list[float] = []
    client = client_for(modern, sleeps, attempts=12)
    for _ in range(5):
        assert len(client.list_requests()) == 6
    assert sleeps, "some reads should have been retried"
    assert modern.counts()[LIST] > 5


def test_retry_after_is_honoured_and_capped(modern: Sandbox) -> None:
    modern.faults = Faults(rate_limit={"GET": 0.6}, retry_after=7, seed=1)
    sleeps: list[float] = []
    client = client_for(modern, sleeps, attempts=20, cap=3.0)
    client.list_requests()
    assert sleeps and all(s == 3.0 for s in sleeps)
    modern.faults = Faults(rate_limit={"GET": 0.6}, retry_after=2, seed=1)
    sleeps.clear()
    client.list_requests()
    assert sleeps and all(s == 2.0 for s in sleeps)


def test_persistent_5xx_on_read_gives_a_clear_error(modern: Sandbox) -> None:
    modern.faults = Faults(error_rates={"GET": 1.0}, error_statuses=(503,))
    with pytest.raises(ApiError) as e:
        client_for(modern, attempts=3).list_requests()
    assert e.value.status == 503
    assert "GET /api/portal/requests?p=-1" in str(e.value)
    assert modern.counts()[LIST] == 3


def test_create_is_never_retried_on_5xx(modern: Sandbox) -> None:
    modern.faults = Faults(error_rates={"POST": 1.0})
    with pytest.raises(AnswerLost):
        client_for(modern).create_request(
            "64a000000000000000000a01", ["64b000000000000000000b01"], {"a": "b"}
        )
    assert modern.counts()[CREATE] == 1


def test_create_with_dropped_answer_is_committed_and_reported_lost(modern: Sandbox) -> None:
    modern.faults = Faults(drop_after_write=1.0)
    before = len(modern.store.requests())
    with pytest.raises(AnswerLost) as e:
        client_for(modern).create_request(
            "64a000000000000000000a01", ["64b000000000000000000b01"], {"tyksync_op": "x1"}
        )
    assert "outcome is unknown" in str(e.value)
    assert modern.counts()[CREATE] == 1
    assert len(modern.store.requests()) == before + 1


def test_approve_dropped_answer_is_lost_not_retried(modern: Sandbox) -> None:
    modern.faults = Faults(drop_after_write=1.0)
    with pytest.raises(AnswerLost):
        client_for(modern).approve_request("64c000000000000000000c01")
    assert modern.counts()[("PUT", "/api/portal/requests/approve/{id}")] == 1


def test_create_approve_delete_round_trip(sandbox: Sandbox) -> None:
    client = client_for(sandbox)
    new_id = client.create_request(
        "64a000000000000000000a01", ["64b000000000000000000b01"], {"tyksync_owner": "t"}
    )
    got = client.get_request(new_id)
    assert got is not None and got.approved is False and got.owner == "t"
    key = client.approve_request(new_id)
    assert key in sandbox.store.issued_keys()
    with pytest.raises(AlreadyProcessed) as e:
        client.approve_request(new_id)
    assert e.value.status == 400 and "already been processed" in e.value.dashboard_message
    assert client.delete_request(new_id) is True
    assert client.delete_request(new_id) is False  # 404: already gone
    assert client.get_request(new_id) is None


def test_invalid_json_on_reads_is_retried_then_a_clear_error(modern: Sandbox) -> None:
    modern.faults = Faults(invalid_json=0.5, seed=2)
    assert len(client_for(modern, attempts=10).list_requests()) == 6
    modern.faults = Faults(invalid_json=1.0)
    with pytest.raises(NetworkError) as e:
        client_for(modern, attempts=2).list_requests()
    assert "not valid JSON" in str(e.value)


def test_wrong_secret_is_a_401_without_the_secret(modern: Sandbox) -> None:
    client = DashboardClient(modern.url, "wrong-secret-CANARY-1", sleep=lambda s: None)
    with pytest.raises(ApiError) as e:
        client.read_live()
    assert e.value.status == 401
    assert "TYK_DASHBOARD_SECRET" in str(e.value)
    assert "wrong-secret-CANARY-1" not in str(e.value)
    assert SECRET not in str(e.value)


def test_connection_refused_is_retried_then_clear() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sleeps: list[float] = []
    client = DashboardClient(
        f"http://127.0.0.1:{port}", SECRET, retry=RetryPolicy(attempts=3), sleep=sleeps.append
    )
    with pytest.raises(NetworkError) as e:
        client.list_requests()
    assert "connection refused" in str(e.value)
    assert len(sleeps) == 2


def test_developer_by_id(sandbox: Sandbox) -> None:
    client = client_for(sandbox)
    alice = client.developer("64a000000000000000000a01")
    assert alice is not None and alice.email == "alice@example.com"
    assert client.developer("64a0000000000000000009ff") is None


def test_config_errors() -> None:
    with pytest.raises(ConfigError, match="TYK_DASHBOARD_SECRET"):
        DashboardClient("http://127.0.0.1:1", "")
    with pytest.raises(ConfigError, match="http"):
        DashboardClient("ftp://dash", "s3cret")


def test_secret_and_keys_never_logged(modern: Sandbox, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    modern.faults = Faults(error_rates={"GET": 0.3}, rate_limit={"GET": 0.2}, seed=5)
    client = client_for(modern, attempts=10)
    client.read_live()
    new_id = client.create_request("64a000000000000000000a01", ["64b000000000000000000b01"], {})
    key = client.approve_request(new_id)
    errors = []
    try:
        client.approve_request(new_id)
    except ApiError as e:
        errors.append(str(e))
    text = caplog.text + "\n".join(errors)
    assert "GET /api/portal/requests" in caplog.text
    for value in [SECRET, key, *sensitive_values(modern)]:
        assert value not in text


@pytest.mark.parametrize(
    "raw,normal",
    [
        ("2026-01-05T10:00:00Z", "2026-01-05T10:00:00.000000Z"),
        ("2026-01-05T10:00:00.5Z", "2026-01-05T10:00:00.500000Z"),
        ("2026-01-05T10:00:00.123456789Z", "2026-01-05T10:00:00.123456Z"),
        ("2026-01-05T12:00:00+02:00", "2026-01-05T10:00:00.000000Z"),
        ("not a date", "not a date"),
    ],
)
def test_dates_are_normalised_so_oldest_compares_as_text(raw: str, normal: str) -> None:
    from tyksync.timefmt import normalize_date

    assert normalize_date(raw) == normal
    assert normalize_date("2026-01-05T10:00:00Z") < normalize_date("2026-01-05T10:00:00.5Z")


@pytest.mark.parametrize("secret", ["line\nbreak", "tab\there", "euro€sign", "\ufeffbom"])
def test_a_secret_no_header_can_carry_is_refused_before_any_call(secret: str) -> None:
    # Refused when the client is made, by a message that never quotes it: http.client
    # would refuse it at the first call, quoting the value.
    with pytest.raises(ConfigError) as e:
        DashboardClient("https://dash.example.invalid", secret)
    assert "cannot carry" in str(e.value) and secret not in str(e.value)
    assert DashboardClient("https://dash.example.invalid", "latin1-é-ok").url
