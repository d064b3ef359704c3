"""The operator starts as a uid without a passwd entry (the image's 65532, read-only root).

kopf's own identity guess calls `getpass.getuser()`, which raises KeyError there; these tests
take the passwd entry away for real (`pwd.getpwuid` fails as it does in the image) and show
that kopf alone dies on it while the operator's kopf start goes past it."""

from __future__ import annotations

import asyncio
import pwd
import socket
from pathlib import Path

import kopf
import pytest
from kopf._core.engines.peering import detect_own_id

from opspawn.operator.kopf_config import operator_identity
from opspawn.operator.main import kopf_operator


@pytest.fixture
def no_passwd_entry(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The process as the image runs it: uid 65532 unknown to pwd, HOME=/tmp-like, no
    login-name variables, no kubeconfig and no in-cluster service account."""

    def getpwuid(uid: int) -> pwd.struct_passwd:
        raise KeyError(f"getpwuid(): uid not found: {uid}")

    monkeypatch.setattr(pwd, "getpwuid", getpwuid)
    for variable in ("LOGNAME", "USER", "LNAME", "USERNAME", "POD_ID", "KUBECONFIG"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))


@pytest.mark.usefixtures("no_passwd_entry")
def test_kopf_alone_crashes_without_a_passwd_entry() -> None:
    with pytest.raises(KeyError, match="uid not found"):
        detect_own_id(manual=False)


@pytest.mark.usefixtures("no_passwd_entry")
def test_the_operator_names_itself_after_its_pod() -> None:
    assert operator_identity() == f"opspawn-operator@{socket.gethostname()}"


@pytest.mark.usefixtures("no_passwd_entry")
def test_pod_id_wins_as_in_kopf(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POD_ID", "opspawn-7d9f-abcde")
    assert operator_identity() == "opspawn-7d9f-abcde"


@pytest.mark.usefixtures("no_passwd_entry")
def test_operator_start_gets_past_the_identity_to_the_cluster_login() -> None:
    """With no cluster credentials at all, the operator's kopf start ends at login (kopf's
    "no credentials" error), which comes after the identity: not at getpwuid."""

    async def start() -> BaseException:
        try:
            await asyncio.wait_for(kopf_operator(kopf.OperatorRegistry(), ()), timeout=30)
        except (Exception, asyncio.CancelledError) as error:
            return error
        raise AssertionError("kopf ran without any cluster credentials")

    error = asyncio.run(start())
    assert not isinstance(error, KeyError), error
    assert "credentials" in str(error).lower(), repr(error)
