"""Outbound HTTP for deliveries, behind an SSRF guard.

The guard runs twice:

- when an endpoint is created or its URL changes (``url_validate``): scheme and
  credentials first, https unless ``DEBUG``, then the host must resolve and
  every address it resolves to must be globally routable;
- at connect time, inside the HTTP client's network backend
  (``GuardedNetworkBackend``): the host is resolved again, every address is
  checked again, and the socket connects to one of exactly those checked
  addresses. TLS still uses the host name for SNI and certificate checks. A
  name that resolved to a public address at creation and to 127.0.0.1 later
  (DNS rebinding) is refused here, before any byte is sent.

Blocked: loopback, private (RFC 1918), link-local (incl. 169.254.169.254),
CGNAT 100.64/10, unique-local fc00::/7, multicast, unspecified, broadcast,
reserved and documentation ranges, and the same addresses embedded in IPv6
(IPv4-mapped ``::ffff:a.b.c.d``, IPv4-compatible ``::a.b.c.d``, NAT64, 6to4),
which Python 3.11's ``is_private``/``is_loopback`` do not all catch. Legacy
IPv4 spellings (``2130706433``, ``0x7f.1``, ``127.1``) are read the way the C
library reads them, so they are checked as the address they denote.
Who may be reached is a ``NetworkPolicy`` (``policy_from_settings``):

- ``ALLOW_PRIVATE_NETWORKS`` (``RIVYA_WEBHOOKS_ALLOW_PRIVATE_NETWORKS``) allows
  loopback, private, shared, unique-local and reserved addresses;
- with ``DEBUG`` on (the embedded development default), loopback is allowed
  unless ``ALLOW_LOOPBACK_IN_DEBUG`` is False, so a receiver on 127.0.0.1 works
  under ``make run``; production (``DEBUG`` off) keeps the guard;
- link-local addresses (169.254/16, fe80::/10) and cloud metadata services
  (169.254.169.254, fd00:ec2::254, 100.100.100.200, 168.63.129.16) stay refused
  in every case, unless a network in ``ALLOWED_NETWORKS`` lists them;
- unspecified, multicast and broadcast addresses are never a valid target.

A refusal names the setting that would allow it.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import httpcore
import httpx
from django.conf import settings

from rivya_webhooks.conf import webhooks_settings
from rivya_webhooks.exceptions import (
    BlockedDestinationError,
    InvalidWebhookURLError,
    UnresolvableHostError,
)

logger = logging.getLogger(__name__)

Resolver = Callable[[str], Iterable[str]]
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_UNIQUE_LOCAL = ipaddress.ip_network("fc00::/7")
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
_SIX_TO_FOUR = ipaddress.ip_network("2002::/16")
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")
_BROADCAST = ipaddress.ip_address("255.255.255.255")
# Cloud metadata services outside link-local ranges (AWS IPv6, Alibaba, Azure's wire server).
_METADATA = tuple(ipaddress.ip_network(net) for net in ("fd00:ec2::254/128", "100.100.100.200/32", "168.63.129.16/32"))
PRIVATE_SETTING = "RIVYA_WEBHOOKS_ALLOW_PRIVATE_NETWORKS"
LISTED_SETTING = 'RIVYA_WEBHOOKS["ALLOWED_NETWORKS"]'


@dataclass(frozen=True)
class NetworkPolicy:
    """Which addresses webhooks may reach besides public ones (see the module docstring)."""

    allow_private: bool = False
    allow_loopback: bool = False
    allowed_networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()

    @classmethod
    def plain(cls, allow_private: bool) -> NetworkPolicy:
        return cls(allow_private=allow_private, allow_loopback=allow_private)


def policy_from_settings() -> NetworkPolicy:
    allow_private = bool(webhooks_settings.ALLOW_PRIVATE_NETWORKS)
    loopback = allow_private or (bool(settings.DEBUG) and bool(webhooks_settings.ALLOW_LOOPBACK_IN_DEBUG))
    listed = tuple(ipaddress.ip_network(str(net), strict=False) for net in webhooks_settings.ALLOWED_NETWORKS or ())
    return NetworkPolicy(allow_private=allow_private, allow_loopback=loopback, allowed_networks=listed)


# --- Addresses ------------------------------------------------------------------


def system_resolver(host: str) -> list[str]:
    """The C library's resolver: every address ``host`` resolves to (TCP), in its order."""
    infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if any(ip in net for net in _NAT64) or (ip in _IPV4_COMPATIBLE and int(ip) > 1):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def address_block_reason(
    ip: IPAddress, *, allow_private: bool = False, policy: NetworkPolicy | None = None
) -> str | None:
    """Why ``ip`` may not be a webhook target, or ``None`` when it may."""
    policy = policy or NetworkPolicy.plain(allow_private)
    if isinstance(ip, ipaddress.IPv6Address) and ip.scope_id:
        ip = ipaddress.IPv6Address(str(ip).split("%", 1)[0])
    if ip.is_unspecified:
        return "unspecified address"
    if ip.is_multicast:
        return "multicast address"
    if ip == _BROADCAST:
        return "broadcast address"
    if any(ip.version == net.version and ip in net for net in policy.allowed_networks):
        return None
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(ip)
        if embedded is not None:
            # The packet ends up at the IPv4 address (directly, or through a NAT64 or
            # 6to4 gateway): judge that address, whatever the IPv6 wrapping says.
            reason = address_block_reason(embedded, policy=policy)
            return f"{reason} (IPv4 {embedded} embedded in IPv6)" if reason else None
    if any(ip.version == net.version and ip in net for net in _METADATA):
        return "cloud metadata address"
    if ip.is_link_local:
        return "link-local address"
    if ip.is_loopback:
        return None if policy.allow_loopback else "loopback address"
    return None if policy.allow_private else _private_reason(ip)


