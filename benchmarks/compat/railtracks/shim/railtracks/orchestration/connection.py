"""``railtracks.orchestration.connection``."""

import runtime as _rt

from .. import _gap

FlowConnection = _gap.mapped(_rt, "FlowConnection", "railtracks.orchestration.connection.FlowConnection")

__getattr__ = _gap.module_getattr(__name__)
