"""``railtracks.context``: ``rt.context``'s functions."""

import runtime as _rt

from .. import _gap

get = _gap.mapped(_rt.context, "get", "railtracks.context.get")
put = _gap.mapped(_rt.context, "put", "railtracks.context.put")
update = _gap.mapped(_rt.context, "update", "railtracks.context.update")
delete = _gap.mapped(_rt.context, "delete", "railtracks.context.delete")
keys = _gap.mapped(_rt.context, "keys", "railtracks.context.keys")

__getattr__ = _gap.module_getattr(__name__)
