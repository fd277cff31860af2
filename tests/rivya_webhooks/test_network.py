"""The SSRF guard: every non-public address form, URL rules, and the connect-time check."""

from __future__ import annotations

import ipaddress

import httpx
import pytest

from rivya_webhooks import network
from rivya_webhooks.exceptions import BlockedDestinationError, InvalidWebhookURLError, UnresolvableHostError
from tests.rivya_webhooks.receiver import Receiver
from tests.rivya_webhooks.support import PUBLIC_IP, StaticResolver

BLOCKED = {
    "127.0.0.1": "loopback",
    "127.255.255.254": "loopback",
    "0.0.0.0": "unspecified",
    "0.1.2.3": "private",
    "10.0.0.1": "private",
    "172.16.0.1": "private",
    "172.31.255.255": "private",
    "192.168.1.1": "private",
    "169.254.169.254": "link-local",
    "100.64.0.1": "CGNAT",
    "100.127.255.254": "CGNAT",
    "224.0.0.1": "multicast",
    "239.255.255.250": "multicast",
    "255.255.255.255": "broadcast",
    "240.0.0.1": "reserved",
    "192.0.2.1": "private",  # TEST-NET-1 documentation range
    "198.18.0.1": "private",  # benchmarking
    "::1": "loopback",
    "::": "unspecified",
    "fe80::1": "link-local",
    "fc00::1": "unique-local",
    "fd12:3456::1": "unique-local",
    "ff02::1": "multicast",
    "ff0e::1": "multicast",
    "2001:db8::1": "private",  # documentation
    # IPv4 inside IPv6: Python 3.11's is_loopback/is_private miss several of these.
    "::ffff:127.0.0.1": "loopback",
    "::ffff:10.1.2.3": "private",
    "::ffff:169.254.169.254": "link-local",
    "::ffff:100.64.0.1": "CGNAT",
    "::127.0.0.1": "loopback",  # IPv4-compatible (deprecated)
    "::10.0.0.1": "private",
    "64:ff9b::7f00:1": "loopback",  # NAT64 of 127.0.0.1
    "64:ff9b::a9fe:a9fe": "link-local",  # NAT64 of 169.254.169.254
    "2002:7f00:1::1": "loopback",  # 6to4 of 127.0.0.1
    "2002:c0a8:101::1": "private",  # 6to4 of 192.168.1.1
}
ALLOWED = ["93.184.215.14", "8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808"]


@pytest.mark.parametrize("address", sorted(BLOCKED))
def test_non_public_addresses_are_blocked(address):
    reason = network.address_block_reason(ipaddress.ip_address(address))
    assert reason is not None
    keyword = {"CGNAT": "CGNAT", "unique-local": "unique-local"}.get(BLOCKED[address], BLOCKED[address])
    assert keyword.lower() in reason.lower() or BLOCKED[address] in ("private", "reserved")


@pytest.mark.parametrize("address", ALLOWED)
def test_public_addresses_pass(address):
    assert network.address_block_reason(ipaddress.ip_address(address)) is None


def test_python_311_misses_that_we_cover():
    # Documents why the guard does its own checks instead of trusting is_global.
    for address in ("::127.0.0.1", "64:ff9b::7f00:1", "2002:7f00:1::1", "224.0.0.1", "ff0e::1"):
        assert network.address_block_reason(ipaddress.ip_address(address)) is not None


def test_allow_private_networks_still_refuses_nonsense_targets():
    for address in ("127.0.0.1", "10.0.0.1", "::ffff:127.0.0.1", "fd00::1"):
        assert network.address_block_reason(ipaddress.ip_address(address), allow_private=True) is None
    for address in ("0.0.0.0", "::", "224.0.0.1", "255.255.255.255", "::ffff:0.0.0.0"):
        assert network.address_block_reason(ipaddress.ip_address(address), allow_private=True) is not None


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("2130706433", "127.0.0.1"),
        ("0x7f000001", "127.0.0.1"),
        ("0x7f.1", "127.0.0.1"),
        ("017700000001", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("[::ffff:127.0.0.1]", "::ffff:7f00:1"),
        ("fe80::1%25eth0", "fe80::1"),
        ("cafe.be", None),
        ("hooks.example.com", None),
    ],
)
def test_ip_literals_in_every_spelling(host, expected):
    literal = network.parse_ip_literal(host)
    assert (str(literal) if literal else None) == expected


