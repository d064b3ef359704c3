"""`opspawn audit`: read the audit trail (tasks, attempts, event timelines, rejected events).

Every command reads; only `migrate` writes (the schema). Tables by default, `--output json` for
machines; `export` always writes JSON Lines. Errors name the problem and exit 1; the database
URL is only ever shown with its password masked.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import click
import sqlalchemy as sa

from opspawn.operator.audit.records import EventRecord, TaskRecord
from opspawn.operator.audit.store import AuditStore, AuditStoreError, redact_url

DEFAULT_DATABASE_URL = "sqlite:///.opspawn/audit.db"
PREVIEW_CHARS = 1200
SUMMARY_CHARS = 120

_DURATION = re.compile(r"(\d+)\s*([smhdw])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


class TimeParam(click.ParamType[datetime, str | datetime]):
    """An ISO 8601 time (UTC unless it says otherwise) or a duration back from now (30m, 7d)."""

    name = "time"

    def convert(
        self, value: str | datetime, param: click.Parameter | None, ctx: click.Context | None
    ) -> datetime:
        if isinstance(value, datetime):
            return value
        text = str(value).strip()
        match = _DURATION.fullmatch(text)
        if match:
            amount, unit = int(match.group(1)), _UNITS[match.group(2)]
            return datetime.now(UTC) - timedelta(**{unit: amount})
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            self.fail(
                f"{text!r} is neither an ISO time (2026-01-31, 2026-01-31T12:00:00Z) "
                "nor a duration (30m, 1h, 7d)",
                param,
                ctx,
            )
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed


TIME = TimeParam()

output_option = click.option(
    "--output",
    "-o",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
    help="Aligned table for people, or JSON.",
)


@click.group("audit")
@click.option(
    "--database-url",
    envvar="DATABASE_URL",
    show_envvar=True,
    default=DEFAULT_DATABASE_URL,
    show_default=True,
    help="The audit store: postgresql://user@host/db, or sqlite:///path for local use.",
)
@click.pass_context
def audit(ctx: click.Context, database_url: str) -> None:
    """Read the audit trail: tasks, attempts, runner event timelines, rejected events."""
    ctx.obj = database_url


def _problem(error: BaseException, url: str) -> str:
    """One line saying what went wrong, without the password (whatever the driver says)."""
    if isinstance(error, sa.exc.DBAPIError) and error.orig is not None:
        reason = str(error.orig)
    elif isinstance(error, sa.exc.SQLAlchemyError):
        reason = type(error).__name__
    else:
        reason = str(error)
    reason = " ".join(reason.split()) or type(error).__name__
    try:
        password = sa.engine.make_url(url).password
    except sa.exc.ArgumentError:
        password = None
    if password:
        reason = reason.replace(str(password), "***")
    return reason


@contextmanager
def _opened(
    ctx: click.Context, *, create: bool = False, schema: bool = True
) -> Iterator[AuditStore]:
    """The store, with database errors turned into one-line messages (exit code 1)."""
    url = str(ctx.obj)
    shown = redact_url(url)
    try:
        store = AuditStore(url, create=create)
    except AuditStoreError as error:
        raise click.ClickException(f"{error} (set --database-url or DATABASE_URL)") from None
    except OSError as error:  # e.g. the SQLite file's directory cannot be created
        raise click.ClickException(f"cannot use the audit database {shown}: {error}") from None
    try:
        if schema and store.schema_revision() is None:
            raise click.ClickException(
                f"the audit database {shown} has no schema yet: the operator creates it at "
                "start (--migrate), or run `opspawn audit migrate`"
            )
        yield store
    except sa.exc.SQLAlchemyError as error:
        raise click.ClickException(
            f"cannot use the audit database {shown}: {_problem(error, url)}"
        ) from None
    finally:
        store.close()


def _resolve(store: AuditStore, ref: str) -> tuple[str, list[str]]:
    """The task uid REF names (NAMESPACE/NAME: its most recent task; else a uid), and the
    uids of older tasks that had the same name."""
    namespace, slash, name = ref.partition("/")
    if slash:
        uids = store.task_uids(namespace, name)
        if not uids:
            raise click.ClickException(f"no task {ref} in the audit store {store.url}")
        return uids[0], uids[1:]
    if not store.attempts(ref):
        raise click.ClickException(f"no task with uid {ref} in the audit store {store.url}")
    return ref, []


def _note_others(ref: str, others: Sequence[str]) -> None:
    if others:
        click.echo(
            f"note: {ref} also named {len(others)} earlier task(s): {', '.join(others)} "
            "(pass a uid instead of NAMESPACE/NAME to see one)",
            err=True,
        )


# --------------------------------------------------------------------------- formatting


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


def _table(headers: Sequence[str], rows: Iterable[Sequence[str]], right: set[str]) -> str:
    """Columns padded to their widest cell; the ones named in `right` right-aligned."""
    body = [list(row) for row in rows]
    widths = [
        max([len(header), *(len(row[i]) for row in body)]) for i, header in enumerate(headers)
    ]
    lines = []
    for row in [list(headers), *body]:
        cells = [
            cell.rjust(width) if header in right else cell.ljust(width)
            for cell, width, header in zip(row, widths, headers, strict=True)
        ]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def _time(value: datetime | None, *, fraction: bool = False) -> str:
    if value is None:
        return "-"
    value = value.astimezone(UTC)
    if fraction:
        return value.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return value.isoformat(timespec="seconds").replace("+00:00", "Z")


def _duration_ms(ms: int | None) -> str:
    if ms is None:
        return "-"
    if ms < 1000:
        return f"{ms}ms"
    seconds = ms / 1000
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, second = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{second:02d}s"
    hours, minute = divmod(minutes, 60)
    return f"{hours}h{minute:02d}m"


def _duration(task: TaskRecord) -> str:
    if task.duration_ms is not None:
        return _duration_ms(task.duration_ms)
    if task.started_at is not None and task.finished_at is not None:
        return _duration_ms(int((task.finished_at - task.started_at).total_seconds() * 1000))
    return "-"


def _cost(value: float | None) -> str:
    if value is None:
        return "-"
    if value == 0:
        return "$0"
    if value < 0.0001:
        return "<$0.0001"
    return f"${value:,.4f}"


def _count(value: int) -> str:
    return f"{value:,}"


def _one_line(text: str, limit: int = SUMMARY_CHARS) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _or_dash(value: object) -> str:
    return "-" if value is None or value == "" else str(value)


# --------------------------------------------------------------------------- list


_LIST_HEADERS = (
    "NAMESPACE",
    "NAME",
    "ATTEMPT",
    "PHASE",
    "REASON",
    "MODEL",
    "STEPS",
    "TOKENS",
    "COST",
    "STARTED",
    "DURATION",
)


@audit.command("list")
@click.option("--namespace", "-n", help="Only tasks of this namespace.")
@click.option("--phase", help="Only attempts in this phase (Succeeded, Failed …).")
@click.option("--model", help="Only this model: a name, or provider/name.")
@click.option("--since", type=TIME, help="Started at or after: ISO time or duration (1h, 7d).")
@click.option("--until", type=TIME, help="Started before: ISO time or duration (1h, 7d).")
@click.option(
    "--limit", type=click.IntRange(min=1), default=50, show_default=True, help="At most this many."
)
@output_option
@click.pass_context
def list_(
    ctx: click.Context,
    *,
    namespace: str | None,
    phase: str | None,
    model: str | None,
    since: datetime | None,
    until: datetime | None,
    limit: int,
    output: str,
) -> None:
    """Task attempts, most recent first (by start; by last update while not started)."""
    with _opened(ctx) as store:
        rows = store.list_tasks(
            namespace=namespace, phase=phase, model=model, since=since, until=until, limit=limit
        )
    if output == "json":
        click.echo(_dumps([row.to_json() for row in rows]))
        return
    if not rows:
        click.echo("no tasks match", err=True)
        return
    click.echo(
        _table(
            _LIST_HEADERS,
            (
                (
                    row.namespace,
                    row.name,
                    str(row.attempt),
                    _or_dash(row.phase),
                    _or_dash(row.reason),
                    row.model or "-",
                    str(row.steps),
                    _count(row.total_tokens),
                    _cost(row.cost_usd),
                    _time(row.started_at),
                    _duration(row),
                )
                for row in rows
            ),
            right={"ATTEMPT", "STEPS", "TOKENS", "COST"},
        )
    )


# --------------------------------------------------------------------------- show


def _usage(attempts: Sequence[TaskRecord]) -> dict[str, Any]:
    """Tokens and cost summed over the attempts; cost is None when no attempt has a price,
    and `cost_complete` says whether every attempt that used tokens had one."""
    costs = [a.cost_usd for a in attempts if a.cost_usd is not None]
    return {
        "input_tokens": sum(a.input_tokens for a in attempts),
        "output_tokens": sum(a.output_tokens for a in attempts),
        "cached_tokens": sum(a.cached_tokens for a in attempts),
        "reasoning_tokens": sum(a.reasoning_tokens for a in attempts),
        "total_tokens": sum(a.total_tokens for a in attempts),
        "cost_usd": sum(costs) if costs else None,
        "cost_complete": all(a.cost_usd is not None for a in attempts if a.total_tokens),
    }


@audit.command("show")
@click.argument("ref", metavar="NAMESPACE/NAME|UID")
@output_option
@click.pass_context
def show(ctx: click.Context, ref: str, output: str) -> None:
    """One task: its attempts, usage, cost and a preview of the result."""
    with _opened(ctx) as store:
        uid, others = _resolve(store, ref)
        attempts = store.attempts(uid)
    _note_others(ref, others)
    usage = _usage(attempts)
    last = attempts[-1]
    if output == "json":
        document = {
            "task_uid": uid,
            "namespace": last.namespace,
            "name": last.name,
            "attempts": [attempt.to_json() for attempt in attempts],
            "usage": usage,
            "earlier_task_uids": others,
        }
        click.echo(_dumps(document))
        return
    outcome = _or_dash(last.phase) + (f" ({last.reason})" if last.reason else "")
    cost = _cost(usage["cost_usd"])
    if usage["cost_usd"] is not None and not usage["cost_complete"]:
        cost += " (some attempts have no price)"
    click.echo(f"Task:      {last.namespace}/{last.name}")
    click.echo(f"UID:       {uid}")
    click.echo(f"Model:     {last.model or '-'}")
    click.echo(f"Outcome:   {outcome}")
    click.echo(f"Attempts:  {len(attempts)}")
    click.echo(
        f"Tokens:    {_count(usage['total_tokens'])} total ({_count(usage['input_tokens'])} "
        f"input, {_count(usage['output_tokens'])} output, {_count(usage['cached_tokens'])} "
        f"cached, {_count(usage['reasoning_tokens'])} reasoning)"
    )
    click.echo(f"Cost:      {cost}")
    click.echo("")
    click.echo(
        _table(
            (
                "ATTEMPT",
                "PHASE",
                "REASON",
                "EXIT",
                "STEPS",
                "TOKENS",
                "COST",
                "STARTED",
                "DURATION",
                "POD",
            ),
            (
                (
                    str(a.attempt),
                    _or_dash(a.phase),
                    _or_dash(a.reason),
                    _or_dash(a.exit_code),
                    str(a.steps),
                    _count(a.total_tokens),
                    _cost(a.cost_usd),
                    _time(a.started_at),
                    _duration(a),
                    _or_dash(a.pod_name),
                )
                for a in attempts
            ),
            right={"ATTEMPT", "EXIT", "STEPS", "TOKENS", "COST"},
        )
    )
    with_result = [a for a in attempts if a.result_text is not None]
    click.echo("")
    if not with_result:
        click.echo("Result:    none")
        return
    final = with_result[-1]
    text = final.result_text or ""
    size = final.result_size_bytes
    details = [f"attempt {final.attempt}"]
    if size is not None:
        details.append(f"{_count(size)} bytes")
        if len(text.encode()) < size:
            details.append("stored cut")
    if final.result_sha256:
        details.append(f"sha256 {final.result_sha256[:12]}…")
    click.echo(f"Result ({', '.join(details)}):")
    preview = text if len(text) <= PREVIEW_CHARS else text[:PREVIEW_CHARS] + "…"
    for line in preview.splitlines() or [""]:
        click.echo(f"  {line}")


# --------------------------------------------------------------------------- events


def _get(payload: dict[str, Any], key: str, default: Any = "") -> Any:
    value = payload.get(key)
    return default if value is None else value


def summarize(event: EventRecord) -> str:
    """One line about an event, for the timeline."""
    p = event.payload
    kind = event.type
    if kind == "started":
        text = f"{_get(p, 'modelProvider')}/{_get(p, 'modelName')}"
        if p.get("podName"):
            text += f" pod {p['podName']}"
        if p.get("runnerVersion"):
            text += f" runner {p['runnerVersion']}"
    elif kind == "step":
        text = f"step {_get(p, 'step')}" + (f": {p['summary']}" if p.get("summary") else "")
    elif kind == "llm_call":
        text = (
            f"step {_get(p, 'step')} {_get(p, 'provider')}/{_get(p, 'model')}: "
            f"{_get(p, 'inputTokens', 0)} in, {_get(p, 'outputTokens', 0)} out, "
            f"{_duration_ms(_get(p, 'durationMs', 0))}"
        )
        if p.get("finishReason"):
            text += f", {p['finishReason']}"
        if p.get("toolCalls"):
            text += f", {p['toolCalls']} tool call(s)"
        if p.get("retries"):
            text += f", {p['retries']} retries"
    elif kind == "tool_call":
        text = f"{_get(p, 'tool')} {_dumps(p.get('arguments'))}"
        if not p.get("allowed", True):
            text = f"REFUSED {text}" + (f": {p['reason']}" if p.get("reason") else "")
    elif kind == "tool_result":
        status = "error" if p.get("isError") else "ok"
        text = f"{_get(p, 'tool')} {status} {_duration_ms(_get(p, 'durationMs', 0))}"
        if p.get("content"):
            text += f": {p['content']}"
    elif kind == "memory":
        text = f"{_get(p, 'operation')} {_get(p, 'count', 0)}"
        if p.get("detail"):
            text += f": {p['detail']}"
    elif kind == "usage":
        text = (
            f"{_count(_get(p, 'totalTokens', 0))} tokens ({_count(_get(p, 'inputTokens', 0))} in, "
            f"{_count(_get(p, 'outputTokens', 0))} out), {_cost(p.get('costUSD'))}"
        )
    elif kind == "log":
        text = f"[{_get(p, 'level', 'info')}] {_get(p, 'message')}"
    elif kind == "result":
        text = f"{_count(_get(p, 'sizeBytes', 0))} bytes, sha256 {str(_get(p, 'sha256'))[:12]}"
        if p.get("text"):
            text += f": {p['text']}"
    elif kind == "error":
        text = str(_get(p, "reason")) + (" (retryable)" if p.get("retryable") else "")
        if p.get("message"):
            text += f": {p['message']}"
    elif kind == "finished":
        text = (
            f"exit {_get(p, 'exitCode')} {_get(p, 'reason')}, {_get(p, 'steps', 0)} steps, "
            f"{_duration_ms(_get(p, 'durationMs', 0))}"
        )
    else:  # a result part is a slice of up to 192 KiB: its size and beginning only
        text = _result_part_summary(p) if kind == "result_part" else _dumps(p)
    if event.truncated:
        text = "(cut to fit) " + text
    return _one_line(text)


def _result_part_summary(payload: dict[str, Any]) -> str:
    """`part 2/6, 196,510 bytes: <its beginning>` (parts count from 1 here)."""
    part = str(payload.get("text") or "")
    return (
        f"part {_get(payload, 'index', 0) + 1}/{_get(payload, 'count', 1)}, "
        f"{_count(len(part.encode()))} bytes: {part[:SUMMARY_CHARS]}"
    )


@audit.command("events")
@click.argument("ref", metavar="NAMESPACE/NAME|UID")
@click.option("--attempt", type=click.IntRange(min=1), help="Only this attempt.")
@output_option
@click.pass_context
def events(ctx: click.Context, ref: str, attempt: int | None, output: str) -> None:
    """The timeline of a task: one line per runner event, by attempt and sequence."""
    with _opened(ctx) as store:
        uid, others = _resolve(store, ref)
        _note_others(ref, others)
        stream = store.events(uid, attempt=attempt)
        if output == "json":
            click.echo("[", nl=False)
            for number, event in enumerate(stream):
                click.echo(("," if number else "") + "\n" + _dumps(event.to_json()), nl=False)
            click.echo("\n]")
            return
        header = f"{'TIME':<24}  {'ATTEMPT':>7}  {'SEQ':>5}  {'TYPE':<11}  SUMMARY"
        click.echo(header)
        for event in stream:
            click.echo(
                f"{_time(event.time, fraction=True):<24}  {event.attempt:>7}  "
                f"{event.sequence:>5}  {event.type:<11}  {summarize(event)}".rstrip()
            )


# --------------------------------------------------------------------------- export


@audit.command("export")
@click.argument("ref", metavar="NAMESPACE/NAME|UID")
@click.pass_context
def export(ctx: click.Context, ref: str) -> None:
    """A task as JSON Lines on stdout: its attempts ("record": "task"), then its events
    ("record": "event") in order."""
    with _opened(ctx) as store:
        uid, others = _resolve(store, ref)
        _note_others(ref, others)
        for record in store.export_task(uid):
            click.echo(_dumps(record))


# --------------------------------------------------------------------------- security


@audit.command("security")
@click.option("--namespace", "-n", help="Only rejections naming this namespace.")
@click.option("--since", type=TIME, help="Received at or after: ISO time or duration (1h, 7d).")
@click.option("--until", type=TIME, help="Received before: ISO time or duration (1h, 7d).")
@click.option(
    "--limit", type=click.IntRange(min=1), default=50, show_default=True, help="At most this many."
)
@output_option
@click.pass_context
def security(
    ctx: click.Context,
    *,
    namespace: str | None,
    since: datetime | None,
    until: datetime | None,
    limit: int,
    output: str,
) -> None:
    """Rejected events (forged or unsigned, wrong subject, stale attempt, unknown task),
    most recent first."""
    with _opened(ctx) as store:
        rows = store.security_events(namespace=namespace, since=since, until=until, limit=limit)
    if output == "json":
        click.echo(_dumps([row.to_json() for row in rows]))
        return
    if not rows:
        click.echo("no rejected events", err=True)
        return
    click.echo(
        _table(
            ("RECEIVED", "COUNT", "REASON", "NAMESPACE", "TASK UID", "SUBJECT", "DETAIL"),
            (
                (
                    _time(row.received_at),
                    _count(row.count),
                    _one_line(row.reason, 40),
                    _one_line(_or_dash(row.namespace), 63),
                    _one_line(_or_dash(row.task_uid), 40),
                    _one_line(row.subject, 80),
                    _one_line(row.detail, 80) or "-",
                )
                for row in rows
            ),
            right={"COUNT"},
        )
    )


# --------------------------------------------------------------------------- prune


@audit.command("prune")
@click.option(
    "--older-than",
    "older_than",
    type=TIME,
    required=True,
    help="Prune what is older than this: a duration (30d, 12h) or an ISO time.",
)
@click.option(
    "--attempts/--no-attempts",
    default=False,
    show_default=True,
    help="Also prune finished attempts (by finish time) with their events.",
)
@click.pass_context
def prune(ctx: click.Context, older_than: datetime, attempts: bool) -> None:
    """Delete security events (by when the last of a row's rejections arrived) and dead
    letters older than --older-than; with --attempts also finished attempts and their events.
    Unfinished attempts are never pruned."""
    with _opened(ctx) as store:
        pruned = store.prune(older_than, attempts=attempts)
    counts = [
        f"{pruned.security_events} security events",
        f"{pruned.dead_letters} dead letters",
    ]
    if attempts:
        counts.append(f"{pruned.attempts} attempts with {pruned.events} events")
    click.echo(f"pruned {', '.join(counts)} older than {_time(older_than)}")


# --------------------------------------------------------------------------- migrate


@audit.command("migrate")
@click.pass_context
def migrate(ctx: click.Context) -> None:
    """Create the schema, or bring it up to date (what the operator does at start)."""
    with _opened(ctx, create=True, schema=False) as store:
        store.migrate()
        revision = store.schema_revision()
    click.echo(f"the audit database {store.url} is at schema revision {revision}")
