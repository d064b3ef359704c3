"""The audit store: runner events, the task table, rejections and dead letters, in Postgres
(or SQLite for local use, through the same code).

Synchronous SQLAlchemy; the consumer calls `record_batch` from a worker thread
(`asyncio.to_thread`) and acks its messages only after it returned, so a batch that raised is
simply retried: every write here is idempotent.

Idempotency
    `events` is keyed by the event's deterministic id (`<task-uid>/<attempt>/<sequence>`) and
    inserted with `ON CONFLICT (event_id) DO NOTHING ... RETURNING event_id`, so a replayed event
    is not stored twice and the store learns which events of a batch are new. The task rows are
    updated from the new events only: a replayed batch inserts nothing and updates nothing,
    `updated_at` included. On top of that the update is order-independent, so events of one
    attempt arriving over several batches in any order (a redelivery after an ack timeout) give
    the same row: usage is cumulative and the usage event with the highest sequence wins (its
    sequence is kept in `usage_sequence`), likewise the result (`result_sequence`); steps only
    grow (`max`); `started` and `finished` occur once per attempt.

Results larger than their event
    A result too large for its `result` event arrives cut there, followed by `result_part`
    events carrying the full text (`opspawn.api.events.ResultPayload`). The parts are stored as
    events like any other. Whenever a batch brings a new part, or a new cut `result` event, of
    an attempt, the store looks at all the parts of that attempt stored so far (in the same
    transaction, after the upsert): once every index 0 .. count-1 is there (the parts that
    follow the row's result event; of two parts with one index the earlier), their texts
    concatenated become `result_text`, and `result_parts` their count. The concatenation must
    hash to the result's `sha256`; if it does not, the cut text stays (and a warning is
    logged). While the `result` event itself is not stored yet, the concatenation is kept
    unchecked (`result_sha256` is NULL then) and checked when it arrives. When the result is
    structured, `result_structured` becomes the full text parsed. The row is a function of the
    stored events, so any order, any split into batches and any replay give the same row. A
    result whose text held NUL characters cannot pass the check (they are stored as U+FFFD)
    and keeps its cut text. The parts' texts are read only once the set is complete; a result
    that fitted its event costs nothing extra.

Who wins where operator and runner both know a field
    The runner's events win for what the runner observed: model provider and name, pod name,
    started_at and finished_at (a snapshot only fills them while no event has). The operator wins
    for the outcome: phase, reason and exit code (the `finished` event only fills reason and exit
    code while no snapshot has). `None` in a snapshot never erases anything. Whatever order the
    two arrive in, the row ends up the same.

Rejected input is bounded
    Security events are aggregated per source and time window: all rejections with the same
    reason, subject, namespace and task uid received within one `rejection_window_seconds`
    (60 s by default) are one row whose `count` grows. A rejection naming a task that does not
    exist (`UnknownTask`) has an attacker's choice of subject, namespace and uid, so those are
    aggregated by reason and window alone (the row keeps the first one's). A flood therefore
    adds at most a row per source and minute, and `prune` (`opspawn audit prune`) removes
    rows by age.

What the store never refuses
    The consumer retries a failed batch until it commits, so nothing a sender controls may make
    a batch fail for good: NUL characters (which Postgres cannot store in text or JSONB) are
    replaced by U+FFFD in stored text and payloads, lone surrogates likewise; excerpts and
    details of rejections are cut to 4096 characters; an event whose attempt or sequence is too
    large for its column is recorded as a security event (`Unstorable`) instead; aggregates are
    clamped to their column's range.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import event as sa_event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.pool import StaticPool

from opspawn.api.events import (
    EventType,
    FinishedPayload,
    ResultPartPayload,
    ResultPayload,
    RunnerEvent,
    StartedPayload,
    StepPayload,
    UsagePayload,
)
from opspawn.operator.audit.migrations import alembic_config
from opspawn.operator.audit.records import (
    DETAIL_MAX_CHARS,
    EXCERPT_MAX_CHARS,
    DeadLetter,
    EventRecord,
    PruneCounts,
    Rejected,
    SecurityEventRecord,
    TaskRecord,
    TaskSnapshot,
    iso_utc,
)
from opspawn.operator.audit.schema import VERSION_TABLE, UTCDateTime
from opspawn.operator.audit.schema import dead_letters as dead_letters_table
from opspawn.operator.audit.schema import events as events_table
from opspawn.operator.audit.schema import security_events as security_events_table
from opspawn.operator.audit.schema import tasks as tasks_table

logger = logging.getLogger(__name__)

INSERT_CHUNK_ROWS = 1000
"""At most this many events per INSERT statement (one round trip)."""

INSERT_CHUNK_BYTES = 8 * 1024 * 1024
"""On Postgres, also at most about this much JSON per INSERT statement."""

MIGRATION_LOCK_KEY = 0x6F70_7370_6175_6474
"""Postgres advisory lock held while migrating, so that racing operators migrate one by one."""

CONNECT_TIMEOUT_SECONDS = 10

REJECTION_WINDOW_SECONDS = 60
"""Rejections of one source within this many seconds are one `security_events` row."""

SOURCELESS_REASONS = frozenset({"UnknownTask"})
"""Rejections whose subject, namespace and uid are whatever the sender made up: aggregated by
reason and window alone, so inventing new ones cannot add rows."""

TERMINAL_PHASES = ("Succeeded", "Failed", "Cancelled", "TimedOut")

_INT32_MAX = 2**31 - 1
_INT64_MAX = 2**63 - 1
_SQLITE_BEGIN = "opspawn_sqlite_begin"
_USAGE_COLUMNS = (
    "input_tokens",
    "output_tokens",
    "cached_tokens",
    "reasoning_tokens",
    "total_tokens",
    "cost_usd",
    "usage_sequence",
)
_RESULT_COLUMNS = (
    "result_text",
    "result_structured",
    "result_sha256",
    "result_size_bytes",
    "result_sequence",
    "result_parts",
)


class AuditStoreError(Exception):
    """The store cannot be used as configured (bad URL, missing database file)."""


# --------------------------------------------------------------------------- URLs


def normalise_url(url: str) -> URL:
    """The SQLAlchemy URL for `url`: Postgres always through psycopg 3, or SQLite.

    `postgres://` and `postgresql://` (libpq style) become `postgresql+psycopg://`.
    """
    try:
        parsed = make_url(url)
    except sa.exc.ArgumentError:
        raise AuditStoreError(
            "the audit database URL is not a URL (expected postgresql://… or sqlite:///…)"
        ) from None
    backend, _, driver = parsed.drivername.partition("+")
    if backend in ("postgres", "postgresql"):
        if driver not in ("", "psycopg"):
            raise AuditStoreError(
                f"the audit store talks to Postgres through psycopg, not {driver}"
            )
        return parsed.set(drivername="postgresql+psycopg")
    if backend == "sqlite":
        if driver not in ("", "pysqlite"):
            raise AuditStoreError(f"the audit store uses SQLite through sqlite3, not {driver}")
        return parsed
    raise AuditStoreError(
        f"the audit store needs Postgres or SQLite, not {backend!r} "
        "(expected postgresql://… or sqlite:///…)"
    )


def redact_url(url: str | URL) -> str:
    """`url` with its password masked, for messages and logs."""
    try:
        return (make_url(url) if isinstance(url, str) else url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return "<unparseable URL>"


# --------------------------------------------------------------------------- text hygiene


def clean_text(text: str) -> str:
    """`text` as Postgres can store it: NUL and lone surrogates become U+FFFD."""
    if "\x00" in text:
        text = text.replace("\x00", "\ufffd")
    if not text.isascii():
        try:
            text.encode()
        except UnicodeEncodeError:
            text = "".join("\ufffd" if "\ud800" <= char <= "\udfff" else char for char in text)
    return text


def clean_json(value: Any) -> Any:
    """`value` (parsed JSON) with every string, keys included, passed through `clean_text`."""
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, dict):
        return {clean_text(key): clean_json(item) for key, item in value.items()}
    if isinstance(value, list):
        return [clean_json(item) for item in value]
    return value


def _bounded(text: str | None, limit: int) -> str:
    return clean_text((text or "")[:limit])


def _optional_text(text: str | None) -> str | None:
    return None if text is None else clean_text(text)


def _clamp(value: int | None, maximum: int = _INT64_MAX) -> int | None:
    if value is None:
        return None
    return max(-maximum - 1, min(value, maximum))


def _now() -> datetime:
    return datetime.now(UTC)


_dumps = functools.partial(json.dumps, ensure_ascii=False, separators=(",", ":"))


# --------------------------------------------------------------------------- aggregation


@dataclass
class _Attempt:
    """What the new events of one batch say about one attempt."""

    task_uid: str
    attempt: int
    namespace: str
    name: str
    steps: int = 0
    latest: dict[EventType, RunnerEvent] = field(default_factory=dict)
    """The event of each aggregated type with the highest sequence."""
    assemble: bool = False
    """Whether the batch brought a `result_part` or a cut `result`: the full result text may
    now be complete."""

    def add(self, event: RunnerEvent) -> None:
        payload = event.payload
        if isinstance(payload, StepPayload):
            self.steps = max(self.steps, payload.step)
        elif isinstance(payload, FinishedPayload):
            self.steps = max(self.steps, payload.steps)
        elif isinstance(payload, ResultPartPayload) or (
            isinstance(payload, ResultPayload) and event.truncated
        ):
            self.assemble = True
        if event.type in (
            EventType.STARTED,
            EventType.USAGE,
            EventType.RESULT,
            EventType.FINISHED,
        ):
            current = self.latest.get(event.type)
            if current is None or event.sequence > current.sequence:
                self.latest[event.type] = event

    def row(self, now: datetime) -> dict[str, Any]:
        """The `tasks` row these events make; every key is always present (executemany)."""
        row: dict[str, Any] = {
            "task_uid": self.task_uid,
            "attempt": self.attempt,
            "namespace": self.namespace,
            "name": self.name,
            "model_provider": None,
            "model_name": None,
            "pod_name": None,
            "started_at": None,
            "steps": _clamp(self.steps),
            "input_tokens": 0,
            "output_tokens": 0,
            "cached_tokens": 0,
            "reasoning_tokens": 0,
            "total_tokens": 0,
            "cost_usd": None,
            "usage_sequence": None,
            "result_text": None,
            "result_structured": None,
            "result_sha256": None,
            "result_size_bytes": None,
            "result_sequence": None,
            "result_parts": None,
            "exit_code": None,
            "reason": None,
            "duration_ms": None,
            "finished_at": None,
            "updated_at": now,
        }
        started = self.latest.get(EventType.STARTED)
        if started is not None and isinstance(started.payload, StartedPayload):
            row["model_provider"] = started.payload.model_provider
            row["model_name"] = started.payload.model_name
            row["pod_name"] = started.payload.pod_name
            row["started_at"] = started.time
        usage = self.latest.get(EventType.USAGE)
        if usage is not None and isinstance(usage.payload, UsagePayload):
            row["input_tokens"] = _clamp(usage.payload.input_tokens)
            row["output_tokens"] = _clamp(usage.payload.output_tokens)
            row["cached_tokens"] = _clamp(usage.payload.cached_tokens)
            row["reasoning_tokens"] = _clamp(usage.payload.reasoning_tokens)
            row["total_tokens"] = _clamp(usage.payload.total_tokens)
            row["cost_usd"] = usage.payload.cost_usd
            row["usage_sequence"] = usage.sequence
        result = self.latest.get(EventType.RESULT)
        if result is not None and isinstance(result.payload, ResultPayload):
            row["result_text"] = clean_text(result.payload.text)
            row["result_structured"] = clean_json(
                result.payload.model_dump(mode="json", include={"structured"})["structured"]
            )
            row["result_sha256"] = result.payload.sha256
            row["result_size_bytes"] = _clamp(result.payload.size_bytes)
            row["result_sequence"] = result.sequence
        finished = self.latest.get(EventType.FINISHED)
        if finished is not None and isinstance(finished.payload, FinishedPayload):
            row["exit_code"] = _clamp(finished.payload.exit_code, _INT32_MAX)
            row["reason"] = finished.payload.reason
            row["duration_ms"] = _clamp(finished.payload.duration_ms)
            row["finished_at"] = finished.time
        return row


def _attempts(new_events: Iterable[RunnerEvent]) -> list[_Attempt]:
    attempts: dict[tuple[str, int], _Attempt] = {}
    for event in new_events:
        key = (event.task_uid, event.attempt)
        attempt = attempts.get(key)
        if attempt is None:
            attempt = attempts[key] = _Attempt(
                event.task_uid, event.attempt, event.namespace, event.task_name
            )
        attempt.add(event)
    # A fixed order of row locks, so two writers never deadlock on the same tasks.
    return [attempts[key] for key in sorted(attempts)]


@dataclass(frozen=True)
class _Part:
    """A stored `result_part` event, without its text."""

    event_id: str
    sequence: int
    index: int
    count: int


@dataclass(frozen=True)
class _ResultRow:
    """The result columns of a task row that decide how its parts are assembled."""

    sequence: int | None
    sha256: str | None
    parts: int | None
    structured: bool


def _complete_parts(parts: Iterable[_Part], result_sequence: int | None) -> list[_Part] | None:
    """The parts that carry the full text of the result at `result_sequence` (of any result,
    when that is None), in index order; None while some are missing.

    The parts of a result follow it, so parts older than it are ignored. The first of them
    says how many there are; of two parts with one index the earlier wins.
    """
    following = sorted(
        (p for p in parts if result_sequence is None or p.sequence > result_sequence),
        key=lambda p: p.sequence,
    )
    if not following:
        return None
    count = following[0].count
    chosen: dict[int, _Part] = {}
    for part in following:
        if part.count == count:
            chosen.setdefault(part.index, part)
    if len(chosen) < count:
        return None
    return [chosen[index] for index in range(count)]


def _event_row(event: RunnerEvent, now: datetime) -> dict[str, Any]:
    return {
        "event_id": event.id,
        "task_uid": event.task_uid,
        "namespace": event.namespace,
        "task_name": event.task_name,
        "attempt": event.attempt,
        "sequence": event.sequence,
        "type": event.type.value,
        "time": event.time,
        "payload": clean_json(event.payload.model_dump(mode="json", by_alias=True)),
        "truncated": event.truncated,
        "received_at": now,
    }


def _json_chunks(rows: Iterable[dict[str, Any]]) -> Iterator[str]:
    """JSON arrays of the rows (times as ISO text), each at most INSERT_CHUNK_ROWS rows and,
    unless one row alone is larger, about INSERT_CHUNK_BYTES characters."""
    chunk: list[str] = []
    size = 0
    for row in rows:
        text = _dumps(
            {**row, "time": iso_utc(row["time"]), "received_at": iso_utc(row["received_at"])}
        )
        if chunk and (len(chunk) >= INSERT_CHUNK_ROWS or size + len(text) > INSERT_CHUNK_BYTES):
            yield "[" + ",".join(chunk) + "]"
            chunk, size = [], 0
        chunk.append(text)
        size += len(text) + 1
    if chunk:
        yield "[" + ",".join(chunk) + "]"


def _unstorable(event: RunnerEvent, now: datetime) -> Rejected | None:
    """A rejection for an event that no column could hold, else None."""
    if event.attempt <= _INT32_MAX and event.sequence <= _INT64_MAX:
        return None
    return Rejected(
        received_at=now,
        subject=event.subject,
        reason="Unstorable",
        detail=f"attempt {event.attempt} or sequence {event.sequence} is out of range",
        task_uid=event.task_uid,
        namespace=event.namespace,
        event_id=event.id[:256],
        excerpt=event.to_bytes()[:EXCERPT_MAX_CHARS].decode(errors="replace"),
    )


# --------------------------------------------------------------------------- the store


class AuditStore:
    """The audit trail in Postgres (`postgresql://…`) or SQLite (`sqlite:///path`).

    Thread-safe: it holds a connection pool, and every method uses a connection of its own.
    """

    def __init__(
        self,
        url: str,
        *,
        create: bool = True,
        rejection_window_seconds: int = REJECTION_WINDOW_SECONDS,
    ) -> None:
        """`create=False` refuses to create a SQLite database file that does not exist yet
        (what a reader wants); Postgres databases are never created here. Rejections of one
        source within `rejection_window_seconds` are aggregated into one row."""
        self._url = normalise_url(url)
        self._rejection_window = max(1, rejection_window_seconds)
        self._dialect = self._url.get_backend_name()
        self._engine = self._create_engine(create)
        # Writers take SQLite's write lock when they begin, so two writers never deadlock
        # upgrading a read lock; on Postgres the option does nothing.
        self._writer = self._engine.execution_options(**{_SQLITE_BEGIN: "IMMEDIATE"})
        self._insert_events = self._build_insert_events()
        self._upsert_from_events = self._build_upsert_from_events()
        self._upsert_snapshot = self._build_upsert_snapshot()
        self._insert_security_events = self._build_upsert_security_events()
        self._insert_dead_letters = self._insert(dead_letters_table).on_conflict_do_nothing(
            index_elements=[dead_letters_table.c.fingerprint]
        )

    def __repr__(self) -> str:
        return f"AuditStore({self.url!r})"

    @property
    def url(self) -> str:
        """The database URL with its password masked."""
        return redact_url(self._url)

    @property
    def dialect(self) -> str:
        """`postgresql` or `sqlite`."""
        return self._dialect

    def _create_engine(self, create: bool) -> Engine:
        if self._dialect == "postgresql":
            connect_args: dict[str, Any] = {}
            if "connect_timeout" not in self._url.query:
                connect_args["connect_timeout"] = CONNECT_TIMEOUT_SECONDS
            return sa.create_engine(
                self._url,
                pool_pre_ping=True,
                hide_parameters=True,
                json_serializer=_dumps,
                connect_args=connect_args,
            )
        database = self._url.database or ""
        memory = database in ("", ":memory:")
        options: dict[str, Any] = {"connect_args": {"timeout": 30}}
        if memory:
            # One shared connection: an in-memory database exists per connection (tests only).
            options["poolclass"] = StaticPool
            options["connect_args"]["check_same_thread"] = False
        elif not self._url.query.get("uri"):
            path = Path(database)
            if create:
                path.parent.mkdir(parents=True, exist_ok=True)
            elif not path.exists():
                raise AuditStoreError(f"there is no audit database at {path}")
        engine = sa.create_engine(
            self._url, hide_parameters=True, json_serializer=_dumps, **options
        )
        _sqlite_transactions(engine, wal=not memory)
        return engine

    def _insert(self, table: sa.Table) -> postgresql.Insert | sqlite.Insert:
        if self._dialect == "postgresql":
            return postgresql.insert(table)
        return sqlite.insert(table)

    # ------------------------------------------------------------------ schema

    def migrate(self) -> None:
        """Bring the schema up to the newest revision (Alembic `upgrade head`); idempotent.

        Safe when several processes race: on Postgres the whole upgrade is one transaction
        holding an advisory lock (`MIGRATION_LOCK_KEY`), so the others wait and then find the
        schema at head; on SQLite it is one `BEGIN IMMEDIATE` transaction (SQLite's write lock).
        """
        with self._writer.connect() as connection, connection.begin():
            if self._dialect == "postgresql":
                connection.execute(sa.select(sa.func.pg_advisory_xact_lock(MIGRATION_LOCK_KEY)))
            before = _current_revision(connection)
            command.upgrade(alembic_config(connection), "head")
            after = _current_revision(connection)
        if before != after:
            logger.info("audit store %s migrated from %s to %s", self.url, before, after)

    def schema_revision(self) -> str | None:
        """The schema revision of the database; None when it has no schema yet."""
        with self._engine.connect() as connection:
            return _current_revision(connection)

    @staticmethod
    def head_revision() -> str | None:
        """The newest schema revision this code knows."""
        return ScriptDirectory.from_config(alembic_config()).get_current_head()

    # ------------------------------------------------------------------ writes

    def record_batch(
        self,
        events: Sequence[RunnerEvent],
        rejected: Sequence[Rejected] = (),
        dead_letters: Sequence[DeadLetter] = (),
    ) -> None:
        """Store a batch in one transaction: the events (idempotent by event id), one upsert of
        the task row of each attempt that got new events, the rejections and the dead letters.

        The task rows depend only on the events this call actually inserted, and the update is
        order-independent (see the module docstring), so replaying a batch changes nothing.
        Raises whatever the database raises; the batch is then not stored at all.
        """
        now = _now()
        unique: dict[str, RunnerEvent] = {}
        rejections = list(rejected)
        for event in events:
            if event.id in unique:
                continue
            problem = _unstorable(event, now)
            if problem is not None:
                rejections.append(problem)
                continue
            unique[event.id] = event
        ordered = sorted(unique.values(), key=lambda e: (e.task_uid, e.attempt, e.sequence))
        rows = [_event_row(event, now) for event in ordered]
        with self._writer.begin() as connection:
            inserted = self._store_events(connection, rows)
            attempts = _attempts(event for event in ordered if event.id in inserted)
            if attempts:
                connection.execute(
                    self._upsert_from_events, [attempt.row(now) for attempt in attempts]
                )
                self._assemble_results(
                    connection, [(a.task_uid, a.attempt) for a in attempts if a.assemble]
                )
            if rejections:
                connection.execute(
                    self._insert_security_events,
                    _aggregated(rejections, self._rejection_window),
                )
            if dead_letters:
                connection.execute(
                    self._insert_dead_letters, [_dead_letter_row(item) for item in dead_letters]
                )

    def _build_upsert_security_events(self) -> Any:
        """Insert a source's window row, or add to its count and move its last time on."""
        statement = self._insert(security_events_table)
        new, old = statement.excluded, security_events_table.c
        greatest = sa.func.greatest if self._dialect == "postgresql" else sa.func.max
        return statement.on_conflict_do_update(
            index_elements=[old.fingerprint],
            set_={
                "count": old["count"] + new["count"],
                "last_received_at": greatest(
                    sa.func.coalesce(old.last_received_at, old.received_at), new.last_received_at
                ),
            },
        )

    def prune(self, before: datetime, *, attempts: bool = False) -> PruneCounts:
        """Delete what is older than `before`: security events last seen and dead letters
        received before it; with `attempts`, also the finished attempts (by finish time)
        and their events. Unfinished attempts are never pruned."""
        s, d = security_events_table.c, dead_letters_table.c
        with self._writer.begin() as connection:
            security = connection.execute(
                sa.delete(security_events_table).where(
                    sa.func.coalesce(s.last_received_at, s.received_at) < before
                )
            ).rowcount
            letters = connection.execute(
                sa.delete(dead_letters_table).where(d.received_at < before)
            ).rowcount
            pruned_attempts = pruned_events = 0
            if attempts:
                t, e = tasks_table.c, events_table.c
                old = sa.and_(t.finished_at < before, t.phase.in_(TERMINAL_PHASES))
                keys = connection.execute(sa.select(t.task_uid, t.attempt).where(old)).all()
                for start in range(0, len(keys), INSERT_CHUNK_ROWS):
                    chunk = [tuple(key) for key in keys[start : start + INSERT_CHUNK_ROWS]]
                    pruned_events += connection.execute(
                        sa.delete(events_table).where(sa.tuple_(e.task_uid, e.attempt).in_(chunk))
                    ).rowcount
                    pruned_attempts += connection.execute(
                        sa.delete(tasks_table).where(sa.tuple_(t.task_uid, t.attempt).in_(chunk))
                    ).rowcount
        return PruneCounts(
            security_events=security,
            dead_letters=letters,
            attempts=pruned_attempts,
            events=pruned_events,
        )

    def _build_insert_events(self) -> Any:
        """`INSERT INTO events … ON CONFLICT (event_id) DO NOTHING RETURNING event_id`.

        On SQLite an executemany (SQLAlchemy sends it as multi-row VALUES). On Postgres the rows
        travel as one JSON array parameter, expanded by `jsonb_to_recordset`: a multi-row VALUES
        with 11 placeholders per row costs psycopg more time to parse on the client than the
        server needs to insert the rows (about 1 s against 0.2 s for 5,000 events).
        """
        if self._dialect != "postgresql":
            return (
                sqlite.insert(events_table)
                .on_conflict_do_nothing(index_elements=[events_table.c.event_id])
                .returning(events_table.c.event_id)
            )
        columns = []
        for column in events_table.c:
            kind = column.type
            if isinstance(kind, UTCDateTime):
                kind = sa.DateTime(timezone=True)
            elif column.name == "payload":
                kind = postgresql.JSONB()
            columns.append(sa.column(column.name, kind))
        rows = sa.cast(sa.bindparam("rows", type_=sa.Text()), postgresql.JSONB)
        incoming = (
            sa.func.jsonb_to_recordset(rows)
            .table_valued(*columns)
            .render_derived(name="incoming", with_types=True)
        )
        return (
            postgresql.insert(events_table)
            .from_select([column.name for column in columns], sa.select(*incoming.c))
            .on_conflict_do_nothing(index_elements=[events_table.c.event_id])
            .returning(events_table.c.event_id)
        )

    def _store_events(self, connection: Connection, rows: list[dict[str, Any]]) -> set[str]:
        """Insert the rows, a chunk per statement; the ids of those that were new."""
        inserted: set[str] = set()
        if self._dialect != "postgresql":
            for start in range(0, len(rows), INSERT_CHUNK_ROWS):
                chunk = rows[start : start + INSERT_CHUNK_ROWS]
                inserted.update(connection.execute(self._insert_events, chunk).scalars())
            return inserted
        for array in _json_chunks(rows):
            inserted.update(connection.execute(self._insert_events, {"rows": array}).scalars())
        return inserted

    def _assemble_results(self, connection: Connection, keys: list[tuple[str, int]]) -> None:
        """Put the full text of each of these attempts' results into its task row once all its
        `result_part` events are stored (see "Results larger than their event" above).

        Runs after the upsert, in its transaction. One query finds the parts (without their
        texts) and one the rows; the texts are read only for the complete sets.
        """
        if not keys:
            return
        e, t = events_table.c, tasks_table.c
        parts: dict[tuple[str, int], list[_Part]] = {}
        found = connection.execute(
            sa.select(
                e.task_uid,
                e.attempt,
                e.event_id,
                e.sequence,
                e.payload["index"].as_integer(),
                e.payload["count"].as_integer(),
            ).where(
                sa.tuple_(e.task_uid, e.attempt).in_(keys),
                e.type == EventType.RESULT_PART.value,
            )
        )
        for uid, attempt, event_id, sequence, index, count in found:
            parts.setdefault((uid, attempt), []).append(_Part(event_id, sequence, index, count))
        rows = {
            (uid, attempt): _ResultRow(sequence, sha256, assembled, bool(structured))
            for uid, attempt, sequence, sha256, assembled, structured in connection.execute(
                sa.select(
                    t.task_uid,
                    t.attempt,
                    t.result_sequence,
                    t.result_sha256,
                    t.result_parts,
                    t.result_structured.is_not(None),
                ).where(sa.tuple_(t.task_uid, t.attempt).in_(keys))
            )
        }
        for key in keys:
            row = rows.get(key)
            if row is None:
                continue
            complete = _complete_parts(parts.get(key, ()), row.sequence)
            values = None if complete is None else self._full_result(connection, key, row, complete)
            if values is None:
                if row.parts is None:
                    continue  # the row holds the result event's own text: nothing to undo
                values = self._result_event_values(connection, key, row.sequence)
            connection.execute(
                sa.update(tasks_table)
                .where(t.task_uid == key[0], t.attempt == key[1])
                .values(**values)
            )

    def _full_result(
        self, connection: Connection, key: tuple[str, int], row: _ResultRow, parts: list[_Part]
    ) -> dict[str, Any] | None:
        """The result columns for the text the parts carry; None when it fails the check."""
        e = events_table.c
        found = connection.execute(
            sa.select(e.event_id, e.payload["text"].as_string()).where(
                e.event_id.in_([part.event_id for part in parts])
            )
        )
        texts: dict[str, str | None] = {event_id: text for event_id, text in found}
        full = "".join(texts.get(part.event_id) or "" for part in parts)
        if row.sha256 is not None and hashlib.sha256(full.encode()).hexdigest() != row.sha256:
            logger.warning(
                "the %d result parts of %s attempt %d do not hash to the result's sha256; "
                "the audit store keeps the cut result",
                len(parts),
                key[0],
                key[1],
            )
            return None
        values: dict[str, Any] = {"result_text": full, "result_parts": len(parts)}
        if row.structured:  # not JSON after all (never, from the runner): the cut one stays
            with contextlib.suppress(ValueError, RecursionError):
                values["result_structured"] = clean_json(json.loads(full))
        return values

    def _result_event_values(
        self, connection: Connection, key: tuple[str, int], sequence: int | None
    ) -> dict[str, Any]:
        """The result columns as the result event at `sequence` alone fills them (none when
        there is no result event): to undo an assembly that no longer holds."""
        values: dict[str, Any] = {
            "result_text": None,
            "result_structured": None,
            "result_parts": None,
        }
        if sequence is None:
            return values
        e = events_table.c
        payload = connection.execute(
            sa.select(e.payload).where(
                e.task_uid == key[0], e.attempt == key[1], e.sequence == sequence
            )
        ).scalar_one_or_none()
        if isinstance(payload, dict):
            values["result_text"] = payload.get("text")
            values["result_structured"] = payload.get("structured")
        return values

    def record_task(self, snapshot: TaskSnapshot) -> None:
        """Upsert what the operator knows about one attempt; `None` fields change nothing."""
        row = {
            "task_uid": snapshot.task_uid,
            "attempt": snapshot.attempt,
            "namespace": snapshot.namespace,
            "name": snapshot.name,
            "model_provider": snapshot.model_provider,
            "model_name": snapshot.model_name,
            "phase": snapshot.phase,
            "reason": snapshot.reason,
            "exit_code": _clamp(snapshot.exit_code, _INT32_MAX),
            "started_at": snapshot.started_at,
            "finished_at": snapshot.finished_at,
            "spec": None if snapshot.spec is None else clean_json(dict(snapshot.spec)),
            "updated_at": _now(),
        }
        with self._writer.begin() as connection:
            connection.execute(self._upsert_snapshot, row)

    def _build_upsert_from_events(self) -> Any:
        statement = self._insert(tasks_table)
        new = statement.excluded
        old = tasks_table.c

        def newer(sequence: str) -> sa.ColumnElement[bool]:
            return sa.and_(
                new[sequence].is_not(None),
                sa.or_(old[sequence].is_(None), new[sequence] > old[sequence]),
            )

        usage_newer, result_newer = newer("usage_sequence"), newer("result_sequence")
        values: dict[str, Any] = {
            # observed by the runner: the event wins
            "model_provider": sa.func.coalesce(new.model_provider, old.model_provider),
            "model_name": sa.func.coalesce(new.model_name, old.model_name),
            "pod_name": sa.func.coalesce(new.pod_name, old.pod_name),
            "started_at": sa.func.coalesce(new.started_at, old.started_at),
            "finished_at": sa.func.coalesce(new.finished_at, old.finished_at),
            "duration_ms": sa.func.coalesce(new.duration_ms, old.duration_ms),
            # the outcome: the operator's snapshot wins
            "reason": sa.func.coalesce(old.reason, new.reason),
            "exit_code": sa.func.coalesce(old.exit_code, new.exit_code),
            "steps": sa.case((new.steps > old.steps, new.steps), else_=old.steps),
            "updated_at": new.updated_at,
        }
        for name in _USAGE_COLUMNS:
            values[name] = sa.case((usage_newer, new[name]), else_=old[name])
        for name in _RESULT_COLUMNS:
            values[name] = sa.case((result_newer, new[name]), else_=old[name])
        return statement.on_conflict_do_update(
            index_elements=[old.task_uid, old.attempt], set_=values
        )

    def _build_upsert_snapshot(self) -> Any:
        statement = self._insert(tasks_table)
        new = statement.excluded
        old = tasks_table.c
        values: dict[str, Any] = {
            "namespace": new.namespace,
            "name": new.name,
            # observed by the runner: a snapshot only fills the gaps
            "model_provider": sa.func.coalesce(old.model_provider, new.model_provider),
            "model_name": sa.func.coalesce(old.model_name, new.model_name),
            "started_at": sa.func.coalesce(old.started_at, new.started_at),
            "finished_at": sa.func.coalesce(old.finished_at, new.finished_at),
            # the outcome: the operator wins
            "phase": sa.func.coalesce(new.phase, old.phase),
            "reason": sa.func.coalesce(new.reason, old.reason),
            "exit_code": sa.func.coalesce(new.exit_code, old.exit_code),
            "spec": sa.func.coalesce(new.spec, old.spec),
            "updated_at": new.updated_at,
        }
        return statement.on_conflict_do_update(
            index_elements=[old.task_uid, old.attempt], set_=values
        )

    # ------------------------------------------------------------------ reads

    def open_attempts(self, namespaces: Sequence[str] = ()) -> list[tuple[str, int, str, str]]:
        """(task uid, attempt, namespace, name) of every attempt not recorded as finished (of
        these namespaces; empty: all)."""
        t = tasks_table.c
        query = sa.select(t.task_uid, t.attempt, t.namespace, t.name).where(
            sa.or_(t.phase.is_(None), t.phase.not_in(TERMINAL_PHASES))
        )
        if namespaces:
            query = query.where(t.namespace.in_(list(namespaces)))
        with self._engine.connect() as connection:
            return [
                (uid, attempt, ns, name) for uid, attempt, ns, name in connection.execute(query)
            ]

    def list_tasks(
        self,
        *,
        namespace: str | None = None,
        phase: str | None = None,
        model: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int | None = 100,
    ) -> list[TaskRecord]:
        """Attempts, most recent first (by start, or last update when not started).

        `phase` matches case-insensitively; `model` is a model name or `provider/name`;
        `since` (inclusive) and `until` (exclusive) bound the same time.
        """
        t = tasks_table.c
        activity = sa.func.coalesce(t.started_at, t.updated_at)
        query = sa.select(tasks_table)
        if namespace is not None:
            query = query.where(t.namespace == namespace)
        if phase is not None:
            query = query.where(sa.func.lower(t.phase) == phase.lower())
        if model is not None:
            provider, slash, name = model.partition("/")
            if slash:
                query = query.where(t.model_provider == provider, t.model_name == name)
            else:
                query = query.where(t.model_name == model)
        if since is not None:
            query = query.where(activity >= since)
        if until is not None:
            query = query.where(activity < until)
        query = query.order_by(activity.desc(), t.task_uid, t.attempt.desc()).limit(limit)
        with self._engine.connect() as connection:
            return [_task_record(row) for row in connection.execute(query)]

    def task_uids(self, namespace: str, name: str) -> list[str]:
        """Uids of the tasks that had this name (a name can be reused), most recent first."""
        t = tasks_table.c
        latest = sa.func.max(sa.func.coalesce(t.started_at, t.updated_at))
        query = (
            sa.select(t.task_uid)
            .where(t.namespace == namespace, t.name == name)
            .group_by(t.task_uid)
            .order_by(latest.desc(), t.task_uid)
        )
        with self._engine.connect() as connection:
            return list(connection.execute(query).scalars())

    def attempts(
        self,
        task_uid: str | None = None,
        *,
        namespace: str | None = None,
        name: str | None = None,
    ) -> list[TaskRecord]:
        """The attempts of one task, by uid or by namespace and name (then of the most recent
        task of that name); first attempt first; empty when the task is unknown."""
        if task_uid is None:
            if namespace is None or name is None:
                raise ValueError("attempts() needs a task uid, or a namespace and a name")
            uids = self.task_uids(namespace, name)
            if not uids:
                return []
            task_uid = uids[0]
        query = (
            sa.select(tasks_table)
            .where(tasks_table.c.task_uid == task_uid)
            .order_by(tasks_table.c.attempt)
        )
        with self._engine.connect() as connection:
            return [_task_record(row) for row in connection.execute(query)]

    def events(self, task_uid: str, *, attempt: int | None = None) -> Iterator[EventRecord]:
        """The events of one task by attempt and sequence, streamed (a task can have many)."""
        e = events_table.c
        query = sa.select(events_table).where(e.task_uid == task_uid)
        if attempt is not None:
            query = query.where(e.attempt == attempt)
        query = query.order_by(e.attempt, e.sequence)
        with self._engine.connect() as connection:
            for row in connection.execution_options(yield_per=500).execute(query):
                yield EventRecord(**row._mapping)

    def count_events(self, task_uid: str | None = None) -> int:
        """How many events are stored (of one task, or in all)."""
        query = sa.select(sa.func.count()).select_from(events_table)
        if task_uid is not None:
            query = query.where(events_table.c.task_uid == task_uid)
        with self._engine.connect() as connection:
            return int(connection.execute(query).scalar_one())

    def security_events(
        self,
        *,
        namespace: str | None = None,
        task_uid: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int | None = 100,
    ) -> list[SecurityEventRecord]:
        """Rejected events, most recent first."""
        s = security_events_table.c
        query = sa.select(security_events_table)
        if namespace is not None:
            query = query.where(s.namespace == namespace)
        if task_uid is not None:
            query = query.where(s.task_uid == task_uid)
        if since is not None:
            query = query.where(s.received_at >= since)
        if until is not None:
            query = query.where(s.received_at < until)
        query = query.order_by(s.received_at.desc(), s.id.desc()).limit(limit)
        with self._engine.connect() as connection:
            return [SecurityEventRecord(**row._mapping) for row in connection.execute(query)]

    def export_task(self, task_uid: str) -> Iterator[dict[str, Any]]:
        """JSON-able dicts: the task's attempts (`"record": "task"`), then its events
        (`"record": "event"`) in order; streamed."""
        for attempt in self.attempts(task_uid):
            yield {"record": "task", **attempt.to_json()}
        for event in self.events(task_uid):
            yield {"record": "event", **event.to_json()}

    # ------------------------------------------------------------------ lifetime

    def close(self) -> None:
        """Close the pool's connections."""
        self._engine.dispose()

    def __enter__(self) -> AuditStore:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


# --------------------------------------------------------------------------- helpers


def _fingerprinted(row: dict[str, Any]) -> dict[str, Any]:
    """`row` with the SHA-256 of its content (times as UTC ISO text) as `fingerprint`."""
    content = {
        key: iso_utc(value.replace(tzinfo=value.tzinfo or UTC))
        if isinstance(value, datetime)
        else value
        for key, value in row.items()
    }
    digest = hashlib.sha256(_dumps(content, sort_keys=True).encode()).hexdigest()
    return {**row, "fingerprint": digest}


def _security_row(item: Rejected) -> dict[str, Any]:
    return {
        "received_at": item.received_at,
        "subject": _bounded(item.subject, EXCERPT_MAX_CHARS),
        "reason": _bounded(item.reason, 256),
        "detail": _bounded(item.detail, DETAIL_MAX_CHARS),
        "task_uid": _optional_text(item.task_uid and item.task_uid[:256]),
        "namespace": _optional_text(item.namespace and item.namespace[:256]),
        "event_id": _optional_text(item.event_id and item.event_id[:512]),
        "excerpt": _bounded(item.excerpt, EXCERPT_MAX_CHARS),
    }


def _source_window(row: dict[str, Any], window_seconds: int) -> str:
    """The fingerprint of a rejection's source and time window (see the module docstring)."""
    received: datetime = row["received_at"]
    received = received.replace(tzinfo=received.tzinfo or UTC)
    window = int(received.timestamp()) // window_seconds
    if row["reason"] in SOURCELESS_REASONS:
        source: list[Any] = [row["reason"], window]
    else:
        source = [row["reason"], row["subject"], row["namespace"], row["task_uid"], window]
    return hashlib.sha256(_dumps(source).encode()).hexdigest()


def _aggregated(rejections: Iterable[Rejected], window_seconds: int) -> list[dict[str, Any]]:
    """One row per source and window: the first rejection's, counting them all."""
    rows: dict[str, dict[str, Any]] = {}
    for item in sorted(
        rejections, key=lambda r: r.received_at.replace(tzinfo=r.received_at.tzinfo or UTC)
    ):
        row = _security_row(item)
        fingerprint = _source_window(row, window_seconds)
        first = rows.get(fingerprint)
        if first is None:
            rows[fingerprint] = {
                **row,
                "fingerprint": fingerprint,
                "count": 1,
                "last_received_at": row["received_at"],
            }
        else:
            first["count"] += 1
            first["last_received_at"] = row["received_at"]
    return list(rows.values())


def _dead_letter_row(item: DeadLetter) -> dict[str, Any]:
    return _fingerprinted(
        {
            "received_at": item.received_at,
            "subject": _bounded(item.subject, EXCERPT_MAX_CHARS),
            "stream_sequence": _clamp(item.stream_sequence),
            "reason": _bounded(item.reason, DETAIL_MAX_CHARS),
            "excerpt": _bounded(item.excerpt, EXCERPT_MAX_CHARS),
        }
    )


def _task_record(row: sa.Row[Any]) -> TaskRecord:
    return TaskRecord(**row._mapping)


def _current_revision(connection: Connection) -> str | None:
    context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
    return context.get_current_revision()


def _sqlite_transactions(engine: Engine, *, wal: bool) -> None:
    """Real transactions on SQLite: sqlite3's legacy mode neither begins a transaction before
    a SELECT or DDL nor lets us choose IMMEDIATE, so SQLAlchemy emits BEGIN itself. File
    databases use write-ahead logging, so readers (`opspawn audit`) never block the writer."""

    @sa_event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        if wal:
            dbapi_connection.execute("PRAGMA journal_mode=WAL")

    @sa_event.listens_for(engine, "begin")
    def _begin(connection: Connection) -> None:
        mode = connection.get_execution_options().get(_SQLITE_BEGIN, "DEFERRED")
        connection.exec_driver_sql(f"BEGIN {mode}")