@pytest.mark.parametrize(
    "url",
    [
        "ftp://hooks.example.com/x",
        "file:///etc/passwd",
        "gopher://hooks.example.com/",
        "https://user:pass@hooks.example.com/x",
        "https://user@hooks.example.com/x",
        "hooks.example.com/x",
        "https:///nohost",
        "",
        "https://" + "a" * 2100 + ".com/",
    ],
)
def test_scheme_credentials_and_shape_are_checked_first(url):
    resolver = StaticResolver()  # would refuse anything: the syntax check must come first
    with pytest.raises(InvalidWebhookURLError) as info:
        network.url_validate(url, resolver=resolver, allow_private=False)
    assert not isinstance(info.value, (BlockedDestinationError, UnresolvableHostError))
    assert resolver.lookups == []


def test_https_is_required_unless_debug(settings):
    resolver = StaticResolver({"hooks.example.com": [PUBLIC_IP]})
    settings.DEBUG = False
    with pytest.raises(InvalidWebhookURLError, match="https"):
        network.url_validate("http://hooks.example.com/x", resolver=resolver, allow_private=False)
    assert network.url_validate("https://hooks.example.com/x", resolver=resolver, allow_private=False)
    settings.DEBUG = True
    assert network.url_validate("http://hooks.example.com/x", resolver=resolver, allow_private=False)


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1/x",
        "https://2130706433/x",
        "https://0x7f.1/x",
        "https://[::1]/x",
        "https://[::ffff:127.0.0.1]/x",
        "https://[::ffff:169.254.169.254]/latest/meta-data",
        "https://169.254.169.254/latest/meta-data",
        "https://10.0.0.5/x",
        "https://100.64.0.1/x",
        "https://[fd00::1]/x",
        "https://[fe80::1%25eth0]/x",
        "https://224.0.0.1/x",
        "https://0.0.0.0/x",
        "https://localhost/x",
        "https://internal.example.com/x",
        "https://mixed.example.com/x",
    ],
)
def test_non_public_destinations_are_refused(url):
    resolver = StaticResolver(
        {
            "localhost": ["127.0.0.1", "::1"],
            "internal.example.com": ["10.1.2.3"],
            # One bad address among good ones is enough to refuse.
            "mixed.example.com": [PUBLIC_IP, "192.168.0.10"],
        }
    )
    with pytest.raises(BlockedDestinationError):
        network.url_validate(url, resolver=resolver, allow_private=False)


def test_unresolvable_host_is_refused():
    with pytest.raises(UnresolvableHostError):
        network.url_validate("https://no-such-host.invalid/x", resolver=StaticResolver(), allow_private=False)
    with pytest.raises(UnresolvableHostError):
        network.url_validate("https://empty.example.com/x", resolver=StaticResolver({"empty.example.com": []}))


def test_private_networks_allowed_by_setting():
    assert network.url_validate("https://10.0.0.5/x", resolver=StaticResolver(), allow_private=True)


def test_connect_time_guard_refuses_a_name_rebound_to_loopback(settings):
    """Creation saw a public address; at connect time the name points at 127.0.0.1, where a
    real server listens. The request must not reach it."""
    settings.DEBUG = True  # plain http to the local receiver
    with Receiver() as receiver:
        resolver = StaticResolver({"hooks.example.com": [PUBLIC_IP]})
        url = f"http://hooks.example.com:{receiver.port}/hook"
        network.url_validate(url, resolver=resolver, allow_private=False)
        resolver.table["hooks.example.com"] = ["127.0.0.1"]
        client = network.client_build(resolver=resolver, allow_private=False)
        with client:
            result = network.post(client=client, url=url, body=b"{}", headers={}, timeout=5, body_limit=100)
        assert result.error == "blocked_destination"
        assert result.status_code == 0
        assert "127.0.0.1" in result.error_message
        assert receiver.requests == []


