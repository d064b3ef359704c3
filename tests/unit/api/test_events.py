"""The runner-event wire contract: ids, subjects, payload caps, signatures, exit codes."""

from __future__ import annotations

import hashlib
import json
import time
from datetime import UTC, datetime

import pytest
from pydantic import JsonValue

from opspawn.api import events as ev

KEY = ev.SigningKey(b"k" * 32)
OTHER_KEY = ev.SigningKey(b"o" * 32)
TASK = ev.TaskRef(
    namespace="team-a",
    task_name="summarise.news",
    task_uid="0b7f7c2e-1b2c-4d3e-9f00-123456789abc",
    attempt=2,
)


def signed(payload: ev.EventPayload, sequence: int = 1) -> ev.RunnerEvent:
    return ev.sign_event(ev.build_event(TASK, sequence, payload), KEY)


def test_event_carries_identity_and_deterministic_id() -> None:
    when = datetime(2026, 1, 2, 3, 4, 5, 600_000, tzinfo=UTC)
    event = ev.build_event(TASK, 7, ev.StepPayload(step=3, summary="plan"), time=when)
    again = ev.build_event(TASK, 7, ev.StepPayload(step=3, summary="other"))
    assert event.id == again.id == f"{TASK.task_uid}/2/7"
    wire = json.loads(event.to_bytes())
    assert wire["schemaVersion"] == 1
    assert wire["taskUid"] == TASK.task_uid
    assert wire["namespace"] == "team-a"
    assert wire["taskName"] == "summarise.news"
    assert wire["attempt"] == 2
    assert wire["sequence"] == 7
    assert wire["type"] == "step"
    assert wire["time"] == "2026-01-02T03:04:05.600000Z"
    assert wire["payload"] == {"step": 3, "summary": "plan"}
    assert wire["truncated"] is False


def test_subjects_and_stream() -> None:
    assert TASK.subject == f"opspawn.events.team-a.{TASK.task_uid}"
    assert ev.parse_subject(TASK.subject) == ("team-a", TASK.task_uid)
    assert ev.stream_subjects() == ["opspawn.events.>"]
    with pytest.raises(ValueError, match="subject token"):
        ev.event_subject("team.a", "uid")
    with pytest.raises(ValueError, match="not an event subject"):
        ev.parse_subject("opspawn.events.team-a")
    with pytest.raises(ValueError, match="not an event subject"):
        ev.parse_subject("other.team-a.uid")


def test_signed_event_round_trips() -> None:
    event = signed(ev.UsagePayload(input_tokens=10, output_tokens=5, total_tokens=15, cost_usd=0.1))
    decoded = ev.verify_event(event.to_bytes(), KEY, subject=TASK.subject)
    assert decoded == event
    assert isinstance(decoded.payload, ev.UsagePayload)
    assert json.loads(event.to_bytes())["payload"]["costUSD"] == 0.1


def test_wrong_key_fails_verification() -> None:
    data = signed(ev.LogPayload(message="hello")).to_bytes()
    with pytest.raises(ev.EventVerificationError, match="does not match"):
        ev.verify_event(data, OTHER_KEY)


def test_forged_content_fails_verification() -> None:
    wire = json.loads(signed(ev.LogPayload(message="hello")).to_bytes())
    wire["payload"]["message"] = "forged"
    with pytest.raises(ev.EventVerificationError, match="does not match"):
        ev.verify_event(json.dumps(wire).encode(), KEY)


def test_forged_signature_fails_verification() -> None:
    wire = json.loads(signed(ev.LogPayload(message="hello")).to_bytes())
    wire["signature"] = "0" * 64
    with pytest.raises(ev.EventVerificationError, match="does not match"):
        ev.verify_event(json.dumps(wire).encode(), KEY)


def test_unsigned_event_is_refused() -> None:
    data = ev.build_event(TASK, 1, ev.LogPayload(message="hello")).to_bytes()
    with pytest.raises(ev.EventVerificationError, match="not signed"):
        ev.verify_event(data, KEY)


