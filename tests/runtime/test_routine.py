"""``rt.Routine``: slots, events, emit, error handlers, execution context and per-job copies."""

import copy
import threading

import pytest

import runtime as rt
from runtime._routine import copy_for_job


class Echo(rt.Routine):
    def __init__(self) -> None:
        super().__init__()
        self.input_slot = self.define_slot("input", handler=self.process)
        self.output_event = self.define_event("output", ["result"])
        self.seen: list[object] = []

    def process(self, data: object = None, **kwargs: object) -> None:
        self.seen.append(data)
        self.emit("output", result=data)


# -- declarations ---------------------------------------------------------------


def test_define_slot_and_event_return_their_definitions() -> None:
    echo = Echo()
    assert isinstance(echo.input_slot, rt.Slot)
    assert echo.input_slot.name == "input"
    assert echo.input_slot.handler == echo.process
    assert echo.input_slot.merge_strategy == "override"
    assert isinstance(echo.output_event, rt.RoutineEvent)
    assert echo.output_event.params == frozenset({"result"})
    assert list(echo.slots) == ["input"]
    assert list(echo.events) == ["output"]
    assert repr(echo) == "<Echo slots=['input'] events=['output']>"
    assert repr(echo.output_event) == "<RoutineEvent 'output' params=['result']>"


def test_event_without_params_accepts_any() -> None:
    routine = rt.Routine()
    assert routine.define_event("anything").params is None
    assert repr(routine.events["anything"]) == "<RoutineEvent 'anything' params=any>"


def test_duplicate_slot_is_refused() -> None:
    echo = Echo()
    with pytest.raises(
        rt.GraphDefinitionError,
        match=r"^Echo\.define_slot\('input'\): the routine already has a slot 'input'; give each slot its own name\.$",
    ):
        echo.define_slot("input")


def test_duplicate_event_is_refused() -> None:
    echo = Echo()
    with pytest.raises(
        rt.GraphDefinitionError,
        match=r"^Echo\.define_event\('output'\): the routine already has an event 'output'; give each event its own name\.$",
    ):
        echo.define_event("output")


def test_a_slot_or_event_name_that_is_not_a_non_empty_string_is_refused() -> None:
    echo = Echo()
    with pytest.raises(TypeError, match=r"^Echo\.define_slot\(''\): a slot name is a non-empty string\.$"):
        echo.define_slot("")
    with pytest.raises(TypeError, match=r"^Echo\.define_event\(3\): an event name is a non-empty string\.$"):
        echo.define_event(3)  # type: ignore[arg-type]


def test_event_params_given_as_a_string_are_refused() -> None:
    with pytest.raises(
        TypeError,
        match=r"^Routine\.define_event\('out', 'result'\): give the parameters as a list of names, e.g\. \['result'\]\.$",
    ):
        rt.Routine().define_event("out", "result")


def test_handler_must_be_callable() -> None:
    with pytest.raises(
        TypeError, match=r"^Routine\.define_slot\('in', handler=42\): the handler must be callable\.$"
    ):
        rt.Routine().define_slot("in", handler=42)  # type: ignore[arg-type]


def test_unknown_merge_strategy_is_refused() -> None:
    with pytest.raises(
        TypeError, match=r"merge_strategy='sum'\): choose 'override', 'append', or a function"
    ):
        rt.Routine().define_slot("in", merge_strategy="sum")


def test_forgetting_super_init_is_named() -> None:
    class Bad(rt.Routine):
        def __init__(self) -> None:
            self.define_slot("in")

    with pytest.raises(
        TypeError,
        match=r"^Bad was not initialised as a Routine: call super\(\)\.__init__\(\) at the start of its __init__\.$",
    ):
        Bad()


# -- outside a job ----------------------------------------------------------------


def test_emit_outside_a_job_is_a_clear_error() -> None:
    echo = Echo()
    with pytest.raises(
        rt.OutsideRunError,
        match=r"^Echo\.emit\('output'\) was called outside a job\. A routine emits from its slot handlers while a "
        r"job runs: flow\.execute\(\.\.\.\), await flow\.aexecute\(\.\.\.\), or async with flow\.open_job\(\.\.\.\)\.$",
    ):
        echo.process("x")
    with pytest.raises(rt.OutsideRunError, match=r"^Echo\.send_output\('result'\) was called outside a job"):
        echo.send_output("result", value=1)
    with pytest.raises(
        rt.OutsideRunError, match=r"^Echo\.emit_deferred_event\('output'\) was called outside"
    ):
        echo.emit_deferred_event("output", result=1)


