"""Keep the runner's keys out of reach of the code it starts.

An MCP stdio server (`spec.tools.mcpServers[].command`) is tenant code running as the runner's
own uid. Without care it could read the model key, the event-signing key and every other
credential the runner was given: from its inherited environment, or from the runner's
`/proc/<pid>/environ` and `/proc/<pid>/mem`, which Linux lets any process of the same uid read.

Two measures, taken once at start (`take_custody`), before any child exists:

- The runner becomes non-dumpable (`prctl(PR_SET_DUMPABLE, 0)`). The kernel then owns its
  `/proc/<pid>/` files as root and refuses ptrace and `/proc` access to processes of the same
  uid that lack CAP_SYS_PTRACE (the runner container drops every capability). It also means no
  core dump with the keys in it.
- Every OPSPAWN_ variable leaves `os.environ` once the configuration has been copied out, so
  no child inherits one, whichever library starts it. All of the runner's input, secrets
  included (the operator delivers each with a secretKeyRef), is named OPSPAWN_*, and
  `spec.runner.env` may not use that prefix: this rule covers credentials added later without
  a list to keep up to date.

The variables `spec.runner.env` may not set (`opspawn.api.agenttask.REFUSED_ENV_NAMES`: proxies,
CA bundles, SDK endpoints …) are removed too, so a task admitted before a name was refused, or a
runner started by hand, still cannot redirect where the keys are sent; the model SDKs and
http_fetch are also built with explicit endpoints and `trust_env=False`.

The MCP SDK already starts stdio servers with a short list of harmless variables (PATH, HOME,
…); that stays true, and is no longer the only wall.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import re
import sys
from collections.abc import MutableMapping

from opspawn.api.agenttask import REFUSED_ENV_NAMES

_REFUSED = [re.compile(pattern) for pattern, _ in REFUSED_ENV_NAMES]

PR_SET_DUMPABLE = 4
PR_GET_DUMPABLE = 3


class CustodyError(RuntimeError):
    """The runner could not make itself non-dumpable (it refuses to run tenant code then)."""


def take_custody(environ: MutableMapping[str, str] | None = None) -> dict[str, str]:
    """Make the process non-dumpable, move its OPSPAWN_ variables out of `environ` and drop
    the variables the runner must not honour.

    Returns the environment as it was (the runner's configuration is read from that copy).
    Raises CustodyError where the platform cannot make the process non-dumpable.
    """
    environ = os.environ if environ is None else environ
    make_non_dumpable()
    snapshot = dict(environ)
    for name in [name for name in environ if is_refused(name)]:
        del environ[name]
    return snapshot


def is_refused(name: str) -> bool:
    """Whether `name` is a runner setting or a variable the runner must not honour."""
    return any(pattern.search(name) for pattern in _REFUSED)


def make_non_dumpable() -> None:
    """prctl(PR_SET_DUMPABLE, 0), checked with PR_GET_DUMPABLE."""
    if not sys.platform.startswith("linux"):
        raise CustodyError(f"cannot protect the runner's keys on {sys.platform}: Linux only")
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    if libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
        error = ctypes.get_errno()
        raise CustodyError(f"prctl(PR_SET_DUMPABLE, 0) failed: {os.strerror(error)}")
    if libc.prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) != 0:
        raise CustodyError("the runner is still dumpable after prctl(PR_SET_DUMPABLE, 0)")
