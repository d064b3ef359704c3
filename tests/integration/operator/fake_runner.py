"""Stands in for `opspawn runner` in operator tests: behaves as the task's `inputs` say.

    FAKE_EXIT   exit code (default 0)
    FAKE_SLEEP  seconds to sleep first (default 0); SIGTERM ends the sleep with exit 143
    FAKE_ONCE   with FAKE_EXIT: exit so only on attempt 1, then succeed

With the env variable FAKE_LOG set, it appends `start|end <task name> <time ns>` lines there.
It leaves a termination message like the runner's: the result is the goal exactly as received,
and `keyLength` says whether the API key arrived (never the key itself).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time

from opspawn.api.events import RunnerExitCode, TerminationMessage

spec = json.loads(os.environ["OPSPAWN_TASK_SPEC"])
inputs = spec.get("inputs") or {}
attempt = int(os.environ.get("OPSPAWN_ATTEMPT", "1"))
log_path = os.environ.get("FAKE_LOG")
task_name = os.environ["OPSPAWN_TASK_NAME"]


def log(what: str) -> None:
    if log_path:
        with open(log_path, "a") as handle:
            handle.write(f"{what} {task_name} {time.time_ns()}\n")


log("start")
stop = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: stop.set())

exit_code = int(inputs.get("FAKE_EXIT", "0"))
if inputs.get("FAKE_ONCE") and attempt > 1:
    exit_code = 0
if stop.wait(float(inputs.get("FAKE_SLEEP", "0"))):
    exit_code = RunnerExitCode.TERMINATED

code = RunnerExitCode(exit_code)
key_length = len(os.environ.get("OPSPAWN_MODEL_API_KEY", ""))
message = TerminationMessage.build(
    code,
    result=json.dumps({"goal": spec["goal"], "keyLength": key_length, "attempt": attempt})
    if code == RunnerExitCode.SUCCEEDED
    else None,
    message="" if code == RunnerExitCode.SUCCEEDED else f"FakeFailure: exit {exit_code} as asked",
)
with open(os.environ["OPSPAWN_TERMINATION_MESSAGE_PATH"], "wb") as handle:
    handle.write(message.to_bytes())
log("end")
sys.exit(exit_code)
