from ._names import missing

ExecutionTracker = missing("routilux.ExecutionTracker")
