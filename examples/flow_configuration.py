"""Seed 000, "Session Context Manager": the Flow configuration that replaces it.

Only the import line differs from the seed (``greet`` and ``greet_multiple``
come from the seed's earlier sections).
"""

import runtime as rt


@rt.function_node
async def greet(name: str) -> str:
    return f"Hello, {name}!"


@rt.function_node
async def greet_multiple(names: list[str]):
    results = []
    for name in names:
        result = await rt.call(greet, name=name)
        results.append(result)
    return results


# Flow configuration approach (replaces session context manager)
second_flow = rt.Flow(
    "greet-multiple-flow",
    entry_point=greet_multiple,
    timeout=30,  # 30 second timeout
    context={"user_id": "123"},  # Global context variables
    save_state=True,  # Save execution state to file
)

if __name__ == "__main__":
    result = second_flow.invoke(names =["Bob", "Charlie"])
    print(result)  # ['Hello, Bob!', 'Hello, Charlie!']
