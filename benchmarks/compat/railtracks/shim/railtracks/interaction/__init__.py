"""``railtracks.interaction``: calls, batches, broadcasts."""

import runtime as _rt

from .. import _gap

call = _gap.mapped(_rt, "call", "railtracks.interaction.call")
call_batch = _gap.mapped(_rt, "call_batch", "railtracks.interaction.call_batch")
broadcast = _gap.mapped(_rt, "broadcast", "railtracks.interaction.broadcast")

__getattr__ = _gap.module_getattr(__name__)
