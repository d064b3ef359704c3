"""Reading and verifying events from bytes a tenant controls: whatever arrives, the reader
answers with an event or an EventVerificationError, never another exception."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from opspawn.api import events as ev

KEY = ev.SigningKey(b"k" * 32)
TASK = ev.TaskRef(namespace="team-a", task_name="t", task_uid="uid-1", attempt=1)


def _signed_bytes(sequence: int = 1, message: str = "hello") -> bytes:
    event = ev.build_event(TASK, sequence, ev.LogPayload(message=message))
    return ev.sign_event(event, KEY).to_bytes()


def _resigned(raw: dict[str, Any]) -> bytes:
    """`raw` (an event without signature) signed as a runner holding the key would."""
    body = ev.canonical_json(raw)
    return json.dumps({**raw, "signature": KEY.sign(body)}).encode()


def _outcome(data: bytes) -> ev.RunnerEvent | ev.EventVerificationError:
    try:
        return ev.verify_event(data, KEY, subject=TASK.subject)
    except ev.EventVerificationError as error:
        return error


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2048))
def test_any_bytes_are_an_event_or_a_verification_error(data: bytes) -> None:
    assert isinstance(_outcome(data), ev.EventVerificationError)


@settings(max_examples=80, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.text(max_size=12), json_values, max_size=6))
def test_any_json_object_is_refused_unless_signed(document: dict[str, Any]) -> None:
    data = json.dumps(document, allow_nan=True).encode()
    assert isinstance(_outcome(data), ev.EventVerificationError)


@settings(max_examples=100, suppress_health_check=[HealthCheck.too_slow])
@given(json_values)
def test_a_signing_runner_cannot_make_the_verifier_raise(payload: Any) -> None:
    """The task's own runner is tenant code and holds the key: any payload it signs ends as
    an event or an EventVerificationError."""
    raw = json.loads(_signed_bytes())
    raw.pop("signature")
    raw["payload"] = {"message": payload}
    try:
        data = _resigned(raw)
    except ValueError:  # NaN/Infinity: the runner cannot even sign it canonically
        data = json.dumps(raw, allow_nan=True).encode()
    outcome = _outcome(data)
    assert isinstance(outcome, ev.RunnerEvent | ev.EventVerificationError)


@settings(max_examples=100)
@given(st.integers(min_value=0), st.integers(min_value=0, max_value=255))
def test_a_flipped_byte_is_never_believed_as_another_event(position: int, value: int) -> None:
    original = _signed_bytes(message="the original text")
    index = position % len(original)
    tampered = original[:index] + bytes([value]) + original[index + 1 :]
    outcome = _outcome(tampered)
    if isinstance(outcome, ev.RunnerEvent):
        assert outcome.to_bytes() == original  # only a no-op change passes


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"[" * 100_000 + b"]" * 100_000, "nested"),
        (b'{"a":' * 70 + b"1" + b"}" * 70, "nested deeper"),
        (b'{"id": 1, "id": 2}', "duplicate key"),
        (b'{"a": NaN}', "not a JSON number"),
        (b'{"a": -Infinity}', "not a JSON number"),
        (b'{"a": 1e999}', "range of a float"),
        (b'{"a": ' + b"9" * 5000 + b"}", "more than"),
        (b'{"a": "\xff\xfe"}', "not UTF-8"),
        ('{"a": 1}'.encode("utf-16"), "not UTF-8"),
        (b"\xef\xbb\xbf{}", "not JSON"),
        (b"[]", "not a JSON object"),
        (b"", "not JSON"),
        (b" " * (ev.MAX_EVENT_BYTES + 1), "exceeds"),
    ],
)
def test_unreadable_messages_are_named(data: bytes, reason: str) -> None:
    with pytest.raises(ev.UnreadableEventError, match=reason):
        ev.read_event_json(data)


@pytest.mark.parametrize(
    "signature",
    ["\ud800" * 64, "A" * 64, "0" * 63, "g" * 64, 1, None, ["0" * 64], ""],
)
def test_odd_signatures_are_refused(signature: Any) -> None:
    raw = json.loads(_signed_bytes())
    raw["signature"] = signature
    data = json.dumps(raw).encode()
    with pytest.raises(ev.EventVerificationError, match="sign"):
        ev.verify_event(data, KEY)


def test_a_signed_but_deeply_nested_payload_is_refused() -> None:
    raw = json.loads(_signed_bytes())
    raw.pop("signature")
    deep: Any = "x"
    for _ in range(ev.MAX_NESTING_DEPTH):
        deep = [deep]
    raw["payload"] = {"message": "m", "fields": deep}
    with pytest.raises(ev.UnreadableEventError, match="nested deeper"):
        ev.verify_event(_resigned(raw), KEY)


def test_a_legitimate_event_still_reads() -> None:
    event = ev.verify_event(_signed_bytes(3), KEY, subject=TASK.subject)
    assert event.sequence == 3 and event.payload == ev.LogPayload(message="hello")


@pytest.mark.parametrize("depth", [ev.MAX_NESTING_DEPTH, 150])
def test_the_runner_never_publishes_an_event_the_reader_refuses_as_too_deep(depth: int) -> None:
    """A model can send tool arguments of any depth; the event keeps them as JSON text below
    the limit instead of being dead-lettered by the operator."""
    arguments: Any = {"leaf": True}
    for _ in range(depth):
        arguments = {"a": arguments}
    payload = ev.ToolCallPayload(call_id="c1", tool="calculator", arguments=arguments, allowed=True)
    event = ev.sign_event(ev.build_event(TASK, 1, payload), KEY)

    read = ev.verify_event(event.to_bytes(), KEY, subject=TASK.subject)
    assert read.truncated is True
    text = json.dumps(read.payload.model_dump(mode="json"))
    assert '\\"leaf\\": true' in text  # the deep part survives as text