def _private_reason(ip: IPAddress) -> str | None:
    if isinstance(ip, ipaddress.IPv4Address) and ip in _CGNAT:
        return "shared (CGNAT) address"
    if isinstance(ip, ipaddress.IPv6Address) and ip in _UNIQUE_LOCAL:
        return "unique-local address"
    if ip.is_private:
        return "private address"
    if ip.is_reserved:
        return "reserved address"
    if not ip.is_global:
        return "address that is not globally routable"
    return None


def _how_to_allow(reason: str) -> str:
    if reason.startswith(("link-local", "cloud metadata")) or "embedded" in reason and "link-local" in reason:
        return f"link-local and cloud metadata addresses are refused unless {LISTED_SETTING} lists them"
    if reason.startswith(("unspecified", "multicast", "broadcast")):
        return "such an address is never a webhook target"
    return f"webhooks are only sent to public addresses unless {PRIVATE_SETTING}=true"


def parse_ip_literal(host: str) -> IPAddress | None:
    """The address a URL host denotes literally (``[::1]``, ``127.0.0.1``, ``2130706433``), else None."""
    host = unquote(host).strip("[]")
    if "%" in host:  # IPv6 zone id, e.g. fe80::1%eth0
        host = host.split("%", 1)[0]
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if host and all(char in "0123456789abcdefxABCDEFX." for char in host):
        # Legacy spellings the C library accepts: 2130706433, 0x7f.1, 017700000001, 127.1.
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


def resolve_and_check(
    host: str, *, resolver: Resolver, allow_private: bool = False, policy: NetworkPolicy | None = None
) -> list[IPAddress]:
    """Every address ``host`` denotes or resolves to, all of them allowed; raises otherwise."""
    policy = policy or NetworkPolicy.plain(allow_private)
    literal = parse_ip_literal(host)
    if literal is not None:
        addresses: list[IPAddress] = [literal]
    else:
        try:
            raw = list(resolver(host.rstrip(".")))
        except (OSError, UnicodeError) as exc:
            raise UnresolvableHostError(f"The host {host!r} does not resolve ({exc}).") from exc
        addresses = []
        for value in raw:
            try:
                addresses.append(ipaddress.ip_address(value))
            except ValueError:
                continue
        if not addresses:
            raise UnresolvableHostError(f"The host {host!r} does not resolve.")
    for ip in addresses:
        reason = address_block_reason(ip, policy=policy)
        if reason:
            message = f"The host {host[:255]!r} resolves to {ip}, a {reason}; {_how_to_allow(reason)}."
            raise BlockedDestinationError(message)
    return addresses


