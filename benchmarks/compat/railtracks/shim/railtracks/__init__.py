"""``railtracks`` on trioflow: Railtracks' public names mapped onto ``runtime``, nothing more.

Used only by the compat harness (``python -m benchmarks.compat.railtracks``).
Every name here is a trioflow name under its Railtracks spelling; a name
trioflow lacks is a placeholder that raises ``CompatGap`` naming it when used.
"""

import runtime as _rt

from . import _gap

_gap.install()

function_node = _gap.mapped(_rt, "function_node", "railtracks.function_node")
call = _gap.mapped(_rt, "call", "railtracks.call")
call_batch = _gap.mapped(_rt, "call_batch", "railtracks.call_batch")
broadcast = _gap.mapped(_rt, "broadcast", "railtracks.broadcast")
Flow = _gap.mapped(_rt, "Flow", "railtracks.Flow")
FlowConnection = _gap.mapped(_rt, "FlowConnection", "railtracks.FlowConnection")
session = _gap.mapped(_rt, "session", "railtracks.session")
Session = _gap.mapped(_rt, "Session", "railtracks.Session")
set_config = _gap.mapped(_rt, "set_config", "railtracks.set_config")

from . import context as context  # noqa: E402  (rt.context is a module in Railtracks)

__getattr__ = _gap.module_getattr("railtracks")
