"""Reads that tolerate a little lag, from a PostgreSQL streaming replica (issue 21, item 3).

With `IPX_DATABASE_READ_URL` set, each service opens a second engine on the replica; routes
that serve the public catalogue take their session from :data:`CatalogueSessionDep` (anonymous
callers read from the replica, callers with a key from the primary) or :data:`ReadSessionDep`
(always the replica: reports over past records). Unset, both read from the primary, as before.
docs/DECISIONS.md, "Reads from replicas", lists the routes and why.

Every read session is a READ ONLY transaction, on the primary too: a route moved onto the read
dependency that writes fails at once in every test (nothing configures a replica there),
instead of writing on the primary in production and failing only against the replica.

A replica that cannot be reached (refused, timed out, a pooled connection it closed) is left for
:data:`REPLICA_RETRY_SECONDS`: reads in the meantime go to the primary, one warning is logged
when it goes and one line when it is back, and ``ipx_db_read_fallbacks_total`` counts the reads
that fell back. So is a replica further behind than `IPX_DATABASE_READ_MAX_LAG_SECONDS` (its
replay lag is asked at most once a second, on a read's own transaction): "a little lag" stays
little when replay stalls. A replica that dies in the middle of a request fails that request
with the 503 any outage gives (shared.errors); the next one goes to the primary.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, Request
from prometheus_client import CollectorRegistry, Counter, Gauge
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from shared.auth import OptionalCallerDep, Principal
from shared.db import create_engine, create_sessionmaker, driver_connection
from shared.errors import is_database_unavailable
from shared.health import NotReady, ReadinessCheck
from shared.settings import Settings

__all__ = [
    "LAG_CHECK_SECONDS",
    "REPLICA_RETRY_SECONDS",
    "CatalogueSessionDep",
    "ReadSessionDep",
    "ReadSessions",
    "get_catalogue_session",
    "get_read_session",
    "open_read_engine",
    "reads_from_replica",
    "replica_check",
]

logger = logging.getLogger("ipx.reads")

# How long reads stay on the primary after the replica could not be reached, before one read
# tries it again: long enough that an outage costs one failed connect per interval, not one per
# request; short enough that a restarted replica takes its reads back within seconds.
REPLICA_RETRY_SECONDS = 5.0

# A replica that does not answer its connect within this is taken as down (the primary's pool
# waits 5 s: a read that can fall back should not wait that long first).
REPLICA_CONNECT_TIMEOUT_SECONDS = 2.0

# How often a process asks the replica how far behind it is (one extra query on one read).
LAG_CHECK_SECONDS = 1.0

# The replica's replay lag in seconds: 0 when it has replayed all the WAL it has received, else
# the age of the last transaction it replayed (the usual measure; NULL before its first replayed
# transaction counts as 0). A standby cut off from its primary has nothing pending and shows 0:
# watch the primary's pg_stat_replication for that.
REPLAY_LAG = text(
    "SELECT CASE WHEN pg_last_wal_receive_lsn() IS NOT DISTINCT FROM pg_last_wal_replay_lsn() "
    "THEN 0 ELSE coalesce(extract(epoch FROM now() - pg_last_xact_replay_timestamp()), 0) END"
)

_READ_ONLY: dict[str, Any] = {"postgresql_readonly": True}


def reads_from_replica(principal: Principal | None) -> bool:
    """Whether a catalogue read of this caller may lag: only an anonymous caller's.

    Every write needs a key (sign-up aside, which answers the key its next requests carry), so
    an anonymous caller has written nothing it could miss; a caller with a key (a seller that
    just edited its listing, a buyer that just closed a deal, an operator that just approved
    one, the gateway's service key) may read what it has just written, and reads from the
    primary."""
    return principal is None


def open_read_engine(settings: Settings, *, application_name: str) -> AsyncEngine | None:
    """The replica's engine, when `IPX_DATABASE_READ_URL` is set: the primary's pool settings
    (a second pool of the same size per process), a shorter connect timeout."""
    if not settings.database_read_url:
        return None
    on_replica = settings.model_copy(update={"database_url": settings.database_read_url})
    engine = create_engine(on_replica, application_name=application_name)
    event.listen(engine.sync_engine, "do_connect", _shorter_connect_timeout)
    return engine


def _shorter_connect_timeout(
    dialect: Any, record: Any, cargs: Any, cparams: dict[str, Any]
) -> None:
    cparams["timeout"] = REPLICA_CONNECT_TIMEOUT_SECONDS


class ReadSessions:
    """Where lag-tolerant reads run: the replica when configured and reachable, else the
    primary. One per app (``app.state.reads``)."""

    def __init__(
        self,
        primary: async_sessionmaker[AsyncSession],
        replica: AsyncEngine | None,
        registry: CollectorRegistry,
        *,
        max_lag_seconds: float = 10.0,
    ) -> None:
        self._primary = primary
        self.replica_engine = replica
        self._replica = create_sessionmaker(replica) if replica is not None else None
        self._down_until = 0.0
        self._down = False
        self.retry_seconds = REPLICA_RETRY_SECONDS
        self.max_lag_seconds = max_lag_seconds
        self.lag_check_seconds = LAG_CHECK_SECONDS
        self._lag_checked_at = float("-inf")
        self._behind = False
        self.reads = Counter(
            "ipx_db_reads_total",
            "Lag-tolerant reads, by the server that answered them (replica or primary).",
            ["server"],
            registry=registry,
        )
        self.fallbacks = Counter(
            "ipx_db_read_fallbacks_total",
            "Reads meant for the replica that went to the primary, by why: unreachable, or "
            "behind by more than IPX_DATABASE_READ_MAX_LAG_SECONDS.",
            ["reason"],
            registry=registry,
        )
        self.replica_lag = Gauge(
            "ipx_db_replica_lag_seconds",
            "The read replica's replay lag when last asked (at most once a second, on a read).",
            registry=registry,
        )
        self.replica_up = Gauge(
            "ipx_db_replica_up",
            "1 while the read replica answers, 0 while reads fall back to the primary "
            "(absent without IPX_DATABASE_READ_URL).",
            registry=registry,
        )
        if replica is not None:
            self.replica_up.set(1)

    @property
    def configured(self) -> bool:
        return self._replica is not None

    @asynccontextmanager
    async def replica(self) -> AsyncIterator[AsyncSession]:
        """A read-only session on the replica, or on the primary when there is none or it is
        down. Nothing is committed: the transaction ends with the session."""
        session = await self._on_replica()
        if session is None:
            session = await self._begin(self._primary())
            self.reads.labels("primary").inc()
        try:
            yield session
        finally:
            await session.close()

    @asynccontextmanager
    async def primary(self) -> AsyncIterator[AsyncSession]:
        """A read-only session on the primary (read-your-writes)."""
        session = await self._begin(self._primary())
        self.reads.labels("primary").inc()
        try:
            yield session
        finally:
            await session.close()

    async def _on_replica(self) -> AsyncSession | None:
        if self._replica is None:
            return None
        if self._down and time.monotonic() < self._down_until:
            self.fallbacks.labels("unreachable").inc()
            return None
        session = self._replica()
        try:
            await self._begin(session, now=True)
            fresh = await self._fresh_enough(session)
        except Exception as exc:
            await session.close()
            if not is_database_unavailable(exc):
                raise
            self._went_down(exc)
            self.fallbacks.labels("unreachable").inc()
            return None
        if not fresh:
            await session.close()
            self.fallbacks.labels("behind").inc()
            return None
        if self._down:
            self._down = False
            self.replica_up.set(1)
            logger.info("the read replica answers again: lag-tolerant reads go to it")
        self.reads.labels("replica").inc()
        return session

    async def _fresh_enough(self, session: AsyncSession) -> bool:
        """Whether the replica is within max_lag_seconds, asked on `session` at most once every
        lag_check_seconds (the verdict holds in between)."""
        now = time.monotonic()
        if now < self._lag_checked_at + self.lag_check_seconds:
            return not self._behind
        self._lag_checked_at = now  # before the await: one request asks, not every one
        lag = float(await session.scalar(REPLAY_LAG) or 0)
        self.replica_lag.set(lag)
        behind = lag > self.max_lag_seconds
        if behind and not self._behind:
            logger.warning(
                "the read replica is %.1f s behind (more than %.1f s): reads go to the primary",
                lag,
                self.max_lag_seconds,
                extra={"lag_seconds": lag},
            )
        elif self._behind and not behind:
            logger.info("the read replica has caught up: lag-tolerant reads go to it")
        self._behind = behind
        return not behind

    def _went_down(self, exc: BaseException) -> None:
        self._down_until = time.monotonic() + self.retry_seconds
        if not self._down:
            self._down = True
            self.replica_up.set(0)
            logger.warning(
                "the read replica is unreachable (%s): reads go to the primary, "
                "trying it again every %.0f s",
                type(exc).__name__,
                self.retry_seconds,
                extra={"retry_in": self.retry_seconds},
            )

    @staticmethod
    async def _begin(session: AsyncSession, *, now: bool = False) -> AsyncSession:
        """Take a pooled connection for `session`, its transaction READ ONLY. `now`: send the
        BEGIN at once (SQLAlchemy sends it before the first statement, so it costs no extra
        round trip): a replica that has gone away fails here, where the read can still go to
        the primary, rather than at the handler's first query. A pooled connection passes
        checkout until its EOF is read, and one that got the server's shutdown notice fails
        its next statement."""
        connection = await session.connection(execution_options=_READ_ONLY)
        if now:
            try:
                await driver_connection(session)
            except BaseException:
                await connection.invalidate()
                raise
        return session


async def get_read_session(request: Request) -> AsyncIterator[AsyncSession]:
    reads: ReadSessions = request.app.state.reads
    async with reads.replica() as session:
        yield session


async def get_catalogue_session(
    request: Request, principal: OptionalCallerDep
) -> AsyncIterator[AsyncSession]:
    reads: ReadSessions = request.app.state.reads
    opened = reads.replica() if reads_from_replica(principal) else reads.primary()
    async with opened as session:
        yield session


# scope="function": the connection goes back to its pool before the response is sent.
# Always the replica (when configured): reads whose every caller tolerates lag.
ReadSessionDep = Annotated[AsyncSession, Depends(get_read_session, scope="function")]
# The replica for anonymous callers, the primary for callers with a key (reads_from_replica).
CatalogueSessionDep = Annotated[AsyncSession, Depends(get_catalogue_session, scope="function")]


def replica_check(reads: ReadSessions) -> ReadinessCheck:
    """/readyz's report on the replica: reachable and replaying, or why not. Informational:
    reads fall back to the primary, so a replica down never makes the service not ready."""
    engine = reads.replica_engine
    assert engine is not None

    async def check() -> None:
        try:
            async with engine.connect() as connection:
                in_recovery = await connection.scalar(text("SELECT pg_is_in_recovery()"))
                lag = float(await connection.scalar(REPLAY_LAG) or 0)
        except Exception as exc:
            raise NotReady(
                f"the read replica is unreachable ({type(exc).__name__}): reads go to the primary"
            ) from exc
        if not in_recovery:
            raise NotReady("IPX_DATABASE_READ_URL is not a standby (pg_is_in_recovery() is false)")
        if lag > reads.max_lag_seconds:
            raise NotReady(
                f"the read replica is {lag:.1f} s behind (more than {reads.max_lag_seconds:.1f}"
                " s): reads go to the primary"
            )

    return check
