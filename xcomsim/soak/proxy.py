"""A TCP forwarder in front of moto's server: the S3 endpoint the deployment sees.

moto keeps its objects in memory, so stopping moto itself would lose every
value and turn a restart fault into a harness artefact (rows naming nothing).
Stopping this forwarder instead is what clients of a restarting S3 endpoint
see: open connections cut, new ones refused, until it listens again on the
same port; the objects behind it survive, as a real endpoint's do.

``python -m xcomsim.soak.proxy LISTEN_PORT TARGET_PORT``
"""

from __future__ import annotations

import asyncio
import contextlib
import sys


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


async def serve(listen: int, target: int) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", target)
        except OSError:
            writer.close()
            return
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))

    server = await asyncio.start_server(handle, "127.0.0.1", listen, reuse_address=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(serve(int(sys.argv[1]), int(sys.argv[2])))
