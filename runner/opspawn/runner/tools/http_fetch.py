"""`http_fetch`: GET a URL on an allow-listed host, with size and time caps.

Allow-list entries (`spec.tools.builtin[].allowedHosts`) are host names or IP addresses,
optionally with a port: `api.example.com`, `*.example.com` (any subdomain, not the apex),
`10.0.0.5:8080`. An entry without a port admits only the scheme's default port (80 for http,
443 for https); an entry with a port admits exactly that port. Only http and https are
fetched, URLs with credentials are refused, and redirects are followed by hand (at most
MAX_REDIRECTS), each hop checked against the same list. The body is read up to
maxResponseBytes (default 1 MiB) and cut there.

The list is about names: a listed host is trusted wherever DNS points it. Proxy settings from
the environment (HTTPS_PROXY, NO_PROXY) are honoured, as a platform's egress setup expects.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx2

from opspawn.runner.tools.base import ToolDefinition, ToolError, ToolResult

DEFAULT_MAX_RESPONSE_BYTES = 1024 * 1024
MAX_REDIRECTS = 5
DEFAULT_PORTS = {"http": 80, "https": 443}
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
USER_AGENT = "opspawn-runner/http_fetch"


@dataclass(frozen=True)
class HostRule:
    """One allow-list entry."""

    host: str
    """Exact host, or `*.` followed by a domain for its subdomains."""
    port: int | None
    """The only port admitted; None admits the scheme's default port."""

    @classmethod
    def parse(cls, entry: str) -> HostRule:
        host, _, port = entry.strip().lower().rstrip(".").partition(":")
        if not host or (port and not port.isdigit()):
            raise ValueError(f"not a host allow-list entry: {entry!r}")
        return cls(host, int(port) if port else None)

    def admits(self, scheme: str, host: str, port: int) -> bool:
        wildcard = self.host.startswith("*.")
        host_ok = host.endswith(self.host[1:]) if wildcard else host == self.host
        return host_ok and port == (self.port if self.port is not None else DEFAULT_PORTS[scheme])


class HostAllowList:
    """The hosts http_fetch may reach; everything else is refused."""

    def __init__(self, entries: Sequence[str]) -> None:
        self.rules = tuple(HostRule.parse(entry) for entry in entries)

    def check(self, url: str) -> None:
        """ToolError unless `url` is an http(s) URL on an allowed host and port."""
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as error:
            raise ToolError(f"not a valid URL: {error}") from None
        scheme = parts.scheme.lower()
        if scheme not in DEFAULT_PORTS:
            raise ToolError(f"only http and https URLs can be fetched, not {scheme or 'none'!r}")
        if parts.username is not None or parts.password is not None:
            raise ToolError("URLs with credentials are not allowed")
        host = (parts.hostname or "").rstrip(".")
        if not host:
            raise ToolError(f"URL {url!r} has no host")
        port = port if port is not None else DEFAULT_PORTS[scheme]
        if not any(rule.admits(scheme, host, port) for rule in self.rules):
            raise ToolError(f"host {host}:{port} is not in this task's allow-list for http_fetch")


DEFINITION = ToolDefinition(
    name="http_fetch",
    description=(
        "Fetch a URL with HTTP GET and return the status, content type and body text. Only "
        "hosts on the task's allow-list can be reached; long bodies are cut."
    ),
    input_schema={
        "type": "object",
        "properties": {
            "url": {
                "type": "string",
                "minLength": 1,
                "maxLength": 2048,
                "description": "Absolute http or https URL.",
            }
        },
        "required": ["url"],
        "additionalProperties": False,
    },
)


@dataclass(frozen=True)
class _Body:
    status: int
    reason: str
    url: str
    content_type: str
    text: str
    size: int
    truncated: bool


class HttpFetch:
    """The http_fetch tool."""

    definition = DEFINITION

    def __init__(
        self,
        allowed_hosts: Sequence[str],
        *,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        timeout_seconds: float = 30,
    ) -> None:
        self.allow_list = HostAllowList(allowed_hosts)
        self.max_response_bytes = max_response_bytes
        self.timeout_seconds = timeout_seconds

    async def call(self, arguments: Mapping[str, Any]) -> ToolResult:
        body = await self._fetch(str(arguments["url"]))
        cut = f" (cut at {self.max_response_bytes} bytes)" if body.truncated else ""
        header = (
            f"HTTP {body.status} {body.reason}\nURL: {body.url}\n"
            f"Content-Type: {body.content_type or 'unknown'}\nBody: {body.size} bytes{cut}\n\n"
        )
        return ToolResult(header + body.text, is_error=body.status >= 400)

    async def _fetch(self, url: str) -> _Body:
        timeout = httpx2.Timeout(self.timeout_seconds)
        headers = {"User-Agent": USER_AGENT}
        self.allow_list.check(url)
        # trust_env=False: no proxy, CA bundle or netrc from the environment.
        async with httpx2.AsyncClient(
            timeout=timeout, follow_redirects=False, trust_env=False
        ) as client:
            for _ in range(MAX_REDIRECTS + 1):
                try:
                    async with client.stream("GET", url, headers=headers) as response:
                        location = response.headers.get("location")
                        if response.status_code not in REDIRECT_STATUSES or not location:
                            return await self._read(response, url)
                except httpx2.TimeoutException:
                    raise ToolError(
                        f"no answer from {url} within {self.timeout_seconds:g}s"
                    ) from None
                except httpx2.HTTPError as error:
                    raise ToolError(
                        f"fetching {url} failed: {type(error).__name__}: {error}"
                    ) from None
                url = self._follow(url, location)
        raise ToolError(f"more than {MAX_REDIRECTS} redirects")

    def _follow(self, url: str, location: str) -> str:
        """The target of a redirect, if the allow-list admits it."""
        target = urljoin(url, location)
        try:
            self.allow_list.check(target)
        except ToolError as error:
            raise ToolError(f"redirect from {url} to {target} refused: {error}") from None
        return target

    async def _read(self, response: httpx2.Response, url: str) -> _Body:
        chunks: list[bytes] = []
        size = 0
        truncated = False
        async for chunk in response.aiter_bytes():
            room = self.max_response_bytes - size
            if len(chunk) > room:
                chunks.append(chunk[:room])
                size += room
                truncated = True
                break
            chunks.append(chunk)
            size += len(chunk)
        data = b"".join(chunks)
        return _Body(
            status=response.status_code,
            reason=response.reason_phrase,
            url=url,
            content_type=response.headers.get("content-type", ""),
            text=data.decode(response.encoding or "utf-8", errors="replace"),
            size=size,
            truncated=truncated,
        )
