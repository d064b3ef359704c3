"""Keep a library the operator never uses out of its process.

kopf imports the synchronous `kubernetes` client whenever it is installed, only to recognise
that client's model objects in what handlers return. The operator hands kopf plain dicts and
talks to the apiserver through kubernetes_asyncio, so in its own process that import is
refused: a None entry in `sys.modules` makes `import kubernetes` raise ImportError, which kopf
handles as "not installed". It saves about 16 MB of resident memory.
"""

from __future__ import annotations

import sys


def refuse_sync_kubernetes_client() -> None:
    """Make `import kubernetes` fail in this process, unless it was imported already."""
    if "kubernetes" not in sys.modules:
        sys.modules["kubernetes"] = None  # type: ignore[assignment]  # the documented refusal