def test_signature_ignores_key_order_and_whitespace() -> None:
    wire = json.loads(signed(ev.LogPayload(message="héllo")).to_bytes())
    reordered = json.dumps(dict(reversed(list(wire.items()))), indent=2).encode()
    assert ev.verify_event(reordered, KEY).payload == ev.LogPayload(message="héllo")


def test_event_on_another_tasks_subject_is_refused() -> None:
    data = signed(ev.LogPayload(message="hello")).to_bytes()
    with pytest.raises(ev.EventVerificationError, match="arrived on subject"):
        ev.verify_event(data, KEY, subject="opspawn.events.team-a.other-uid")


def test_signed_but_invalid_event_is_refused() -> None:
    wire = json.loads(signed(ev.LogPayload(message="hello")).to_bytes())
    wire.pop("signature")
    wire["schemaVersion"] = 99
    wire["signature"] = KEY.sign(ev.canonical_json(wire))
    with pytest.raises(ev.EventVerificationError, match="schema"):
        ev.verify_event(json.dumps(wire).encode(), KEY)


def test_payload_must_match_event_type() -> None:
    wire = json.loads(signed(ev.LogPayload(message="hello")).to_bytes())
    wire["type"] = "step"
    wire.pop("signature")
    wire["signature"] = KEY.sign(ev.canonical_json(wire))
    with pytest.raises(ev.EventVerificationError, match="schema"):
        ev.verify_event(json.dumps(wire).encode(), KEY)


def test_oversized_and_malformed_data_is_refused() -> None:
    with pytest.raises(ev.EventVerificationError, match="exceeds"):
        ev.verify_event(b" " * (ev.MAX_EVENT_BYTES + 1), KEY)
    with pytest.raises(ev.EventVerificationError, match="not JSON"):
        ev.verify_event(b"{", KEY)
    with pytest.raises(ev.EventVerificationError, match="not a JSON object"):
        ev.verify_event(b"[]", KEY)


def test_key_never_shows() -> None:
    secret = b"super-secret-signing-key-123"
    key = ev.SigningKey(secret)
    assert secret.decode() not in repr(key)
    assert secret.decode() not in str(key)
    with pytest.raises(ValueError, match="at least 16 bytes"):
        ev.SigningKey(b"short")


def test_long_payload_is_cut_and_marked() -> None:
    arguments = {"url": "x" * 200_000, "list": list(range(10))}
    event = signed(
        ev.ToolCallPayload(call_id="c1", tool="http_fetch", arguments=arguments, allowed=True)
    )
    payload_bytes = ev.canonical_json(event.model_dump(mode="json", by_alias=True)["payload"])
    assert event.truncated
    assert len(payload_bytes) <= ev.PAYLOAD_LIMIT_BYTES
    assert isinstance(event.payload, ev.ToolCallPayload)
    assert isinstance(event.payload.arguments, dict)
    assert str(event.payload.arguments["url"]).endswith(ev.TRUNCATION_MARKER)
    assert event.payload.arguments["list"] == list(range(10))
    assert ev.verify_event(event.to_bytes(), KEY) == event


def test_payload_of_many_small_values_is_cut_as_json_text() -> None:
    arguments = {"numbers": list(range(50_000))}
    event = signed(ev.ToolCallPayload(call_id="c1", tool="t", arguments=arguments, allowed=True))
    assert event.truncated
    assert isinstance(event.payload, ev.ToolCallPayload)
    text = event.payload.arguments
    assert isinstance(text, str)
    assert text.startswith('{"numbers":[0,1,2')
    assert text.endswith(ev.TRUNCATION_MARKER)
    assert len(event.to_bytes()) <= ev.MAX_EVENT_BYTES


def test_multibyte_text_is_cut_on_character_boundaries() -> None:
    event = signed(ev.LogPayload(message="é" * 100_000))
    assert isinstance(event.payload, ev.LogPayload)
    assert event.payload.message.endswith(ev.TRUNCATION_MARKER)
    assert set(event.payload.message.removesuffix(ev.TRUNCATION_MARKER)) == {"é"}


