"""TCP relays that let Pods reach host services bound to 127.0.0.1.

The dev stack's NATS, Postgres, mock model and apiserver listen on the loopback interface only.
`python -m opspawn.dev.realnode.relay LISTEN_HOST PORT[:TARGET_PORT] ...` listens on LISTEN_HOST
(the node bridge's address) at each PORT and forwards every connection to 127.0.0.1:TARGET_PORT
(the same port by default). It is one process of the stack, stopped with it; Postgres sees relayed
connections as local ones, as on the kind target.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib

TARGET_HOST = "127.0.0.1"
CHUNK = 256 * 1024


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy until EOF, then pass the half-close on (NATS and Postgres clients expect it)."""
    with contextlib.suppress(ConnectionError, OSError):
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()


async def _serve(
    client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter, target_port: int
) -> None:
    try:
        target_reader, target_writer = await asyncio.open_connection(TARGET_HOST, target_port)
    except OSError:
        client_writer.close()
        return
    try:
        await asyncio.gather(
            _pipe(client_reader, target_writer), _pipe(target_reader, client_writer)
        )
    finally:
        for writer in (client_writer, target_writer):
            writer.close()


def parse_port(argument: str) -> tuple[int, int]:
    """`PORT` or `PORT:TARGET_PORT`."""
    listen, _, target = argument.partition(":")
    return int(listen), int(target or listen)


async def relay(listen_host: str, ports: list[tuple[int, int]]) -> None:
    servers = []
    for listen_port, target_port in ports:

        async def handle(
            reader: asyncio.StreamReader, writer: asyncio.StreamWriter, target: int = target_port
        ) -> None:
            await _serve(reader, writer, target)

        servers.append(await asyncio.start_server(handle, listen_host, listen_port))
    await asyncio.gather(*(server.serve_forever() for server in servers))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("listen_host")
    parser.add_argument("ports", nargs="+", type=parse_port)
    arguments = parser.parse_args()
    asyncio.run(relay(arguments.listen_host, arguments.ports))


if __name__ == "__main__":
    main()
