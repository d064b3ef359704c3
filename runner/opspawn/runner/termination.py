"""Leave the final result where the kubelet picks it up, whatever happened to NATS.

The runner writes a `TerminationMessage` (at most 4096 bytes of JSON) to the file named by
`OPSPAWN_TERMINATION_MESSAGE_PATH`, else to `/dev/termination-log` when that file exists and is
writable (the kubelet mounts it at the container's terminationMessagePath). When neither is
possible the message goes to stderr as the last line of the log, which the kubelet uses with
`terminationMessagePolicy: FallbackToLogsOnError`.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from pathlib import Path

from opspawn.api.events import TerminationMessage

logger = logging.getLogger(__name__)

TERMINATION_MESSAGE_PATH_ENV = "OPSPAWN_TERMINATION_MESSAGE_PATH"
DEFAULT_TERMINATION_MESSAGE_PATH = Path("/dev/termination-log")


def termination_message_path(env: Mapping[str, str] | None = None) -> Path | None:
    """Where the termination message goes, or None when there is no such place."""
    configured = (os.environ if env is None else env).get(TERMINATION_MESSAGE_PATH_ENV)
    if configured:
        return Path(configured)
    default = DEFAULT_TERMINATION_MESSAGE_PATH
    if default.is_file() and os.access(default, os.W_OK):
        return default
    return None


def write_termination_message(
    message: TerminationMessage, env: Mapping[str, str] | None = None
) -> Path | None:
    """Write `message` to the termination-message file; returns the path written.

    Never raises for a missing or unwritable file: the message then goes to stderr and None
    is returned.
    """
    data = message.to_bytes()
    path = termination_message_path(env)
    if path is not None:
        try:
            with path.open("wb") as file:
                file.write(data)
                file.flush()
                os.fsync(file.fileno())
        except OSError as error:
            logger.error("cannot write the termination message to %s: %s", path, error)
        else:
            return path
    sys.stderr.write(data.decode() + "\n")
    sys.stderr.flush()
    return None