# --- URLs -----------------------------------------------------------------------


def url_check_syntax(url: str, *, require_https: bool | None = None) -> httpx.URL:
    """Scheme, credentials and host of ``url``; https unless DEBUG. Does not resolve."""
    if not isinstance(url, str) or not url or len(url) > 2048:
        raise InvalidWebhookURLError("url must be an absolute http(s) URL of at most 2048 characters.")
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError) as exc:
        raise InvalidWebhookURLError(f"url is not a valid URL ({exc}).") from exc
    if parsed.scheme not in ("http", "https"):
        raise InvalidWebhookURLError("url must use the http or https scheme.")
    if parsed.userinfo:
        raise InvalidWebhookURLError("url must not contain credentials (user:password@).")
    if not parsed.host:
        raise InvalidWebhookURLError("url must name a host.")
    if parsed.port is not None and not 1 <= parsed.port <= 65535:
        raise InvalidWebhookURLError("url's port must be between 1 and 65535.")
    if require_https is None:
        require_https = not settings.DEBUG
    if require_https and parsed.scheme != "https":
        raise InvalidWebhookURLError("url must use https.")
    return parsed


def url_validate(url: str, *, resolver: Resolver | None = None, allow_private: bool | None = None) -> str:
    """The whole creation-time check of an endpoint URL; returns the URL as given.

    ``allow_private`` None: the settings' policy (``policy_from_settings``)."""
    parsed = url_check_syntax(url)
    resolver = resolver or webhooks_settings.RESOLVER
    policy = policy_from_settings() if allow_private is None else NetworkPolicy.plain(allow_private)
    resolve_and_check(parsed.host, resolver=resolver, policy=policy)
    return url


# --- The guarded HTTP client ------------------------------------------------------


