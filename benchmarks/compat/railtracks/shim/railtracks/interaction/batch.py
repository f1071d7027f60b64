"""``railtracks.interaction.batch``."""

import runtime as _rt

from .. import _gap

call_batch = _gap.mapped(_rt, "call_batch", "railtracks.interaction.batch.call_batch")

__getattr__ = _gap.module_getattr(__name__)
