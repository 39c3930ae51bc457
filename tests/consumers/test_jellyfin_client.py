"""The HTTP client against a local server that speaks Jellyfin's configuration
API: authentication, the read-plan-write cycle, and the error replies."""

from __future__ import annotations

import json
import socket
import time

import pytest

from components.consumers.jellyfin import OWNED_KEYS, JellyfinClient, JellyfinError, auth_header, encoding_wanted, plan_encoding
from tests.consumers.conftest import API_KEY
from tests.stand_ins.jellyfin import JELLYFIN_10_11_DOCUMENT, PATH, FakeJellyfin


@pytest.fixture
def server():
    with FakeJellyfin(API_KEY) as fake:
        yield fake


def _run(client: JellyfinClient, cfg) -> list[str]:
    """One `up`: read, plan, post only when something differs."""
    plan = plan_encoding(client.get_encoding(), encoding_wanted(cfg))
    if plan.changed:
        client.post_encoding(plan.document)
    return plan.changed_keys


def test_auth_header_is_jellyfins_mediabrowser_scheme():
    assert auth_header("abc") == 'MediaBrowser Client="proxmox-talos-gpu", Token="abc"'
    assert 'Token="a%22b"' in auth_header('a"b'), "values are URL-encoded so a quote cannot end the value"


def test_first_run_changes_owned_settings_and_second_run_posts_nothing(server, cfg):
    client = JellyfinClient(server.url, API_KEY, timeout=5)
    first = _run(client, cfg)
    assert first == ["HardwareAccelerationType", "EnableEnhancedNvdecDecoder", "HardwareDecodingCodecs", "AllowHevcEncoding", "AllowAv1Encoding"]
    assert [method for method, *_ in server.requests] == ["GET", "POST"]
    assert server.document["HardwareAccelerationType"] == "nvenc"
    assert server.document["HardwareDecodingCodecs"] == ["h264", "hevc", "mpeg2video", "mpeg4", "vc1", "vp8", "vp9"]
    assert server.document["AllowAv1Encoding"] is False

    second = _run(client, cfg)
    assert second == []
    assert [method for method, *_ in server.requests] == ["GET", "POST", "GET"], "a second run reads and does not post"


def test_settings_the_program_does_not_own_survive_byte_identical(server, cfg):
    client = JellyfinClient(server.url, API_KEY, timeout=5)
    _run(client, cfg)
    for key, value in JELLYFIN_10_11_DOCUMENT.items():
        if key not in OWNED_KEYS:
            assert json.dumps(server.document[key]) == json.dumps(value), key
    posted = server.posts[0]
    assert set(posted) == set(JELLYFIN_10_11_DOCUMENT), "the whole document is posted back, so nothing falls to its default"


def test_requests_carry_the_key_only_in_the_authorization_header(server):
    JellyfinClient(server.url, API_KEY, timeout=5).get_encoding()
    method, path, headers, _body = server.requests[0]
    assert (method, path) == ("GET", PATH)
    assert headers["Authorization"] == f'MediaBrowser Client="proxmox-talos-gpu", Token="{API_KEY}"'
    assert "X-Emby-Token" not in headers and API_KEY not in path


def _error(client: JellyfinClient, call: str = "get") -> str:
    with pytest.raises(JellyfinError) as caught:
        client.get_encoding() if call == "get" else client.post_encoding({"HardwareAccelerationType": "nvenc"})
    return str(caught.value)


def test_wrong_key_gives_a_401_message_naming_the_url_and_not_the_key(server):
    message = _error(JellyfinClient(server.url, "0" * 32, timeout=5))
    assert f"GET {server.url}{PATH}: HTTP 401 Unauthorized" in message
    assert "jellyfinApiKey" in message and "0" * 32 not in message


def test_401_reply_does_not_leak_the_key(server):
    server.mode = "401"
    message = _error(JellyfinClient(server.url, API_KEY, timeout=5))
    assert "HTTP 401" in message and API_KEY not in message


def test_500_reply_names_the_url_and_points_to_the_server_log(server):
    server.mode = "500"
    message = _error(JellyfinClient(server.url, API_KEY, timeout=5), call="post")
    assert message.startswith(f"POST {server.url}{PATH}: HTTP 500")
    assert "Jellyfin server log" in message and API_KEY not in message


def test_non_admin_key_is_told_it_needs_an_administrator(cfg):
    with FakeJellyfin(API_KEY, admin=False) as fake:
        client = JellyfinClient(fake.url, API_KEY, timeout=5)
        plan = plan_encoding(client.get_encoding(), encoding_wanted(cfg))
        with pytest.raises(JellyfinError, match="HTTP 403 Forbidden: the API key is not an administrator's"):
            client.post_encoding(plan.document)


def test_hanging_server_times_out_with_a_clear_message(server):
    server.mode = "hang"
    started = time.monotonic()
    message = _error(JellyfinClient(server.url, API_KEY, timeout=0.3))
    assert time.monotonic() - started < 5
    assert f"GET {server.url}{PATH}: no answer within 0.3 s (jellyfin.timeoutSeconds)" in message
    assert API_KEY not in message


def test_a_reply_cut_off_midway_names_the_url(server):
    server.mode = "cut"
    message = _error(JellyfinClient(server.url, API_KEY, timeout=5))
    assert f"GET {server.url}{PATH}: the reply was cut off" in message and API_KEY not in message


def test_wrong_base_url_says_so(server):
    message = _error(JellyfinClient(server.url + "/jellyfin", API_KEY, timeout=5))
    assert "HTTP 404" in message and "check jellyfin.url" in message


def test_nothing_listening_is_a_connection_error_naming_the_url():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    message = _error(JellyfinClient(f"http://127.0.0.1:{port}", API_KEY, timeout=2))
    assert f"GET http://127.0.0.1:{port}{PATH}: cannot connect" in message and API_KEY not in message


def test_missing_key_is_refused_before_any_request():
    with pytest.raises(JellyfinError, match="JELLYFIN_API_KEY"):
        JellyfinClient("http://127.0.0.1:9", "", timeout=1)
