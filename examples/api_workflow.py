"""Seed 000, "More Examples / API Workflows": context variables reach every node.

The seed leaves ``sample_node`` undefined; here it reads the flow's context
and passes the region to a child node, which reads the key from the context too.
"""

import runtime as rt


@rt.function_node
async def endpoint(region: str) -> str:
    key = str(rt.context.get("api_key"))
    return f"https://{region}.api.example.com (key {key[:2]}***)"


@rt.function_node
async def sample_node() -> str:
    return await rt.call(endpoint, str(rt.context.get("region")))


sample_node_flow = rt.Flow("api-flow", entry_point=sample_node, context={"api_key": "secret", "region": "us-west"})

if __name__ == "__main__":
    # Context variables are available to all nodes
    result = sample_node_flow.invoke()
    print(result)  # https://us-west.api.example.com (key se***)