class GuardedNetworkBackend(httpcore.SyncBackend):
    """Resolves, checks and connects to the checked address: the connect-time SSRF guard."""

    def __init__(self, *, resolver: Resolver, policy: NetworkPolicy) -> None:
        self.resolver = resolver
        self.policy = policy

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        addresses = resolve_and_check(host, resolver=self.resolver, policy=self.policy)
        last_error: Exception | None = None
        for ip in addresses:
            try:
                # Connect to the address we checked, never to a fresh resolution of the name.
                return super().connect_tcp(str(ip), port, timeout, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last_error = exc
        assert last_error is not None
        raise last_error


class GuardedTransport(httpx.HTTPTransport):
    """httpx's transport over a connection pool whose sockets come from GuardedNetworkBackend."""

    def __init__(self, *, resolver: Resolver, policy: NetworkPolicy, max_connections: int = 100) -> None:
        super().__init__(trust_env=False)
        # httpx has no public hook for the network backend; its transport is a thin
        # wrapper over this pool (httpx 0.28), so we build the pool ourselves.
        self._pool = httpcore.ConnectionPool(
            ssl_context=_ssl_context(),
            max_connections=max_connections,
            max_keepalive_connections=max_connections,
            keepalive_expiry=30.0,
            network_backend=GuardedNetworkBackend(resolver=resolver, policy=policy),
        )


def _ssl_context() -> ssl.SSLContext:
    """certifi's CAs, or the bundle named by ``SSL_CERT_FILE`` (a private CA; proxies stay ignored)."""
    bundle = os.environ.get("SSL_CERT_FILE")
    if bundle:
        return ssl.create_default_context(cafile=bundle)
    return httpx.create_ssl_context(trust_env=False)


def client_build(
    *, resolver: Resolver, allow_private: bool = False, policy: NetworkPolicy | None = None
) -> httpx.Client:
    # trust_env=False: an HTTP(S)_PROXY from the environment would connect on our
    # behalf to whatever the name resolves to there, bypassing the guard.
    return httpx.Client(
        transport=GuardedTransport(resolver=resolver, policy=policy or NetworkPolicy.plain(allow_private)),
        follow_redirects=False,
        trust_env=False,
    )


_clients: dict[tuple[Any, NetworkPolicy], httpx.Client] = {}
_clients_lock = threading.Lock()


def shared_client(*, resolver: Resolver, policy: NetworkPolicy) -> httpx.Client:
    """One keep-alive client per process (and resolver and policy), created lazily after a fork."""
    key = (resolver, policy)
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            client = _clients[key] = client_build(resolver=resolver, policy=policy)
        return client


def close_shared_clients() -> None:
    with _clients_lock:
        for client in _clients.values():
            client.close()
        _clients.clear()


# --- Sending ----------------------------------------------------------------------


@dataclass
class SendResult:
    """What one request produced; ``status_code`` is 0 when no response came back."""

    status_code: int = 0
    error: str = ""
    error_message: str = ""
    body: bytes = b""
    truncated: bool = False
    location: str = ""
    retry_after: str = ""
    latency_ms: int = 0
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.error and 200 <= self.status_code < 300


def _error_class(exc: BaseException) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return "timeout"
    chain: BaseException | None = exc
    while chain is not None:
        if isinstance(chain, ssl.SSLError):
            return "tls"
        chain = chain.__cause__ or chain.__context__
    if isinstance(exc, httpx.ConnectError):
        return "connect"
    return "network"


def _read_capped(response: httpx.Response, *, body_limit: int, deadline: float) -> tuple[bytes, bool]:
    """The response body, at most ``body_limit`` bytes and read until ``deadline``; and whether it was cut short."""
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_raw():
        chunks.append(chunk)
        size += len(chunk)
        # Past the deadline the status is in; a receiver that drips its body is not waited for.
        if size > body_limit or time.monotonic() > deadline:
            return b"".join(chunks)[:body_limit], True
    return b"".join(chunks)[:body_limit], False


def _status_error(status_code: int, location: str) -> tuple[str, str]:
    """``(error, error_message)`` of a response status: empty for a 2xx."""
    if 300 <= status_code < 400:
        return "redirect", f"Redirect to {location or '(no Location)'} not followed."
    if not 200 <= status_code < 300:
        return "http_status", f"HTTP {status_code}."
    return "", ""


def post(
    *,
    client: httpx.Client,
    url: str,
    body: bytes,
    headers: dict[str, str],
    timeout: float,
    body_limit: int,
) -> SendResult:
    """POST ``body`` to ``url`` once: no redirects, bounded time, at most ``body_limit`` bytes read.

    Never raises for network trouble: every outcome is a ``SendResult``.
    """
    started = time.monotonic()
    deadline = started + timeout
    result = SendResult()
    try:
        request = client.build_request("POST", url, content=body, headers=headers, timeout=httpx.Timeout(timeout))
        response = client.send(request, stream=True, follow_redirects=False)
        try:
            result.status_code = response.status_code
            result.location = response.headers.get("location", "")[:2048]
            result.retry_after = response.headers.get("retry-after", "")[:100]
            result.body, result.truncated = _read_capped(response, body_limit=body_limit, deadline=deadline)
        finally:
            response.close()
        result.error, result.error_message = _status_error(result.status_code, result.location)
    except UnresolvableHostError as exc:
        result.error, result.error_message = "dns", str(exc)
    except BlockedDestinationError as exc:
        result.error, result.error_message = "blocked_destination", str(exc)
    except InvalidWebhookURLError as exc:
        result.error, result.error_message = "invalid_url", str(exc)
    except (httpx.HTTPError, httpx.InvalidURL, OSError) as exc:
        result.error = _error_class(exc)
        result.error_message = (f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)[:500]
    result.latency_ms = int((time.monotonic() - started) * 1000)
    return result
