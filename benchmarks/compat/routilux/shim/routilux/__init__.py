"""A stand-in ``routilux`` package that maps Routilux 0.10's names onto trioflow (see ``_names``)."""

import runtime

from ._names import missing, trioflow

Routine = runtime.Routine
ExecutionContext = runtime.ExecutionContext
Slot = runtime.Slot
Event = runtime.RoutineEvent
Connection = trioflow("Connection")
Flow = runtime.Flow
JobState = runtime.JobState
ExecutionRecord = runtime.HistoryEntry
ErrorHandler = runtime.ErrorHandler
ErrorStrategy = runtime.ErrorStrategy
ExecutionTracker = missing("routilux.ExecutionTracker")
OutputHandler = missing("routilux.OutputHandler")
QueueOutputHandler = missing("routilux.QueueOutputHandler")
CallbackOutputHandler = missing("routilux.CallbackOutputHandler")
NullOutputHandler = missing("routilux.NullOutputHandler")

__version__ = "0.10.0"
