"""The termination message reaches a file (or stderr), bounded as the kubelet reads it."""

from __future__ import annotations

from pathlib import Path

import pytest

from opspawn.api.events import TERMINATION_MESSAGE_MAX_BYTES, RunnerExitCode, TerminationMessage
from opspawn.runner import termination
from opspawn.runner.termination import TERMINATION_MESSAGE_PATH_ENV, write_termination_message

MESSAGE = TerminationMessage.build(RunnerExitCode.SUCCEEDED, "the answer " * 1000)


def test_written_to_the_configured_path(tmp_path: Path) -> None:
    path = tmp_path / "termination-log"
    assert write_termination_message(MESSAGE, {TERMINATION_MESSAGE_PATH_ENV: str(path)}) == path
    data = path.read_bytes()
    assert len(data) <= TERMINATION_MESSAGE_MAX_BYTES
    assert TerminationMessage.model_validate_json(data) == MESSAGE


def test_written_to_the_kubelet_default_when_it_is_writable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    default = tmp_path / "dev-termination-log"
    default.touch()
    monkeypatch.setattr(termination, "DEFAULT_TERMINATION_MESSAGE_PATH", default)
    assert write_termination_message(MESSAGE, {}) == default
    assert TerminationMessage.model_validate_json(default.read_bytes()) == MESSAGE


def test_falls_back_to_stderr(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(termination, "DEFAULT_TERMINATION_MESSAGE_PATH", tmp_path / "absent")
    assert write_termination_message(MESSAGE, {}) is None
    unwritable = {TERMINATION_MESSAGE_PATH_ENV: str(tmp_path / "no-such-dir" / "log")}
    assert write_termination_message(MESSAGE, unwritable) is None
    lines = capsys.readouterr().err.splitlines()
    assert [TerminationMessage.model_validate_json(line) for line in lines] == [MESSAGE, MESSAGE]
