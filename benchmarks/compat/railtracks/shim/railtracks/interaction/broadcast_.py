"""``railtracks.interaction.broadcast_``."""

import runtime as _rt

from .. import _gap

broadcast = _gap.mapped(_rt, "broadcast", "railtracks.interaction.broadcast_.broadcast")

__getattr__ = _gap.module_getattr(__name__)