def test_connect_time_guard_connects_to_the_checked_address_with_the_name_as_host():
    with Receiver() as receiver:
        resolver = StaticResolver({"receiver.test": ["127.0.0.1"]})
        client = network.client_build(resolver=resolver, allow_private=True)
        with client:
            result = network.post(
                client=client,
                url=f"http://receiver.test:{receiver.port}/hook",
                body=b'{"a":1}',
                headers={"content-type": "application/json"},
                timeout=5,
                body_limit=100,
            )
        assert result.ok, result
        (request,) = receiver.requests
        assert request.headers["host"] == f"receiver.test:{receiver.port}"
        assert request.body == b'{"a":1}'
        assert request.content_length == 7


def test_proxy_environment_is_ignored(monkeypatch):
    # A proxy from the environment would resolve the name itself, past the guard.
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    client = network.client_build(resolver=StaticResolver(), allow_private=False)
    with client:
        assert isinstance(client._transport, network.GuardedTransport)
        assert client._mounts == {}
    assert isinstance(httpx.Client(trust_env=False)._transport, httpx.HTTPTransport)


# --- Issue 21 and 22: what ALLOW_PRIVATE_NETWORKS opens, what DEBUG opens, and what stays shut ---

METADATA_AND_LINK_LOCAL = [
    "169.254.169.254", "169.254.170.2", "169.254.1.1", "fe80::1", "fd00:ec2::254", "100.100.100.200",
    "168.63.129.16", "::ffff:169.254.169.254", "64:ff9b::a9fe:a9fe",
]  # fmt: skip


@pytest.mark.parametrize("address", METADATA_AND_LINK_LOCAL)
def test_link_local_and_metadata_stay_refused_when_private_networks_are_allowed(address):
    reason = network.address_block_reason(ipaddress.ip_address(address), allow_private=True)
    assert reason is not None
    assert "link-local" in reason or "metadata" in reason


def test_link_local_is_allowed_only_when_listed():
    policy = network.NetworkPolicy(allow_private=True, allowed_networks=(ipaddress.ip_network("169.254.10.0/24"),))
    assert network.address_block_reason(ipaddress.ip_address("169.254.10.7"), policy=policy) is None
    assert network.address_block_reason(ipaddress.ip_address("169.254.169.254"), policy=policy) is not None


def test_loopback_receivers_work_in_debug_and_nothing_else_opens(settings, rivya_settings):
    resolver = StaticResolver({"localhost": ["127.0.0.1", "::1"], "intranet.example.com": ["10.0.0.7"]})
    rivya_settings("RIVYA_WEBHOOKS", ALLOW_PRIVATE_NETWORKS=False)
    settings.DEBUG = True
    assert network.url_validate("http://127.0.0.1:8123/hook", resolver=resolver)
    assert network.url_validate("http://localhost:8123/hook", resolver=resolver)
    with pytest.raises(BlockedDestinationError, match="RIVYA_WEBHOOKS_ALLOW_PRIVATE_NETWORKS"):
        network.url_validate("http://intranet.example.com/hook", resolver=resolver)
    with pytest.raises(BlockedDestinationError, match="ALLOWED_NETWORKS"):
        network.url_validate("http://169.254.169.254/latest/meta-data", resolver=resolver)
    settings.DEBUG = False  # production keeps the guard, and says which setting would lift it
    with pytest.raises(BlockedDestinationError, match="RIVYA_WEBHOOKS_ALLOW_PRIVATE_NETWORKS=true"):
        network.url_validate("https://127.0.0.1:8123/hook", resolver=resolver)


@pytest.mark.parametrize(
    "url", ["https://93.184.215.14:0/x", "https://93.184.215.14:99999/x", "https://93.184.215.14:65536/x"]
)
def test_ports_outside_1_to_65535_are_refused(url):
    with pytest.raises(InvalidWebhookURLError, match="port"):
        network.url_validate(url, resolver=StaticResolver(), allow_private=False)


def test_ports_at_the_bounds_pass():
    for port in (1, 65535):
        assert network.url_validate(f"https://93.184.215.14:{port}/x", resolver=StaticResolver(), allow_private=False)
