"""The runner's entrypoint: `opspawn runner` (or `python -m opspawn.runner`) in a runner Job.

It carries out one attempt of one AgentTask and exits with a documented code
(`opspawn.api.events.RunnerExitCode`; the reasons behind each are in `opspawn.runner.exits`).
All input comes from environment variables, so the same Job runs on a real cluster and on the
process kubelet; docs/runner.md shows a Pod spec that sets them.

Environment
    ================================  ========  ==========================================
    variable                          required  meaning
    ================================  ========  ==========================================
    OPSPAWN_TASK_SPEC                 yes       the AgentTask's spec as JSON (camelCase, as
                                                in the resource); deliver it with valueFrom
                                                (Secret or ConfigMap), never as a literal
                                                value, so Kubernetes does not expand
                                                `$(VAR)` in user text
    OPSPAWN_TASK_UID                  yes       metadata.uid of the AgentTask
    OPSPAWN_TASK_NAME                 yes       metadata.name of the AgentTask
    OPSPAWN_TASK_NAMESPACE            yes       metadata.namespace of the AgentTask
    OPSPAWN_ATTEMPT                   no        attempt number, from 1 (default 1)
    OPSPAWN_TASK_SPEC_DIGEST          no        admitted_spec_digest of the spec the operator
                                                launched (a literal on the Job); a spec
                                                that does not match is refused
    OPSPAWN_NATS_URL                  yes       NATS URL(s), comma-separated (nats://,
                                                tls://, ws://, wss://)
    OPSPAWN_NATS_CREDENTIALS          see note  secret: the task's NATS user (.creds text)
                                                the operator minted; required by a NATS
                                                with auth (the chart's and the dev stack's)
    OPSPAWN_SIGNING_KEY               yes       secret: the per-task event signing key; its
                                                UTF-8 bytes are the HMAC key (>= 16 bytes)
    OPSPAWN_MODEL_API_KEY             see note  secret: the provider API key (from the
                                                spec's apiKeySecretRef); required except
                                                for provider openai-compatible
    OPSPAWN_MODEL_BASE_URL            no        overrides the provider endpoint (tests and
                                                dev point it at the mock model server)
    OPSPAWN_WEAVIATE_URL              see note  long-term memory's Weaviate (http:// or
                                                https://); set by the operator for tasks
                                                with memory.longTerm.enabled
    OPSPAWN_WEAVIATE_GRPC_ADDRESS     no        Weaviate's gRPC host:port (default: the
                                                URL's host, port 50051)
    OPSPAWN_WEAVIATE_API_KEY          see note  secret: the namespace's Weaviate API key
                                                (the operator's Secret opspawn-memory);
                                                without it memory is unavailable
    OPSPAWN_EMBEDDING_MODEL           no        the provider's embedding model for memory
                                                (default: the offline WordLlama embedder)
    OPSPAWN_PRICES                    no        price-table overrides: JSON text, or the
                                                path of a YAML/JSON file; {provider:
                                                {model: {input, output, cached_input}}}
                                                in USD per million tokens
    OPSPAWN_POD_NAME                  no        the Pod's name (fieldRef metadata.name),
                                                reported in the `started` event
    OPSPAWN_LOG_LEVEL                 no        DEBUG, INFO (default), WARNING or ERROR
    OPSPAWN_TERMINATION_MESSAGE_PATH  no        where the termination message goes
                                                (default /dev/termination-log if writable)
    ================================  ========  ==========================================

    Values are stripped of surrounding whitespace (a key file's trailing newline is harmless);
    an empty value counts as unset. An unusable variable ends the runner with exit code 2
    (INVALID_INPUT) and a message naming the variable, never its value. When the task, attempt,
    NATS and signing-key variables are usable, the problem is also published as an `error`
    event before `finished`.

Logs go to stderr; they never contain the API key or the signing key.

Before reading anything the runner makes itself non-dumpable and removes every OPSPAWN_
variable, and every proxy, CA and endpoint variable it must not honour, from its environment
(`opspawn.runner.key_custody`): the code it starts (MCP stdio servers) can neither read its
keys from /proc nor inherit them.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import Mapping

from opspawn.api.events import RunnerExitCode, TerminationMessage
from opspawn.runner.config import (
    MODEL_API_KEY,
    SIGNING_KEY,
    ConfigError,
    TaskInput,
    load_identity,
    load_task,
)
from opspawn.runner.key_custody import CustodyError, take_custody
from opspawn.runner.model.deadline import Deadline
from opspawn.runner.redact import Redactor
from opspawn.runner.termination import write_termination_message

logger = logging.getLogger("opspawn.runner")

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def main(env: Mapping[str, str] | None = None, *, check_config: bool = False) -> int:
    """Carry out one attempt as the environment describes it; returns the exit code.

    With `check_config`, only validate the environment (no connection is made): exit code 0
    when it is usable, 2 otherwise.
    """
    started = time.monotonic()
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT, stream=sys.stderr)
    if env is None:
        try:
            env = take_custody()
        except CustodyError as error:
            logger.error("%s", error)
            message = TerminationMessage.build(RunnerExitCode.INTERNAL_ERROR, message=str(error))
            write_termination_message(message)
            return RunnerExitCode.INTERNAL_ERROR
    try:
        identity = load_identity(env)
    except ConfigError as error:
        logger.error("%s", error)
        if not check_config:
            message = TerminationMessage.build(RunnerExitCode.INVALID_INPUT, message=str(error))
            write_termination_message(message, env)
        return RunnerExitCode.INVALID_INPUT
    logging.getLogger().setLevel(identity.log_level)
    task: TaskInput | ConfigError
    try:
        task = load_task(env)
    except ConfigError as error:
        task = error
    if check_config:
        return _checked(task)
    redact = Redactor([env.get(MODEL_API_KEY, "").strip(), env.get(SIGNING_KEY, "").strip()])
    timeout = task.spec.limits.timeout_seconds if isinstance(task, TaskInput) else None
    deadline = Deadline.never() if timeout is None else Deadline(started + timeout)
    try:
        from opspawn.runner.attempt import Attempt

        outcome = asyncio.run(
            Attempt(identity, task, deadline=deadline, redact=redact, env=env).run()
        )
    except Exception:  # the attempt maps its own failures; this is a bug outside it
        logger.exception("the runner failed")
        message = TerminationMessage.build(RunnerExitCode.INTERNAL_ERROR, message="InternalError")
        write_termination_message(message, env)
        return RunnerExitCode.INTERNAL_ERROR
    detail = f": {redact(outcome.message)}" if outcome.message else ""
    logger.info(
        "finished: %s after %d steps, exit code %d%s",
        outcome.reason.value,
        outcome.steps,
        outcome.exit_code,
        detail,
    )
    return outcome.exit_code


def _checked(task: TaskInput | ConfigError) -> int:
    if isinstance(task, ConfigError):
        logger.error("%s", task)
        return RunnerExitCode.INVALID_INPUT
    logger.info("the runner environment is usable")
    return RunnerExitCode.SUCCEEDED
