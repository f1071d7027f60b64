"""Sessions: one workflow per user, leases, limits, streaming and metrics.

A small "assistant" service. Each user gets their own workflow, built on their
first request by an async context manager that opens (and later closes) a
per-user resource. Requests from several users run at once under a global
limit of 2 runs and a per-user limit of 1; one request streams its steps; an
idle user's workflow is evicted and rebuilt; and the metrics tell the story.

Run it with ``python examples/sessions.py``.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

import trio

import runtime as rt

if TYPE_CHECKING:
    from collections.abc import AsyncIterator


@rt.function_node
async def lookup(question: str) -> str:
    await trio.sleep(0.01)  # pretend to search
    return f"notes on {question!r}"


@rt.function_node
async def assistant(message: str) -> str:
    request = rt.request()  # who asked, in which conversation: immutable, per run
    await rt.broadcast(f"thinking about {message!r} for {request.user_id}")
    notes = await rt.call(lookup, message)
    return f"[{request.user_id}/{request.conversation_id}] {message.upper()} ({notes})"


@contextlib.asynccontextmanager
async def build_for(user_id: str) -> AsyncIterator[rt.Flow[[str], str]]:
    """Open the user's workflow; closed by the same task when it is evicted or at shutdown."""
    print(f"  open  workflow for {user_id}")
    try:
        yield rt.Flow(f"assistant-{user_id}", entry_point=assistant)
    finally:
        print(f"  close workflow for {user_id}")


async def ask(manager: rt.SessionManager[str], user: str, message: str) -> None:
    async with manager.session(user_id=user, conversation_id=f"{user}-chat") as session:
        print(await session.run(message))


async def main() -> None:
    async with rt.SessionManager(
        builder=build_for, max_concurrency=2, per_user_max_concurrency=1, idle_timeout=0.2
    ) as manager:
        print("Three users, five requests, at most two runs at once:")
        async with trio.open_nursery() as nursery:
            for user, message in [("ada", "hello"), ("bob", "hi"), ("ada", "again"), ("cy", "hey"), ("bob", "bye")]:
                nursery.start_soon(ask, manager, user, message)

        print("\nStreaming one run's steps:")
        async with manager.session(user_id="ada") as session, session.stream("stream this") as events:
            async for event in events:
                if event.kind is rt.EventKind.STREAM:
                    print(f"  step: {event.data}")
            assert events.finished is not None
            print(f"  finished: {events.finished.data['status']}")  # type: ignore[index]

        print("\nWaiting past the idle timeout: every workflow is evicted.")
        await trio.sleep(0.3)
        print(f"  loaded now: {manager.users()}")
        await ask(manager, "ada", "back again")  # rebuilt on demand

        ada = manager.metrics("ada")
        total = manager.metrics()
        print(f"\nada: {ada.requests} requests, {ada.ok} ok, {ada.builds} builds, {ada.evictions} evictions")
        print(
            f"all: {total.requests} requests, {total.ok} ok, {total.error} errors, {total.cancelled} cancelled; "
            f"mean queue {total.mean_queue_time * 1000:.1f} ms, mean run {total.mean_run_time * 1000:.1f} ms"
        )
        print("\nShutting down:")
    try:
        async with manager.session(user_id="ada"):
            pass
    except rt.SessionClosedError as exc:
        print(f"after shutdown: {exc}")


if __name__ == "__main__":
    trio.run(main)
