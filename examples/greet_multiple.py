"""Seed 000, "Configuring Your Session": a flow with a timeout, a context and saved state.

Only the import line differs from the seed. The state is written to
``.trioflow/greet-multiple-flow.json``; show it with
``python -m runtime show .trioflow/greet-multiple-flow.json``.
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

greeting_multiple_flow = rt.Flow(
    "greet-multiple-flow",
    entry_point=greet_multiple,
    timeout=30,  # 30 second timeout
    context={"user_id": "123"},  # Global context variables
    save_state=True,  # Save execution state to file
)

if __name__ == "__main__":
    multiple_greeting_response = greeting_multiple_flow.invoke(names=["Bob", "Charlie"])
    print(multiple_greeting_response)  # ['Hello, Bob!', 'Hello, Charlie!']
