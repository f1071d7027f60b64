"""Seed 000, "More Examples / Error Handling": end_on_error stops the run at the first failure.

The seed leaves ``sample_node`` undefined; here it calls a child node that
fails, and catches the failure. With ``end_on_error=True`` the run ends anyway,
so the seed's ``except`` prints ``Flow failed: ...``.
"""

import runtime as rt


@rt.function_node
async def fetch_report() -> str:
    raise ConnectionError("report service unavailable")


@rt.function_node
async def sample_node() -> str:
    try:
        return await rt.call(fetch_report)
    except ConnectionError:
        return "no report today"  # never reached: end_on_error ends the run first


sample_node_flow = rt.Flow("sample-flow", entry_point=sample_node, end_on_error=True)

if __name__ == "__main__":
    try:
        result = sample_node_flow.invoke()
    except Exception as e:
        print(f"Flow failed: {e}")
