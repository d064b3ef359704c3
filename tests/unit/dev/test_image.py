"""What decides the image's inputs: the Debian mirror, the source hash, the host's pip settings."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from opspawn.dev import image
from opspawn.dev.image import (
    REPOSITORY,
    debian_mirror_lines,
    host_pip_settings,
    missing_prerequisites,
    sources_digest,
)

DEB822 = """\
Types: deb
# http://snapshot.debian.org/archive/debian/20250520T000000Z
URIs: http://mirror.example/debian
Suites: bookworm bookworm-updates
Components: main contrib
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb-src
URIs: http://mirror.example/debian
Suites: bookworm
Components: main

Types: deb
URIs: http://mirror.example/debian
Suites: trixie
Components: main

Types: deb
Enabled: no
URIs: http://disabled.example/debian
Suites: bookworm
Components: main
"""


def test_the_base_comes_from_the_machines_debian_mirror(tmp_path: Path) -> None:
    sources = tmp_path / "debian.sources"
    sources.write_text(DEB822)
    listed = tmp_path / "security.list"
    listed.write_text(
        "# security\n"
        "deb [signed-by=/usr/share/keyrings/k.gpg] http://security.example/debian-security "
        "bookworm-security main\n"
        "deb http://mirror.example/debian bookworm main contrib\n"
    )
    ignored = tmp_path / "nodesource.sources.disabled-by-farm"
    ignored.write_text(DEB822.replace("mirror.example", "elsewhere.example"))
    assert debian_mirror_lines([sources, listed, ignored, tmp_path / "absent.list"]) == [
        "deb http://mirror.example/debian bookworm main contrib",
        "deb http://mirror.example/debian bookworm-updates main contrib",
        "deb http://security.example/debian-security bookworm-security main",
    ]


@pytest.fixture
def sources_copy(tmp_path: Path) -> Path:
    for name in image.IMAGE_SOURCES:
        source = REPOSITORY / name
        if source.is_dir():
            shutil.copytree(source, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, tmp_path / name)
    return tmp_path


def test_a_source_change_rebuilds_and_bytecode_does_not(sources_copy: Path) -> None:
    before = sources_digest("base:1", sources_copy)
    cache = sources_copy / "runner" / "opspawn" / "runner" / "__pycache__"
    cache.mkdir(exist_ok=True)
    (cache / "main.cpython-311.pyc").write_bytes(b"\0" * 16)
    assert sources_digest("base:1", sources_copy) == before
    assert sources_digest("base:2", sources_copy) != before
    main = sources_copy / "runner" / "opspawn" / "runner" / "main.py"
    main.write_text(main.read_text() + "\n# changed\n")
    assert sources_digest("base:1", sources_copy) != before


def test_a_dependency_change_rebuilds(sources_copy: Path) -> None:
    before = sources_digest("base:1", sources_copy)
    pyproject = sources_copy / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('"click>=8.1"', '"click>=8.2"'))
    assert sources_digest("base:1", sources_copy) != before


def test_the_build_reaches_the_index_as_the_host_pip_does(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The host pip's own `pip config list` decides; its local find-links stay behind."""
    bundle = tmp_path / "ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    monkeypatch.setenv("PIP_INDEX_URL", "https://pypi.mirror.example/simple")
    monkeypatch.setenv("PIP_CERT", str(bundle))
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path))
    monkeypatch.setenv("PIP_NO_COLOR", "1")
    settings = host_pip_settings()
    assert settings["index-url"] == "https://pypi.mirror.example/simple"
    assert settings["cert"] == str(bundle)
    assert "find-links" not in settings
    assert "no-color" not in settings

    mounted = tmp_path / "pip"
    image.write_build_pip_settings(mounted)
    config = (mounted / "pip.conf").read_text()
    assert "index-url = https://pypi.mirror.example/simple" in config
    assert "cert = /etc/xdg/pip/cert.pem" in config
    assert (mounted / "cert.pem").read_text() == bundle.read_text()


def test_a_missing_tool_is_named_with_its_package(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    reasons = missing_prerequisites()
    assert "`buildah` is missing (apt-get install buildah)" in reasons
    assert "`mmdebstrap` is missing (apt-get install mmdebstrap)" in reasons
    with pytest.raises(RuntimeError, match="apt-get install buildah"):
        image.base_image()
