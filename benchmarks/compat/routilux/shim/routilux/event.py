import runtime

Event = runtime.RoutineEvent
