"""Who may talk to ``rave-view``: Origin and Host checks and a session token, in front of every viser route.

Binding to 127.0.0.1 does not keep other web pages out: any page the user visits can open
``ws://127.0.0.1:8080`` from JavaScript, and the browser sends its cookies-free request with that page's
``Origin``. viser accepts every websocket, so such a page could read the whole model (exports, browser splats).
The gate refuses, before viser sees the request:

* a request whose ``Origin`` header (when present) is not the viewer's own page: ``http://`` with the viewer's
  port and one of its host spellings (``localhost``, ``127.0.0.1``/``127.x``, ``[::1]``, the bound address, this
  machine's names), or an origin named by ``--allow-origin``;
* a request whose ``Host`` header is not one of those names while no token is required (DNS rebinding: a page
  at ``evil.example`` whose name later resolves to 127.0.0.1 sends ``Host: evil.example``);
* with a token (required off loopback), any request that carries neither ``?token=…`` nor the cookie set on
  the first good request (the viser client drops the query when it opens its websocket; the cookie follows).

viser creates its ``websockets`` server inside its own thread and exposes no hook for this, so
:func:`gated_viser` wraps ``websockets.asyncio.server.serve`` while the ``ViserServer`` is constructed and
checks that the wrapper was used (fail closed: no server without the gate). The viser range in pyproject.toml
is pinned to the versions this was tested with.
"""

from __future__ import annotations

import contextlib
import hmac
import http
import ipaddress
import secrets
import socket
import sys
import threading
import urllib.parse
from typing import Any, Callable, Iterator

from ..errors import RaveError

_PATCH_LOCK = threading.Lock()
_LOGGED_MAX = 64  # distinct refusal lines printed (a hostile page could otherwise flood the terminal)


def is_loopback_host(host: str) -> bool:
    """True for ``localhost``, 127.0.0.0/8 and ::1 (the addresses only this machine reaches)."""
    h = host.strip("[]").lower()
    if h == "localhost" or h.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(h).is_loopback
    except ValueError:
        return False


def is_wildcard_host(host: str) -> bool:
    return host.strip("[]") in ("", "0.0.0.0", "::")


def normalize_origin(url: str) -> str:
    """``scheme://host[:port]`` in lower case with default ports dropped; RaveError for anything else."""
    try:
        u = urllib.parse.urlsplit(url.strip())
        port = u.port
    except ValueError as e:
        raise RaveError(f"--allow-origin: not an origin URL: {url!r} ({e})") from None
    if u.scheme not in ("http", "https") or not u.hostname or u.path not in ("", "/") or u.query or u.fragment:
        raise RaveError(f"--allow-origin: expected an origin like https://example.com:8443, got {url!r}")
    host = u.hostname.lower()
    host = f"[{host}]" if ":" in host else host
    default = {"http": 80, "https": 443}[u.scheme]
    return f"{u.scheme}://{host}" + (f":{port}" if port is not None and port != default else "")


def _split_host(hostport: str) -> tuple[str, int | None]:
    """('localhost', 8080) from 'localhost:8080'; ('::1', 8080) from '[::1]:8080'."""
    try:
        u = urllib.parse.urlsplit("//" + hostport)
        return (u.hostname or "").lower(), u.port
    except ValueError:
        return "", None


