"""The upstream client's plain-asyncio network backend against httpcore's own (anyio), exchange by exchange."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import socket
import ssl
import time

import httpcore
import httpx
import pytest

from rivya_api.chat.providers import openai_compatible
from rivya_api.chat.providers.asyncio_network import HIGH_WATER, AsyncioBackend, _interleaved, use_asyncio_network
from rivya_api.chat.providers.base import ChatProviderError, ChatRequest
from rivya_api.chat.providers.openai_compatible import OpenAICompatibleChatProvider

REQUEST = ChatRequest(messages=[{"role": "user", "content": "hi"}], max_output_tokens=9)


def outcome(fresh_upstream, rivya_settings, asyncio_network: bool, turns: int = 1, **options) -> tuple:
    """What ``turns`` turns through the adapter give (events or error), the time taken, and the connections used."""
    rivya_settings("RIVYA_API", CHAT_UPSTREAM_ASYNCIO_NETWORK=asyncio_network)
    fresh_upstream.clients.clear()
    provider = OpenAICompatibleChatProvider(
        {"base_url": fresh_upstream.base_url, "api_key": "k", "upstream_model": "vendor-x-large", **options}
    )

    async def run() -> list:
        backend = type(openai_compatible._client()._transport._pool._network_backend)
        assert (backend is AsyncioBackend) == asyncio_network
        results = []
        for _ in range(turns):
            try:
                results.append([event async for event in provider.stream(REQUEST)])
            except ChatProviderError as error:
                results.append((error.code, error.status))
        return results

    started = time.monotonic()
    results = asyncio.run(run())
    return results, time.monotonic() - started, len(set(fresh_upstream.clients))


SCRIPTS = {
    "deltas": {},
    "many chunks, paced": {"chunks": [f"c{i}" for i in range(50)], "delay": 0.002},
    "a chunk larger than the read buffer": {"chunks": ["x" * (2 * HIGH_WATER), "y"]},
    "no usage, length": {"usage": None, "finish_reason": "length"},
    "error mid-stream": {"fail_after": 2},
    "cut without finish": {"drop_after": 1},
    "upstream 429": {"status": 429},
    "upstream 500": {"status": 500},
}


@pytest.mark.parametrize("script", SCRIPTS.values(), ids=SCRIPTS.keys())
def test_both_backends_give_the_same_turns_and_reuse_connections(fresh_upstream, rivya_settings, script):
    for name, value in script.items():
        setattr(fresh_upstream.script, name, value)
    plain_turns, plain_seconds, plain_connections = outcome(fresh_upstream, rivya_settings, False, turns=3)
    turns, seconds, connections = outcome(fresh_upstream, rivya_settings, True, turns=3)
    assert (turns, connections) == (plain_turns, plain_connections)
    assert seconds < 2  # nothing waits for a body that does not end
    assert plain_seconds < 2


def test_read_timeout_and_unreachable_upstream_are_the_same_errors(fresh_upstream, rivya_settings):
    fresh_upstream.script.first_delay = 1.0
    for asyncio_network in (False, True):
        results, seconds, _ = outcome(fresh_upstream, rivya_settings, asyncio_network, read_timeout=0.2)
        assert results == [("model_timeout", 504)]
        assert seconds < 0.9
    fresh_upstream.base_url = "http://127.0.0.1:9/v1"
    assert outcome(fresh_upstream, rivya_settings, True)[0] == outcome(fresh_upstream, rivya_settings, False)[0]
    assert outcome(fresh_upstream, rivya_settings, True)[0] == [("model_unavailable", 502)]


@pytest.mark.parametrize("asyncio_network", [True, False])
def test_a_body_that_does_not_end_after_done_does_not_hold_the_turn(fresh_upstream, rivya_settings, asyncio_network):
    fresh_upstream.script.end_delay = 3
    results, seconds, _ = outcome(fresh_upstream, rivya_settings, asyncio_network)
    assert results[0][-1].usage.completion_tokens == 4
    assert seconds < 2


def test_connect_timeout_is_a_connect_timeout(monkeypatch):
    async def run() -> None:
        loop = asyncio.get_running_loop()

        async def unanswered(*args, **kwargs):
            await asyncio.sleep(5)

        monkeypatch.setattr(loop, "sock_connect", unanswered)
        await AsyncioBackend().connect_tcp("127.0.0.1", 9, timeout=0.05)

    started = time.monotonic()
    with pytest.raises(httpcore.ConnectTimeout):
        asyncio.run(run())
    assert time.monotonic() - started < 1


def test_a_closed_idle_connection_is_not_reused(fresh_upstream, rivya_settings):
    """httpcore asks an idle connection whether it is readable before reusing it: a closed one is replaced."""
    rivya_settings("RIVYA_API", CHAT_UPSTREAM_ASYNCIO_NETWORK=True)

    async def run() -> list[int]:
        client = openai_compatible._client()
        statuses = []
        for _ in range(2):
            url = fresh_upstream.base_url + "/chat/completions"
            response = await client.post(url, json={}, headers={"Connection": "close"})
            statuses.append(response.status_code)
        return statuses

    assert asyncio.run(run()) == [200, 200]
    assert len(set(fresh_upstream.clients)) == 2


def _certificate() -> tuple[bytes, bytes]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .sign(key, hashes.SHA256())
    )
    pem = certificate.public_bytes(serialization.Encoding.PEM)
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return pem, private


def test_tls_upstream_through_the_asyncio_backend(tmp_path):
    """TLS goes through loop.start_tls: the certificate is checked, the body arrives whole."""
    pem, key = _certificate()
    (tmp_path / "cert.pem").write_bytes(pem)
    (tmp_path / "key.pem").write_bytes(key)
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    body = b"data: " + b"z" * 100_000 + b"\n\n"

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        await writer.drain()
        writer.close()

    async def run(verify: ssl.SSLContext | bool) -> bytes:
        server = await asyncio.start_server(answer, "127.0.0.1", 0, ssl=server_context)
        port = server.sockets[0].getsockname()[1]
        try:
            async with use_asyncio_network(httpx.AsyncClient(verify=verify)) as client:
                return (await client.get(f"https://127.0.0.1:{port}/")).content
        finally:
            server.close()

    trusted = ssl.create_default_context(cadata=pem.decode())
    assert asyncio.run(run(trusted)) == body
    with pytest.raises(httpx.ConnectError):
        asyncio.run(run(ssl.create_default_context()))  # an unknown issuer is refused


def test_an_unresponsive_address_costs_a_quarter_second_not_the_connect_timeout(monkeypatch):
    """Happy Eyeballs, as httpcore's anyio backend connects: a dead first address (a blackholed
    AAAA record, say) is passed over after 250 ms for the next one."""

    async def run() -> float:
        server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        loop = asyncio.get_running_loop()
        dead = (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("192.0.2.1", port))  # TEST-NET-1
        live = (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))

        async def resolve(*args, **kwargs):
            return [dead, live]

        connect = loop.sock_connect

        async def blackholed(sock, address):
            if address[0] == "192.0.2.1":
                await asyncio.sleep(30)  # no answer, as a dropped SYN
            return await connect(sock, address)

        monkeypatch.setattr(loop, "getaddrinfo", resolve)
        monkeypatch.setattr(loop, "sock_connect", blackholed)
        started = time.monotonic()
        stream = await AsyncioBackend().connect_tcp("upstream.test", port, timeout=3)
        seconds = time.monotonic() - started
        assert stream.get_extra_info("server_addr")[0] == "127.0.0.1"
        await stream.aclose()
        server.close()
        return seconds

    assert 0.2 < asyncio.run(run()) < 1


def test_addresses_alternate_between_families():
    v6 = [(socket.AF_INET6, 1, 6, "", (f"::{n}", 1, 0, 0)) for n in (1, 2)]
    v4 = [(socket.AF_INET, 1, 6, "", (f"10.0.0.{n}", 1)) for n in (1, 2, 3)]
    order = [info[4][0] for info in _interleaved([*v6, *v4])]
    assert order == ["::1", "10.0.0.1", "::2", "10.0.0.2", "10.0.0.3"]


def test_an_httpx_that_moved_the_pool_keeps_its_own_backend(monkeypatch, rivya_settings, caplog):
    """A release of httpx/httpcore that renames what the fast path sets costs the speed-up, not the turns."""
    rivya_settings("RIVYA_API", CHAT_UPSTREAM_ASYNCIO_NETWORK=True)

    def moved(client):
        raise AttributeError("'AsyncHTTPTransport' object has no attribute '_pool'")

    monkeypatch.setattr(openai_compatible, "use_asyncio_network", moved)

    async def run() -> httpx.AsyncClient:
        client = openai_compatible._client()
        await client.aclose()
        return client

    assert isinstance(asyncio.run(run()), httpx.AsyncClient)
    assert "httpcore's own network backend in use" in caplog.text
