"""Seeded node flows for the crash tests: the same seed builds the same flow, in any process.

A flow is a tree of nodes (``n0`` the entry point) made from one
``random.Random(seed)``: each node adds its number to its children's
results; children are called one after another with ``rt.call`` or, in a
batched tree, also as ``rt.call_batch`` of up to three items; some nodes
raise. Every run of one flow ends alike whatever the scheduler does: in a
batched tree every failure is caught (a batch returns its exceptions), in a
sequential one a failure is caught or not, as the seed says. Some nodes
are made with ``idempotent=False``, some with ``idempotency_key=str`` (their
calls keyed by their item). A pause in
each node leaves a run's store the time to commit as the run goes (the
crash then finds part of the run committed, a batch perhaps mid-commit).

Imported by ``test_crash.py`` and by the child process it kills: kept free
of Hypothesis so the child starts fast.
"""

from __future__ import annotations

import itertools
import random
from typing import TYPE_CHECKING

import trio

import runtime as rt

if TYPE_CHECKING:
    from collections.abc import Callable

#: What a caught failure adds to its caller's total.
CAUGHT = 1000


def build(
    seed: int, pause: float = 0.0, on_start: Callable[[], object] | None = None
) -> tuple[str, rt.Node[[int], int]]:
    """The flow of *seed*: its name and its entry node.

    Each node first sleeps *pause* seconds, if given; a node made with
    ``idempotent=False`` then calls *on_start* (its "side effect"), if given.
    """
    rng = random.Random(seed)
    batched = rng.random() < 0.5
    numbers = itertools.count()

    def make(depth: int) -> rt.Node[[int], int]:
        name = f"n{next(numbers)}"
        value = rng.randrange(100)
        fails = depth > 0 and rng.random() < 0.2
        catches = batched or rng.random() < 0.5
        idempotent = depth == 0 or rng.random() < 0.7
        keyed = depth > 0 and rng.random() < 0.3
        calls: list[tuple[rt.Node[[int], int], int | None]] = []
        for _ in range(rng.randrange(4 - depth) if depth < 3 else 0):
            child = make(depth + 1)
            calls.append((child, rng.randrange(1, 4) if batched and rng.random() < 0.5 else None))

        async def run(item: int) -> int:
            if pause:
                await trio.sleep(pause)
            if not idempotent and on_start is not None:
                on_start()
            total = value + item
            for child, items in calls:
                if items is not None:
                    results = await rt.call_batch(child, range(items), return_exceptions=True)
                    total += sum(r if isinstance(r, int) else CAUGHT for r in results)
                    continue
                try:
                    total += await rt.call(child, 0)
                except ValueError:
                    if not catches:
                        raise
                    total += CAUGHT
            if fails:
                raise ValueError(f"{name} fails")
            return total

        return rt.function_node(name=name, idempotent=idempotent, idempotency_key=str if keyed else None)(run)

    return f"crash-{seed}", make(0)
