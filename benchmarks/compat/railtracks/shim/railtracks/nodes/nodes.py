"""``railtracks.nodes.nodes``."""

import runtime as _rt

from .. import _gap

Node = _gap.mapped(_rt, "Node", "railtracks.nodes.nodes.Node")

__getattr__ = _gap.module_getattr(__name__)
