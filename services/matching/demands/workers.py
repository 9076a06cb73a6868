"""The match worker: `concurrency` loops claim queued listings and match them (demands/queue.py
says how), woken by the queue's NOTIFY."""

from __future__ import annotations

from fastapi import FastAPI

from services.matching.demands.queue import CHANNEL, IDLE_WAIT_SECONDS, MatchWorker
from services.matching.meili import MeiliUnavailable
from shared.workers import Worker

__all__ = ["match_workers"]


def match_workers(app: FastAPI) -> list[Worker]:
    matching: MatchWorker = app.state.match_worker

    async def step() -> int:
        return await matching.after_indexer_backlog(matching.run_once)

    return [
        Worker(
            "matching",
            step,
            interval=IDLE_WAIT_SECONDS,
            channel=CHANNEL,
            concurrency=matching.concurrency,
            outages=(MeiliUnavailable,),
            interruptible=True,
        )
    ]
