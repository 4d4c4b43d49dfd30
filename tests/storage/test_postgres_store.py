"""What only the PostgreSQL store does: outliving a server outage without a restart.

The outage is real: the store talks to PostgreSQL through a TCP proxy that the
test stops (cutting every open connection) and starts again on the same port.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from ghl_real_estate_ai.errors import StorageUnavailableError
from ghl_real_estate_ai.storage import Contact, open_store

pytestmark = pytest.mark.postgres


class TcpProxy:
    """Forwards 127.0.0.1:<port> to a target; ``stop()`` is an outage, ``start()`` the recovery."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def running(self) -> bool:
        return self._server is not None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()
        self._server = None

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._writers |= {writer, up_writer}
        for task in (
            asyncio.create_task(self._pipe(reader, up_writer)),
            asyncio.create_task(self._pipe(up_reader, writer)),
        ):
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            self._writers.discard(writer)
            writer.transport.abort()


@pytest.fixture
async def proxy(postgres_url: str) -> AsyncIterator[TcpProxy]:
    parts = urlsplit(postgres_url)
    server = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    await server.start()
    yield server
    if server.running:
        await server.stop()


def _via(url: str, port: int) -> str:
    parts = urlsplit(url)
    user = f"{parts.username}@" if parts.username else ""
    return urlunsplit(parts._replace(netloc=f"{user}127.0.0.1:{port}"))


async def test_store_recovers_by_itself_after_the_server_comes_back(
    postgres_url: str, proxy: TcpProxy
) -> None:
    url = _via(postgres_url, proxy.port)
    store = open_store(url, pool_size=3)
    await store.open()
    try:
        await store.upsert_contact(Contact("c1"))
        # Several pooled connections, so the outage leaves several dead ones behind.
        await asyncio.gather(*(store.get_contact("c1") for _ in range(3)))

        await proxy.stop()
        with pytest.raises(StorageUnavailableError, match=f"DATABASE_URL='{url}'"):
            await store.ping()
        with pytest.raises(StorageUnavailableError):
            await store.get_contact("c1")

        await proxy.start()
        await store.ping()
        assert await store.get_contact("c1") is not None
        results = await asyncio.gather(*(store.get_contact("c1") for _ in range(3)))
        assert all(r is not None for r in results)
        async with store.contact_lock("c1", timeout=2):
            pass
    finally:
        await store.close()


async def test_contact_lock_works_again_after_its_connection_was_cut(
    postgres_url: str, proxy: TcpProxy
) -> None:
    store = open_store(_via(postgres_url, proxy.port), pool_size=2)
    await store.open()
    try:
        async with store.contact_lock("c1", timeout=2):
            pass
        await proxy.stop()
        with pytest.raises(StorageUnavailableError):
            async with store.contact_lock("c1", timeout=2):
                pass
        await proxy.start()
        async with store.contact_lock("c1", timeout=2):
            pass
    finally:
        await store.close()


def test_a_connection_left_mid_operation_counts_as_down_so_it_is_replaced() -> None:
    # Seen when a health check reused a pooled connection whose session was killed mid-query.
    store = open_store("postgresql://postgres@127.0.0.1:5432/test")
    stuck = asyncpg.exceptions.InternalClientError(
        "cannot switch to state 11; another operation (2) is in progress"
    )
    assert isinstance(store._translate(stuck, "SELECT"), StorageUnavailableError)  # type: ignore[attr-defined]