class Gate:
    """The checks for one viewer: ``check(request, port)`` returns a refusal ``(status, text)`` or None."""

    COOKIE = "rave_token_{port}"

    def __init__(
        self, bind_host: str, allow_origins: list[str] | tuple[str, ...] = (), token: str | None = None,
        extra_origin_suffixes: tuple[str, ...] = (), log: Callable[[str], None] | None = None,
    ):  # fmt: skip
        self.bind_host = bind_host
        self.allowed = {normalize_origin(o) for o in allow_origins}
        self.token = token
        self.suffixes = extra_origin_suffixes  # e.g. viser's share-tunnel hosts, only with --share
        self._log = log or (lambda line: print(line, file=sys.stderr, flush=True))
        self._logged: set[str] = set()
        self._names = self._own_names(bind_host)
        self.installed = False  # set when viser's server was created through the gate
        self.refused = 0

    @staticmethod
    def _own_names(bind_host: str) -> set[str]:
        names = {"localhost"}
        h = bind_host.strip("[]").lower()
        if h and not is_wildcard_host(h):
            names.add(h)
        if is_wildcard_host(h) or not is_loopback_host(h):
            with contextlib.suppress(OSError):
                names.update({socket.gethostname().lower(), socket.getfqdn().lower()})
        return names

    def _own_host(self, host: str, token_ok: bool) -> bool:
        """A host name the user's own page may carry: ours, loopback, or (off loopback) an IP literal."""
        if not host:
            return False
        if host in self._names or is_loopback_host(host):
            return True
        try:
            ipaddress.ip_address(host.strip("[]"))
            return not is_loopback_host(self.bind_host)  # an IP the user typed to reach a non-loopback bind
        except ValueError:
            return token_ok  # any other name only once the token proved who is asking

    def _token_in(self, path: str, cookies: str, port: int) -> tuple[bool, bool]:
        """(token given and right, given in the query)."""
        if self.token is None:
            return True, False
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(path).query)
        for value in query.get("token", [])[:4]:
            if hmac.compare_digest(value.encode(), self.token.encode()):
                return True, True
        name = self.COOKIE.format(port=port)
        for part in cookies.split(";")[:64]:
            k, _, v = part.strip().partition("=")
            if k == name and hmac.compare_digest(v.encode(), self.token.encode()):
                return True, False
        return False, False

    def check(self, path: str, headers: Any, port: int) -> tuple[tuple[int, str] | None, bool]:
        """(refusal or None, whether to set the token cookie) for one HTTP or websocket request."""
        token_ok, via_query = self._token_in(path, headers.get("Cookie", "") or "", port)
        proved = token_ok and self.token is not None  # only a real token vouches for an unknown host name
        host, host_port = _split_host(headers.get("Host", "") or "")
        origin = headers.get("Origin")
        if origin is not None:
            if not self._origin_ok(origin, port, host, proved):
                return self._refuse(
                    f"origin {origin!r}", "this viewer only talks to its own page; "
                    "start rave-view with --allow-origin URL to embed it elsewhere",
                ), False  # fmt: skip
        elif not self._own_host(host, proved) or (host_port is not None and host_port != port):
            return self._refuse(f"Host {headers.get('Host')!r}", "not an address of this viewer"), False
        if not token_ok:
            return self._refuse("a request without the token", "open the URL with ?token=… that rave-view printed"), False
        return None, via_query

    def _origin_ok(self, origin: str, port: int, host: str, token_ok: bool) -> bool:
        try:
            o = normalize_origin(origin)
        except RaveError:
            return False
        if o in self.allowed:
            return True
        u = urllib.parse.urlsplit(o)
        name = (u.hostname or "").lower()
        if any(name.endswith(s) for s in self.suffixes) and u.scheme == "https":
            return True
        if u.scheme != "http" or (u.port or 80) != port:
            return False
        if name in self._names or is_loopback_host(name):
            return True
        # off loopback the user reaches us by an address we cannot list (NAT, several NICs): the page's own
        # origin then equals the Host it asked, and only the token tells the user's page from a rebinding one
        return name == host and self._own_host(name, token_ok)

    def _refuse(self, what: str, why: str) -> tuple[int, str]:
        self.refused += 1
        line = f"rave-view: refused {what}: {why}"
        if line not in self._logged and len(self._logged) < _LOGGED_MAX:
            self._logged.add(line)
            self._log(line)
        return int(http.HTTPStatus.FORBIDDEN), f"403 Forbidden: {why}\n"

    def cookie(self, port: int) -> str:
        return f"{self.COOKIE.format(port=port)}={self.token}; Path=/; HttpOnly; SameSite=Strict"

    def wrap(self, process_request: Callable | None) -> Callable:
        """A websockets ``process_request`` that runs the checks, then viser's own handler."""

        def gated(connection, request):
            port = int(connection.local_address[1])  # the bound port (viser may move on from a taken one)
            refusal, set_cookie = self.check(request.path, request.headers, port)
            if refusal is not None:
                return connection.respond(http.HTTPStatus(refusal[0]), refusal[1])
            response = process_request(connection, request) if process_request is not None else None
            if set_cookie and response is not None:
                response.headers["Set-Cookie"] = self.cookie(port)
            return response

        return gated


@contextlib.contextmanager
def gated_viser(gate: Gate) -> Iterator[None]:
    """While viser builds its server, route every ``websockets`` serve through ``gate`` (see module docstring)."""
    import websockets.asyncio.server as wss

    original = wss.serve

    def serve(handler, host=None, port=None, *args, process_request=None, **kwargs):
        gate.installed = True
        return original(handler, host, port, *args, process_request=gate.wrap(process_request), **kwargs)

    with _PATCH_LOCK:
        wss.serve = serve
        try:
            yield
        finally:
            wss.serve = original
    if not gate.installed:
        raise RuntimeError("viser did not create its server through websockets.asyncio.server.serve: "
                           "the Origin/token gate could not be installed (unsupported viser version)")


def new_token() -> str:
    return secrets.token_urlsafe(24)


__all__ = ["Gate", "gated_viser", "is_loopback_host", "is_wildcard_host", "new_token", "normalize_origin"]
