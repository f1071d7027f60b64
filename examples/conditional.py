"""Seed 000, "Multiple Workflows": two independent flows, each with its own context.

Only the import line differs from the seed.
"""

import runtime as rt


@rt.function_node
async def greet(name: str) -> str:
    return f"Hello, {name}!"


@rt.function_node
async def farewell(name: str) -> str:
    return f"Bye, {name}!"

@rt.function_node
async def conditional_greet():
    if rt.context.get("action") == "greet":
        return await rt.call(greet, rt.context.get("name"))

@rt.function_node
async def conditional_farewell():
    if rt.context.get("action") == "farewell":
        return await rt.call(farewell, rt.context.get("name"))

# Create independent flows
first_flow = rt.Flow(
    "greet-flow",
    entry_point=conditional_greet,
    context={"action": "greet", "name": "Diana"},
)

second_flow = rt.Flow(
    "farewell-flow",
    entry_point=conditional_farewell,
    context={"action": "farewell", "name": "Robert"},
)

if __name__ == "__main__":
    # Run independently
    result1 = first_flow.invoke()
    result2 = second_flow.invoke()
    print(result1)  # "Hello, Diana!"
    print(result2)  # "Bye, Robert!"
