"""Seed 000, "More Examples / Tracked Execution": the run's state is saved to a file.

The seed leaves ``sample_node`` undefined; here it builds a small report from
two child calls. The state goes to ``.trioflow/daily-report-v1.json`` (the
seed's ``.railtracks/`` directory is ``.trioflow/`` here); render it with
``python -m runtime show .trioflow/daily-report-v1.json``.
"""

import runtime as rt


@rt.function_node
async def count_orders(day: str) -> int:
    return {"mon": 12, "tue": 30}.get(day, 0)


@rt.function_node
async def sample_node() -> str:
    counts = await rt.call_batch(count_orders, ["mon", "tue"])
    return f"daily report: {sum(c for c in counts if isinstance(c, int))} orders"


sample_node_flow = rt.Flow("daily-report-v1", entry_point=sample_node, save_state=True)

if __name__ == "__main__":
    # Execution state saved to .trioflow/daily-report-v1.json
    result = sample_node_flow.invoke()
    print(result)  # daily report: 42 orders
    print(f"state saved to {sample_node_flow.state_path}")
