"""The real node's generated configuration says what this machine kind needs (REAL-NODE.md), and
its relay carries bytes both ways and passes the end of a stream on."""

from __future__ import annotations

import asyncio
import socket
import tomllib
from pathlib import Path
from typing import Any, cast

import pytest

from opspawn.dev.realnode import network
from opspawn.dev.realnode.containerd import Containerd
from opspawn.dev.realnode.node import RealNode, _kubelet_configuration
from opspawn.dev.realnode.relay import parse_port, relay

NetworkPlugin = dict[str, Any]


def test_containerd_keeps_to_its_own_dirs_and_restricts_oom_score_adj(tmp_path: Path) -> None:
    containerd = Containerd(
        tmp_path / "containerd",
        sandbox_image="localhost/opspawn/pause:1",
        cni_conf_dir=tmp_path / "cni",
        root_dir=tmp_path / "root",
    )
    config = tomllib.loads(containerd.config())
    assert config["root"] == str(tmp_path / "root")
    assert config["state"] == str(tmp_path / "containerd" / "state")
    assert config["grpc"]["address"] == str(containerd.socket)
    cri = config["plugins"]["io.containerd.grpc.v1.cri"]
    assert cri["sandbox_image"] == "localhost/opspawn/pause:1"
    assert cri["restrict_oom_score_adj"] is True
    runc = cri["containerd"]["runtimes"]["runc"]
    assert runc["runtime_type"] == "io.containerd.runc.v2"
    assert runc["options"]["SystemdCgroup"] is False
    assert cri["cni"]["conf_dir"] == str(tmp_path / "cni")


def test_the_cni_bridge_is_its_own_and_does_not_masquerade(tmp_path: Path) -> None:
    bridge, portmap = cast(list[NetworkPlugin], network.cni_config(tmp_path)["plugins"])
    assert bridge["bridge"] == network.BRIDGE
    assert bridge["isGateway"] is True and bridge["ipMasq"] is False
    assert bridge["ipam"]["dataDir"] == str(tmp_path)
    assert bridge["ipam"]["ranges"] == [
        [{"subnet": network.POD_CIDR, "gateway": network.BRIDGE_ADDRESS}]
    ]
    assert portmap["type"] == "portmap"


def test_the_kubelet_allows_cgroup_v1_with_cgroupfs_and_serves_loopback_only(
    tmp_path: Path,
) -> None:
    node = RealNode(tmp_path, containerd_root=tmp_path / "root")
    config = _kubelet_configuration(node, tmp_path / "ca.crt")
    assert config["failCgroupV1"] is False
    assert config["cgroupDriver"] == "cgroupfs"
    assert config["address"] == "127.0.0.1" and config["readOnlyPort"] == 0
    assert config["containerRuntimeEndpoint"] == f"unix://{node.containerd.socket}"
    assert cast(dict[str, Any], config["authentication"])["anonymous"] == {"enabled": False}


def test_relay_ports_name_the_target_or_default_to_the_same() -> None:
    assert parse_port("4222") == (4222, 4222)
    assert parse_port("6443:36789") == (6443, 36789)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.mark.anyio
async def test_the_relay_carries_a_request_and_the_reply_after_end_of_stream() -> None:
    async def upper_after_eof(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        data = await reader.read()  # until the client's half-close comes through
        writer.write(data.upper())
        await writer.drain()
        writer.close()

    target = await asyncio.start_server(upper_after_eof, "127.0.0.1", 0)
    target_port = target.sockets[0].getsockname()[1]
    listen_port = _free_port()
    relaying = asyncio.create_task(relay("127.0.0.1", [(listen_port, target_port)]))
    try:
        for _ in range(100):
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", listen_port)
                break
            except OSError:
                await asyncio.sleep(0.05)
        writer.write(b"hello through the bridge")
        writer.write_eof()
        assert await asyncio.wait_for(reader.read(), 10) == b"HELLO THROUGH THE BRIDGE"
        writer.close()
    finally:
        relaying.cancel()
        target.close()
