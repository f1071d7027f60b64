"""Timeouts and end_on_error: how a run ends when a node is slow or fails.

Run it with ``python examples/timeout_and_errors.py``; it takes about 0.2 s.

1. A run that passes its ``timeout``: every node of it is cancelled (their
   ``finally`` blocks run) before ``invoke`` raises ``rt.RunTimeoutError``.
2. A failing child with ``end_on_error=False``: the error goes to the
   calling node, which catches it and carries on.
3. The same flow with ``end_on_error=True``: the first failure ends the whole
   run at once, although the parent would have caught it, and the slow
   sibling still working is cancelled.
"""

from typing import TypeVar

import trio

import runtime as rt

T = TypeVar("T")

cleaned_up: list[str] = []

# Set once lookup_all has taken its fallback. The slow lookup starts its work
# only then, so it is surely still running when the flaky one fails: with
# end_on_error=True it is cancelled, whatever the machine's speed.
fallback_taken = trio.Event()


@rt.function_node
async def slow_lookup(seconds: float) -> str:
    try:
        await fallback_taken.wait()
        await trio.sleep(seconds)
        return f"looked up in {seconds} s"
    finally:
        cleaned_up.append(f"slow_lookup({seconds})")


@rt.function_node
async def flaky_lookup() -> str:
    await trio.sleep(0.01)
    raise ConnectionError("lookup service refused the connection")


@rt.function_node
async def lookup_all() -> list[str]:
    """Look up two things at once; fall back if the flaky one fails."""
    global fallback_taken
    fallback_taken = trio.Event()  # one per run
    results = []
    async with trio.open_nursery() as nursery:

        async def slow() -> None:
            results.append(await rt.call(slow_lookup, 0.05))

        nursery.start_soon(slow)
        try:
            results.append(await rt.call(flaky_lookup))
        except ConnectionError as exc:
            results.append(f"fallback ({exc})")
            fallback_taken.set()
    return sorted(results)


@rt.function_node
async def patient() -> str:
    try:
        return await rt.call(slow_lookup, 60)
    finally:
        cleaned_up.append("patient")


def _requests(outcome: rt.RunResult[T]) -> str:
    statuses = ", ".join(f"{r.node}={r.status}" for r in outcome.state.requests.values())
    return f"{outcome.status}; requests: {statuses}"


def main() -> None:
    # 1. timeout
    timed = rt.Flow("lookup-timeout", entry_point=patient, timeout=0.1)
    try:
        timed.invoke()
    except rt.RunTimeoutError as exc:
        print(f"timeout: {exc}")
    print(f"  cleaned up: {sorted(cleaned_up)}")
    print(f"  run state: {_requests(timed.run())}")
    cleaned_up.clear()

    # 2. end_on_error=False: the parent catches the failure
    lenient = rt.Flow("lookup-lenient", entry_point=lookup_all, end_on_error=False)
    print(f"end_on_error=False: {lenient.invoke()}")
    print(f"  cleaned up: {sorted(cleaned_up)}")
    cleaned_up.clear()

    # 3. end_on_error=True: the first failure ends the run
    strict = rt.Flow("lookup-strict", entry_point=lookup_all, end_on_error=True)
    try:
        strict.invoke()
    except ConnectionError as exc:
        print(f"end_on_error=True: the run failed with ConnectionError: {exc}")
        for note in getattr(exc, "__notes__", []):
            print(f"  note: {note}")
    print(f"  cleaned up: {sorted(cleaned_up)}")
    print(f"  run state: {_requests(strict.run())}")


if __name__ == "__main__":
    main()