def test_no_execution_context_outside_a_job() -> None:
    assert Echo().get_execution_context() is None


# -- configuration and error handlers ---------------------------------------------


def test_config_round_trip() -> None:
    echo = Echo()
    echo.set_config(timeout=3, name="e")
    assert echo.get_config("timeout") == 3
    assert echo.get_config("missing", "d") == "d"


def test_error_handler_from_a_strategy_or_its_name() -> None:
    echo = Echo()
    assert echo.get_error_handler() is None
    echo.set_error_handler("skip")
    assert echo.get_error_handler() == rt.ErrorHandler(strategy=rt.ErrorStrategy.SKIP)
    echo.set_error_handler(rt.ErrorStrategy.CONTINUE)
    handler = echo.get_error_handler()
    assert handler is not None
    assert handler.strategy is rt.ErrorStrategy.CONTINUE


def test_error_handler_defaults_and_backoff() -> None:
    handler = rt.ErrorHandler(strategy="retry", max_retries=3, retry_delay=0.1, retry_backoff=2.0)
    assert handler.strategy is rt.ErrorStrategy.RETRY
    assert handler.retryable_exceptions == (Exception,)
    assert [handler.delay_before(k) for k in (1, 2, 3)] == pytest.approx([0.1, 0.2, 0.4])
    assert rt.ErrorHandler().strategy is rt.ErrorStrategy.STOP


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        (
            {"strategy": "explode"},
            r"^ErrorHandler\(strategy='explode'\): a strategy is one of 'stop', 'continue', 'retry', 'skip' \(or an ErrorStrategy\)\.$",
        ),
        (
            {"max_retries": -1},
            r"^ErrorHandler\(max_retries=-1\): give a whole number of retries, 0 or more\.$",
        ),
        (
            {"retry_delay": -0.5},
            r"^ErrorHandler\(retry_delay=-0\.5\): give a finite number of seconds, 0 or more\.$",
        ),
        (
            {"retry_backoff": 0},
            r"^ErrorHandler\(retry_backoff=0\): give a finite factor above 0 \(1 keeps the delay constant\)\.$",
        ),
    ],
)
def test_bad_error_handler_settings(kwargs: dict[str, object], pattern: str) -> None:
    with pytest.raises(ValueError, match=pattern):
        rt.ErrorHandler(**kwargs)  # type: ignore[arg-type]


def test_retryable_exceptions_must_be_exception_classes() -> None:
    with pytest.raises(
        TypeError, match=r"^ErrorHandler\(retryable_exceptions=\.\.\.\): 3 is not an Exception subclass\.$"
    ):
        rt.ErrorHandler(retryable_exceptions=(3,))  # type: ignore[arg-type]


# -- per-job copies -----------------------------------------------------------------


def test_a_job_copy_shares_definitions_and_copies_state() -> None:
    echo = Echo()
    echo.set_config(tags=["a"])
    copied = copy_for_job(echo, "echo")
    assert copied is not echo
    assert type(copied) is Echo
    assert copied.input_slot is echo.input_slot  # definitions are shared
    assert copied.seen == []
    assert copied.seen is not echo.seen
    copied.seen.append(1)
    copied._config["tags"].append("b")  # type: ignore[attr-defined]
    assert echo.seen == []
    assert echo.get_config("tags") == ["a"]
    copied.define_slot("late")
    assert "late" not in echo.slots


def test_a_job_copy_keeps_aliasing_and_rebinds_methods() -> None:
    class Holder(rt.Routine):
        def __init__(self) -> None:
            super().__init__()
            self.shared = [1, 2]
            self.alias = self.shared
            self.nested = {"items": [[1], [2]]}
            self.callback = self.helper

        def helper(self) -> object:
            return self

    holder = Holder()
    copied = copy.deepcopy(holder)
    assert copied.alias is copied.shared
    assert copied.nested == holder.nested
    assert copied.nested["items"][0] is not holder.nested["items"][0]
    assert copied.callback() is copied


def test_a_routine_that_cannot_be_copied_is_named() -> None:
    class Locked(rt.Routine):
        def __init__(self) -> None:
            super().__init__()
            self.lock = threading.Lock()

    with pytest.raises(
        TypeError,
        match=r"^Routine 'locked' \(Locked\) cannot be copied for a job: TypeError: cannot pickle '_thread\.lock' object\. "
        r"Each job works on its own copy of every routine",
    ):
        copy_for_job(Locked(), "locked")
