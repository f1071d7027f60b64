"""``railtracks.interaction._call``."""

import runtime as _rt

from .. import _gap

call = _gap.mapped(_rt, "call", "railtracks.interaction._call.call")

__getattr__ = _gap.module_getattr(__name__)
