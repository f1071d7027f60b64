"""``railtracks.orchestration.flow``."""

import runtime as _rt

from .. import _gap

Flow = _gap.mapped(_rt, "Flow", "railtracks.orchestration.flow.Flow")

__getattr__ = _gap.module_getattr(__name__)
