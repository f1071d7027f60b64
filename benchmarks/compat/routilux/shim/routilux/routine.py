import runtime

from ._names import private

Routine = runtime.Routine
ExecutionContext = runtime.ExecutionContext
_current_job_state = private("routilux.routine._current_job_state")
