"""doctor's HTTP verdicts (pure): HTTP/2 and HTTP/1.1, the port-80 redirect, redirect loops,
the forwarded headers the server saw, streaming, the nodes and the token's API request."""

from __future__ import annotations

import pytest

from corral.doctor.http_logic import (
    Answer,
    StreamTiming,
    forwarded_result,
    loop_result,
    protocol_result,
    redirect_result,
    stream_result,
    token_api_result,
)
from corral.doctor.model import Status, Target
from corral.doctor.nodes_logic import NodeSeen, health_result, spread_result

TARGET = Target("rancher.test", port=443)
PATH = "/probe?x=1"


def test_http2_needs_alpn_h2_and_an_http2_answer() -> None:
    """HTTP/2 passes only when ALPN chose h2 and /ping answered 200 over HTTP/2."""
    ok = Answer(200, http_version="HTTP/2", body="pong")
    assert protocol_result("http2", "HTTP/2", ok, "h2").status is Status.PASS
    chose_h1 = protocol_result("http2", "HTTP/2", ok, "http/1.1")
    assert chose_h1.status is Status.FAIL and "chose http/1.1" in chose_h1.saw
    assert chose_h1.fix is not None and "listen 443 ssl http2;" in chose_h1.fix.line()
    bad = protocol_result("http1", "HTTP/1.1", Answer(502, http_version="HTTP/1.1"), "h2")
    assert bad.status is Status.FAIL and "502" in bad.saw


def _redirects(*answers: Answer) -> list[tuple[str, str, Answer]]:
    hosts = ["rancher.test", "forged.invalid"]
    return [(hosts[i], PATH, answer) for i, answer in enumerate(answers)]


@pytest.mark.parametrize("status", [301, 308])
def test_permanent_redirect_to_the_fqdn_passes(status: int) -> None:
    """301/308 to https://FQDN with the same path, for the FQDN and for a forged Host."""
    answer = Answer(status, location=f"https://rancher.test{PATH}")
    result = redirect_result(_redirects(answer, answer), TARGET)
    assert result.status is Status.PASS, result.saw


@pytest.mark.parametrize(
    ("location", "status", "words"),
    [
        ("https://rancher.test/probe?x=1", 302, "temporary"),
        ("http://rancher.test/probe?x=1", 301, "not to https"),
        ("https://rancher.test/", 301, "not kept"),
        ("", 200, "no redirect"),
    ],
)
def test_wrong_redirects_fail(location: str, status: int, words: str) -> None:
    """302, a redirect to http, a lost path, or no redirect at all: fail, saying which."""
    result = redirect_result(_redirects(Answer(status, location=location)), TARGET)
    assert result.status is Status.FAIL
    assert words in result.saw
    assert result.fix is not None and "return 301 https://$server_name$request_uri;" in (
        result.fix.line())


def test_a_forged_host_redirected_to_itself_is_an_open_redirect() -> None:
    """With a forged Host the target must still be the FQDN."""
    good = Answer(301, location=f"https://rancher.test{PATH}")
    forged = Answer(301, location=f"https://forged.invalid{PATH}")
    result = redirect_result(_redirects(good, forged), TARGET)
    assert result.status is Status.FAIL
    assert "Host forged.invalid" in result.saw and "open redirect" in result.saw


def test_redirect_to_another_port_is_noted_not_failed() -> None:
    """Rancher's example redirects to port 443 whatever port doctor was given: a note."""
    answer = Answer(301, location=f"https://rancher.test{PATH}")
    result = redirect_result(_redirects(answer), Target("rancher.test", port=8443))
    assert result.status is Status.PASS and "port 443" in result.saw


def test_redirect_not_checked_with_http_port_zero() -> None:
    """--http-port 0 skips the check."""
    assert redirect_result([], Target("rancher.test", http_port=None)).status is Status.SKIP


@pytest.mark.parametrize(
    ("answer", "status"),
    [
        (Answer(200), Status.PASS),
        (Answer(404), Status.PASS),
        (Answer(302, location="https://rancher.test/diagnostics/headers"), Status.FAIL),
        (Answer(400, body="Use HTTPS"), Status.FAIL),
        (Answer(502), Status.SKIP),
        (Answer(error="cannot connect"), Status.SKIP),
    ],
)
def test_redirect_loop(answer: Answer, status: Status) -> None:
    """An HTTPS request redirected to https (or refused as plain HTTP) is a loop."""
    result = loop_result(answer)
    assert result.status is status, result.saw
    if status is Status.FAIL:
        assert result.fix is not None
        assert "X-Forwarded-Proto $scheme;" in result.fix.line()