def test_result_has_a_larger_cap_and_a_digest() -> None:
    text = "r" * 100_000
    event = signed(ev.ResultPayload.of(text))
    assert not event.truncated
    assert isinstance(event.payload, ev.ResultPayload)
    assert event.payload.size_bytes == 100_000
    huge = signed(ev.ResultPayload.of("r" * 300_000))
    assert huge.truncated
    assert isinstance(huge.payload, ev.ResultPayload)
    assert huge.payload.size_bytes == 300_000
    assert huge.payload.sha256 == ev.ResultPayload.of("r" * 300_000).sha256


# --------------------------------------------------------------------------- result parts


def part_bytes(part: ev.ResultPartPayload) -> int:
    return len(ev.canonical_json(part.model_dump(mode="json", by_alias=True)))


def assert_carries(parts: list[ev.ResultPartPayload], text: str) -> None:
    """The parts are 0..count-1, within their size, never empty, and add up to `text`."""
    assert parts
    assert [part.index for part in parts] == list(range(len(parts)))
    assert {part.count for part in parts} == {len(parts)}
    assert "".join(part.text for part in parts) == text
    for part in parts:
        assert part.text
        assert part_bytes(part) <= ev.RESULT_PART_BYTES
        event = signed(part, sequence=2 + part.index)
        assert not event.truncated
        assert event.payload == part  # the cap never touches a part
        assert len(event.to_bytes()) <= ev.MAX_EVENT_BYTES


def test_a_result_that_fits_has_no_parts() -> None:
    assert ev.result_parts("") == []
    assert ev.result_parts("All done.") == []
    text = "r" * 200_000
    assert not signed(ev.ResultPayload.of(text)).truncated
    assert ev.result_parts(text) == []


def test_a_1_mb_result_travels_in_parts_that_add_up_to_it() -> None:
    text = "".join(f"line {n}: the quick brown fox\n" for n in range(40_000))[:1_000_000]
    assert len(text.encode()) == 1_000_000
    result = signed(ev.ResultPayload.of(text))
    assert result.truncated
    assert isinstance(result.payload, ev.ResultPayload)
    assert result.payload.text != text
    assert result.payload.size_bytes == 1_000_000

    parts = ev.result_parts(text)

    assert_carries(parts, text)
    assert len(parts) == 6  # 1 MB in slices of about 192 KiB
    assert all(part_bytes(part) > ev.RESULT_PART_BYTES - 1024 for part in parts[:-1])
    joined = "".join(part.text for part in parts).encode()
    assert hashlib.sha256(joined).hexdigest() == result.payload.sha256


