"""``railtracks.exceptions``: the errors that have a trioflow counterpart."""

import runtime as _rt

from .. import _gap

GlobalTimeOutError = _gap.mapped(_rt, "RunTimeoutError", "railtracks.exceptions.GlobalTimeOutError")

__getattr__ = _gap.module_getattr(__name__)
