"""Seed 000's first examples, with only the import line changed."""

import runtime as rt


@rt.function_node
async def greet(name: str) -> str:
    return f"Hello, {name}!"


flow = rt.Flow("greet-flow", entry_point=greet)

if __name__ == "__main__":
    result = flow.invoke(name="Alice")
    print(result)  # "Hello, Alice!"
