"""Keep a library the runner does not need out of its process: its import is start-up time.

nats-py imports aiohttp, about 100 ms here, for its WebSocket transport alone. Unless one of
the runner's NATS URLs is `ws://` or `wss://`, that import is refused: a None entry in
`sys.modules` makes `import aiohttp` raise ImportError, which nats-py treats as "not
installed", and so does google-genai (the runner gives it an httpx client of its own).
"""

from __future__ import annotations

import sys

WEBSOCKET_SCHEMES = ("ws://", "wss://")


def refuse_aiohttp_unless_websocket(nats_urls: str) -> None:
    """Make importing aiohttp fail in this process, unless imported already or a NATS URL of
    the comma-separated `nats_urls` needs the WebSocket transport."""
    if any(url.strip().startswith(WEBSOCKET_SCHEMES) for url in nats_urls.split(",")):
        return
    if "aiohttp" not in sys.modules:
        sys.modules["aiohttp"] = None  # type: ignore[assignment]  # the documented refusal
