from serilux import register_serializable  # Routilux re-exports serilux's here

import runtime

JobState = runtime.JobState
ExecutionRecord = runtime.HistoryEntry

__all__ = ["ExecutionRecord", "JobState", "register_serializable"]
