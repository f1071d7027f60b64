"""``railtracks.orchestration``."""

import runtime as _rt

from .. import _gap

Flow = _gap.mapped(_rt, "Flow", "railtracks.orchestration.Flow")
FlowConnection = _gap.mapped(_rt, "FlowConnection", "railtracks.orchestration.FlowConnection")

__getattr__ = _gap.module_getattr(__name__)