def _echo(**overrides: list[str]) -> dict[str, list[str]]:
    echoed = {"host": ["rancher.test"], "x-forwarded-proto": ["https"],
              "x-forwarded-port": ["443"], "x-forwarded-for": ["10.0.0.9"]}
    echoed.update({key.replace("_", "-"): value for key, value in overrides.items()})
    return echoed


def test_forwarded_headers_as_rancher_asks_pass() -> None:
    """Host = FQDN (with or without the port), https, the port connected to, an address."""
    assert forwarded_result(_echo(), Answer(200), TARGET, "10.0.0.9").status is Status.PASS
    with_port = _echo(host=["rancher.test:443"], x_forwarded_for=["1.2.3.4, 10.0.0.9"])
    assert forwarded_result(with_port, Answer(200), TARGET, "10.0.0.9").status is Status.PASS


def test_forwarded_address_behind_nat_is_noted() -> None:
    """An X-Forwarded-For that is not doctor's own address is noted, not failed."""
    result = forwarded_result(_echo(), Answer(200), TARGET, "192.168.1.5")
    assert result.status is Status.PASS and "NAT" in result.saw


@pytest.mark.parametrize(
    ("overrides", "directive"),
    [
        ({"host": ["backend:80"]}, "proxy_set_header Host $host;"),
        ({"host": []}, "proxy_set_header Host $host;"),
        ({"x_forwarded_proto": ["http"]}, "proxy_set_header X-Forwarded-Proto $scheme;"),
        ({"x_forwarded_port": ["80"]}, "proxy_set_header X-Forwarded-Port $server_port;"),
        ({"x_forwarded_port": []}, "proxy_set_header X-Forwarded-Port $server_port;"),
        ({"x_forwarded_for": []}, "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;"),
    ],
)
def test_wrong_forwarded_header_fails_naming_its_directive(
    overrides: dict[str, list[str]], directive: str
) -> None:
    """Each wrong header fails the check and the fix names just its directive."""
    result = forwarded_result(_echo(**overrides), Answer(200), TARGET, "10.0.0.9")
    assert result.status is Status.FAIL
    assert result.fix is not None and result.fix.nginx == directive


def test_forwarded_not_reached_is_not_run() -> None:
    """Not reached (redirect loop, no endpoint): not run, never failed twice."""
    assert forwarded_result(None, Answer(302), TARGET, "").status is Status.SKIP
    assert "not corral" in forwarded_result(None, Answer(404), TARGET, "").saw


def test_stream_spread_over_time_passes_bunched_fails() -> None:
    """Chunks spread as sent pass; all at once (buffered) fail with proxy_buffering off."""
    spread = StreamTiming("HTTP/1.1", (0.05, 0.55, 1.05, 1.55), 200)
    bunched = StreamTiming("HTTP/2", (1.55, 1.55, 1.56, 1.56), 200)
    assert stream_result([spread], 4, 0.5).status is Status.PASS
    result = stream_result([spread, bunched], 4, 0.5)
    assert result.status is Status.FAIL and "HTTP/2" in result.saw.rsplit("(", 1)[1]
    assert result.fix is not None and "proxy_buffering off;" in result.fix.line()


def test_stream_not_answered_is_not_run() -> None:
    """No stream endpoint, or an error: not run."""
    assert stream_result([StreamTiming("HTTP/1.1", status=404)], 4, 0.5).status is Status.SKIP
    assert stream_result([StreamTiming("HTTP/1.1", error="x")], 4, 0.5).status is Status.SKIP


def test_nodes_health_and_spreading() -> None:
    """Each node's /healthz must be 200; every healthy node's server must get requests."""
    one = NodeSeen("http://n1", Answer(200, body="ok"), "s1")
    two = NodeSeen("http://n2", Answer(200, body="ok"), "s2")
    sick = NodeSeen("http://n2", Answer(500, body="[-]store failed: no quorum\nfailed"), "s2")
    assert health_result([one, two]).status is Status.PASS
    failed = health_result([one, sick])
    assert failed.status is Status.FAIL and "[-]store failed" in failed.saw
    assert spread_result([one, two], ["s1", "s2", "s1", "s2"]).status is Status.PASS
    lopsided = spread_result([one, two], ["s1", "s1", "s1"])
    assert lopsided.status is Status.FAIL and "http://n2 got none" in lopsided.saw
    assert health_result([]).status is Status.SKIP
    assert spread_result([], []).status is Status.SKIP


def test_token_api() -> None:
    """200 names the user; 401 fails saying the token was refused."""
    body = '{"data": [{"username": "admin"}]}'
    ok = token_api_result(Answer(200, body=body))
    assert ok.status is Status.PASS and "as admin" in ok.saw
    assert token_api_result(Answer(401)).status is Status.FAIL