@pytest.mark.parametrize("char", ["é", "€", "😀", "a€😀é"])
def test_parts_never_split_a_character(char: str) -> None:
    # Multi-byte characters at every offset, so slice ends fall inside them unless avoided.
    text = ("x" + char) * (600_000 // len(("x" + char).encode()))
    parts = ev.result_parts(text)
    assert_carries(parts, text)
    for part in parts:
        assert part.text.encode().decode() == part.text
        assert part_bytes(part) > ev.RESULT_PART_BYTES - 1024 or part is parts[-1]


def test_escaped_characters_count_at_their_serialized_size() -> None:
    # \x01 takes six bytes in JSON (\u0001), quote, backslash and newline two each.
    for unit in ("\x01", '"', "\\", "\n", 'ab"\n\x00\\é\x1f😀'):
        text = unit * (700_000 // len(unit))
        parts = ev.result_parts(text)
        assert_carries(parts, text)


def test_a_structured_result_is_judged_by_its_whole_payload() -> None:
    # The text alone would fit, but text and structured together do not: the event is cut.
    structured: JsonValue = {"items": [f"item {n}" for n in range(10_000)]}
    text = json.dumps(structured)
    assert 100_000 < len(text.encode()) < ev.RESULT_PAYLOAD_LIMIT_BYTES
    assert signed(ev.ResultPayload.of(text, structured)).truncated
    parts = ev.result_parts(text, structured)
    assert_carries(parts, text)
    assert len(parts) == 1


def test_a_large_structured_result_gives_up_structured_and_keeps_its_text() -> None:
    # Many short strings: cut one at a time they took minutes and ended cutting sha256.
    structured: JsonValue = {
        "lines": [f"{n:07d} a short line of the answer" for n in range(30_000)]
    }
    text = json.dumps(structured)
    started = time.perf_counter()
    event = signed(ev.ResultPayload.of(text, structured))
    assert time.perf_counter() - started < 5
    assert event.truncated
    assert isinstance(event.payload, ev.ResultPayload)
    assert event.payload.structured == ev.TRUNCATION_MARKER
    assert event.payload.text.endswith(ev.TRUNCATION_MARKER)
    assert text.startswith(event.payload.text.removesuffix(ev.TRUNCATION_MARKER))
    assert len(event.payload.text) > 200_000  # the text keeps what fits
    assert event.payload.sha256 == hashlib.sha256(text.encode()).hexdigest()
    assert event.payload.size_bytes == len(text.encode())
    assert len(event.to_bytes()) <= ev.MAX_EVENT_BYTES
    assert_carries(ev.result_parts(text, structured), text)
    # a structured result that fits is left alone
    small: JsonValue = {"answer": 42}
    fits = signed(ev.ResultPayload.of(json.dumps(small), small))
    assert not fits.truncated
    assert isinstance(fits.payload, ev.ResultPayload) and fits.payload.structured == small


def test_a_result_part_round_trips_and_is_checked() -> None:
    part = ev.ResultPartPayload(index=2, count=3, text="slice")
    event = signed(part, sequence=9)
    assert event.type is ev.EventType.RESULT_PART
    wire = json.loads(event.to_bytes())
    assert (wire["type"], wire["payload"]) == (
        "result_part",
        {"index": 2, "count": 3, "text": "slice"},
    )
    assert ev.verify_event(event.to_bytes(), KEY, subject=TASK.subject) == event
    assert ev.payload_limit(ev.EventType.RESULT_PART) == ev.RESULT_PAYLOAD_LIMIT_BYTES
    assert ev.RESULT_PART_BYTES < ev.RESULT_PAYLOAD_LIMIT_BYTES
    for index, count in ((3, 3), (-1, 3), (0, 0)):
        with pytest.raises(ValueError, match=r"index|count|greater"):
            ev.ResultPartPayload(index=index, count=count, text="x")


def test_every_event_type_has_a_payload_model() -> None:
    assert set(ev.PAYLOAD_TYPES) == set(ev.EventType)


@pytest.mark.parametrize(
    ("code", "retryable", "reason"),
    [
        (0, False, "Succeeded"),
        (1, False, "Failed"),
        (2, False, "InvalidInput"),
        (3, False, "BudgetExhausted"),
        (4, False, "TimedOut"),
        (70, False, "InternalError"),
        (75, True, "Transient"),
        (137, True, "Killed"),
        (143, True, "Terminated"),
    ],
)
def test_exit_codes(code: int, retryable: bool, reason: str) -> None:
    assert ev.RunnerExitCode(code).reason == reason
    assert ev.exit_code_is_retryable(code) is retryable


def test_unknown_exit_code_is_not_retried() -> None:
    assert not ev.exit_code_is_retryable(42)


def test_termination_message_fits_the_kubelet_cap() -> None:
    result = "ü" * 10_000
    message = ev.TerminationMessage.build(ev.RunnerExitCode.SUCCEEDED, result)
    data = message.to_bytes()
    assert len(data) <= ev.TERMINATION_MESSAGE_MAX_BYTES
    decoded = ev.TerminationMessage.model_validate_json(data)
    assert decoded.result_truncated
    assert decoded.result_size_bytes == len(result.encode())
    assert decoded.reason == "Succeeded"
    assert result.startswith(decoded.result.removesuffix(ev.TRUNCATION_MARKER))


def test_short_termination_message_is_kept_whole() -> None:
    message = ev.TerminationMessage.build(ev.RunnerExitCode.FAILED, None, "model gave up")
    assert not message.result_truncated
    assert message.result_sha256 is None
    assert message.message == "model gave up"
    assert message.exit_code == 1
