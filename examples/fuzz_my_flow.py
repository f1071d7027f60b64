"""Fuzz a small workflow with runtime.testing, and find its bug.

    python examples/fuzz_my_flow.py

The workflow prices a quote for a customer. Someone "saved a database
lookup" by memoising the customer in a module-level dict: fine while one
quote runs at a time, wrong as soon as two runs overlap, as they do in a
service. Hypothesis draws the customers of a few concurrent runs and a
schedule of delays at the hand-offs between nodes (under Trio's MockClock,
so no real time passes); the isolation checker and a plain assertion say
what went wrong, and Hypothesis shrinks the failure to the smallest case.

The same test runs under pytest as it is (it is an ordinary ``@given`` test);
here ``main()`` calls it and prints what Hypothesis reports. The program
exits 0 once it has reported the bug, 1 if it found none.
"""

from __future__ import annotations

import sys

import trio
from hypothesis import given, settings
from hypothesis import strategies as st

import runtime as rt
from runtime import testing as rtt

# -- the workflow under test ------------------------------------------------------

DISCOUNTS = {"ann": 0.20, "bob": 0.0, "cy": 0.10}

_customer_memo: dict[str, dict[str, object]] = {}  # BUG: one dict for every run in the process


@rt.function_node
async def load_customer(name: str) -> dict[str, object]:
    await trio.sleep(0.05)  # a database round trip
    return {"name": name, "discount": DISCOUNTS[name]}


@rt.function_node
async def customer(name: str) -> dict[str, object]:
    """The customer of this quote, looked up once ("a run serves one customer")."""
    if "customer" not in _customer_memo:
        _customer_memo["customer"] = await rt.call(load_customer, name)
    return _customer_memo["customer"]


@rt.function_node
async def quote(name: str, amount: float) -> str:
    who = await rt.call(customer, name)
    rt.context.put("quoted_for", who["name"])
    price = amount * (1 - float(who["discount"]))  # type: ignore[arg-type]
    return f"{who['name']}: {price:.2f}"


quote_flow = rt.Flow("quote", entry_point=quote)


# -- the property: concurrent quotes never see each other ----------------------------


@settings(max_examples=100, database=None, derandomize=True, deadline=None, print_blob=False)
@given(
    names=st.lists(st.sampled_from(sorted(DISCOUNTS)), min_size=1, max_size=4),
    schedule=rtt.schedules(),
)
def test_concurrent_quotes_are_isolated(names: list[str], schedule: rtt.Schedule) -> None:
    _customer_memo.clear()  # each example starts like a fresh process
    results = rtt.run_many_with_schedule(quote_flow, [(name, 100.0) for name in names], schedule=schedule)
    for name, result in zip(names, results, strict=True):
        rtt.check_structure(result)  # the run ended and nothing of it is left running
        expected = f"{name}: {100 * (1 - DISCOUNTS[name]):.2f}"
        assert result.result == expected, (
            f"the quote for {name!r} came out as {result.result!r}, not {expected!r}: "
            "it was priced with another run's customer"
        )
    rtt.check_isolation(
        results,
        flow_context=quote_flow.context,
        expected_contexts={r.state.run_id: {"quoted_for": n} for r, n in zip(results, names, strict=True)},
    )


def main() -> int:
    try:
        test_concurrent_quotes_are_isolated()
    except AssertionError as failure:
        print("runtime.testing found a bug in the quote workflow.\n")
        print(f"What went wrong: {str(failure).splitlines()[0]}\n")
        print("The smallest case Hypothesis could shrink it to:")
        for note in getattr(failure, "__notes__", []):
            for line in note.splitlines():
                if line.startswith(("You can reproduce", "Explanation", "    These lines", "        /")):
                    continue
                if line.strip():
                    print(f"  {line}")
        print(
            "\nTwo overlapping runs and one short delay are enough: the memo is a module-level dict, "
            "so one run prices with the customer the other stored.\n"
            "Fix: keep per-run data in rt.context (or the node's arguments), never in a module global."
        )
        return 0
    print("No bug found (was the memo fixed?).")
    return 1


if __name__ == "__main__":
    sys.exit(main())
