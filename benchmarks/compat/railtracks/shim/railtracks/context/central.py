"""``railtracks.context.central``: the global configuration."""

import runtime as _rt

from .. import _gap

set_config = _gap.mapped(_rt, "set_config", "railtracks.context.central.set_config")
get = _gap.mapped(_rt.context, "get", "railtracks.context.central.get")
put = _gap.mapped(_rt.context, "put", "railtracks.context.central.put")
update = _gap.mapped(_rt.context, "update", "railtracks.context.central.update")
delete = _gap.mapped(_rt.context, "delete", "railtracks.context.central.delete")
keys = _gap.mapped(_rt.context, "keys", "railtracks.context.central.keys")

__getattr__ = _gap.module_getattr(__name__)
