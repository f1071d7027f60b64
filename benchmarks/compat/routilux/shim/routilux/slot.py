import runtime

Slot = runtime.Slot
