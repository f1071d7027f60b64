"""``rt.Routine``: slots, events, emit, error handlers, execution context and per-job instances."""

import threading

import pytest

import runtime as rt
import runtime._routine
from runtime._routine import RoutineProps


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


def test_emit_outside_a_job_is_a_clear_error_for_a_routine_of_a_flow() -> None:
    echo = Echo()
    rt.Flow("echoes").add_routine(echo, "echo")
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


# -- per-job instances ------------------------------------------------------------


class Given(rt.Routine):
    """Keeps what it was given, and a list and a lock it makes itself."""

    def __init__(self, sink: list[object], *, label: str = "given") -> None:
        super().__init__()
        self.sink = sink
        self.label = label
        self.made: list[object] = []
        self.lock = threading.Lock()
        self.input_slot = self.define_slot("input", handler=self.take)

    def take(self, data: object = None) -> None:
        self.sink.append(data)


def build(routine: object, routine_id: str = "r") -> rt.Routine:
    return RoutineProps.of(routine, "add_routine()").build(routine_id, "f")


def test_a_jobs_instance_shares_what_the_constructor_was_given_and_makes_the_rest_anew() -> None:
    sink: list[object] = []
    template = Given(sink, label="x")
    made = build(template)
    assert type(made) is Given
    assert made is not template
    assert made.sink is sink  # given: shared
    assert made.label == "x"
    assert made.made == []
    assert made.made is not template.made  # made by the routine: its own
    assert made.lock is not template.lock  # nothing is copied, so a lock is fine
    assert made.input_slot is not template.input_slot
    assert made.slots["input"]._func is Given.take


def test_settings_made_after_construction_carry_over_to_each_instance() -> None:
    def handler(x: int) -> None: ...

    conn = object()
    tags = ["a"]
    routine = rt.Routine()
    routine.define_slot("x", handler=handler, merge_strategy="append")
    routine.define_event("out", ["v"])
    routine.set_config(tags=tags)
    routine.set_error_handler("skip")
    routine.client = conn  # type: ignore[attr-defined]
    made = build(routine)
    assert list(made.slots) == ["x"]
    assert made.slots["x"].handler is handler
    assert made.slots["x"].merge_strategy == "append"
    assert made.events["out"].params == frozenset({"v"})
    assert made.get_config("tags") is tags  # given: shared, not copied
    assert made.get_error_handler() == rt.ErrorHandler(strategy="skip")
    assert made.client is conn  # type: ignore[attr-defined]
    routine.set_config(late=1)  # later settings reach later jobs
    assert build(routine).get_config("late") == 1


def test_a_handler_bound_to_the_template_is_bound_to_the_jobs_instance() -> None:
    echo = Echo()
    echo.define_slot("late", handler=echo.process)
    made = build(echo)
    slot = made.slots["late"]
    assert slot.handler.__self__ is made  # type: ignore[union-attr]
    assert slot._on_routine


def test_a_factory_is_called_per_instance_and_its_own_settings_are_not_repeated() -> None:
    calls: list[int] = []

    def make() -> rt.Routine:
        calls.append(1)
        routine = rt.Routine()
        routine.define_slot("x")  # after construction, but inside the factory
        return routine

    props = RoutineProps.of(make, "add_routine()")
    props.template.define_event("late")
    made = props.build("r", "f")
    assert len(calls) == 2
    assert list(made.slots) == ["x"]
    assert list(made.events) == ["late"]
    made = build(Echo)  # a Routine subclass is a factory too
    assert type(made) is Echo


def test_the_handler_facts_are_worked_out_once_per_function(monkeypatch: pytest.MonkeyPatch) -> None:
    class Fresh(rt.Routine):
        def __init__(self) -> None:
            super().__init__()
            self.define_slot("a", handler=self.a)

        def a(self, x: int) -> None: ...

    seen: list[object] = []
    real = runtime._routine._accepted_params

    def counting(handler: runtime._routine.Handler) -> frozenset[str] | None:
        seen.append(handler)
        return real(handler)

    monkeypatch.setattr(runtime._routine, "_accepted_params", counting)
    template = Fresh()
    for _ in range(3):
        assert build(template).slots["a"]._params == frozenset({"x"})
    assert len(seen) == 1


def test_an_iterator_given_to_a_constructor_is_refused() -> None:
    with pytest.raises(
        TypeError,
        match=r"^add_routine\(\): Given\(\.\.\.\) was given an iterator \(generator\) as its argument 1\. Each job makes "
        r"its own instance by calling the constructor again with the same arguments, and an iterator is used up by "
        r"the first job\. Pass a list, or a factory that makes a fresh routine for each job: "
        r"add_routine\(lambda: Given\(\.\.\.\), \.\.\.\)\.$",
    ):
        build(Given(x for x in range(3)))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"as its argument 'label'\."):
        build(Given([], label=iter("ab")))  # type: ignore[arg-type]
    with open(__file__) as handle:  # a file is an iterator, but a collaborator: shared
        made = build(Given([], label=handle))  # type: ignore[arg-type]
        assert isinstance(made, Given)
        assert made.label is handle


def test_a_constructor_that_fails_when_called_again_names_the_routine_and_the_fix() -> None:
    built: list[int] = []

    class Once(rt.Routine):
        def __init__(self) -> None:
            super().__init__()
            if built:
                msg = "already built"
                raise RuntimeError(msg)
            built.append(1)

    template = Once()
    with pytest.raises(RuntimeError, match=r"^already built\n") as caught:
        build(template, "once")
    assert caught.value.__notes__ == [
        "Building routine 'once' for a job of flow 'f': each job makes its own instance by calling Once() again. "
        "Make that safe to call once per job, or give add_routine() a factory that makes a fresh routine each time: "
        "flow.add_routine(lambda: Once(...), 'once')."
    ]


def test_an_instance_unlike_the_template_is_refused() -> None:
    names = iter(["first", "second"])

    class Drifting(rt.Routine):
        def __init__(self) -> None:
            super().__init__()
            self.define_slot(next(names))

    with pytest.raises(
        rt.GraphDefinitionError,
        match=r"^Routine 'd' of flow 'f': the instance made for a job by calling Drifting\(\) again has slots "
        r"'second', but the flow's routine has 'first'\. Each job makes its own instance; make the constructor "
        r"define the same slots and events every time\.$",
    ):
        build(Drifting(), "d")


@pytest.mark.parametrize(
    ("value", "pattern"),
    [
        (
            3,
            r"^add_routine\(\) got int 3, not a Routine\. Pass a routine instance, a Routine subclass, or a function "
            r"with no arguments that returns a routine\.$",
        ),
        (lambda: 3, r"^add_routine\(\): the factory .*<lambda> returned int 3, not a Routine instance\.$"),
    ],
)
def test_what_is_not_a_routine_nor_makes_one_is_refused(value: object, pattern: str) -> None:
    with pytest.raises(TypeError, match=pattern):
        RoutineProps.of(value, "add_routine()")


def test_a_factory_that_fails_is_named() -> None:
    def make() -> rt.Routine:
        msg = "no database"
        raise OSError(msg)

    with pytest.raises(OSError, match=r"^no database\n") as caught:
        RoutineProps.of(make, "add_routine()")
    assert caught.value.__notes__ == [
        "add_routine() called the factory test_a_factory_that_fails_is_named.<locals>.make with no arguments, as it "
        "does once now and once for every job."
    ]


def test_a_routine_can_be_an_abstract_base_class() -> None:
    import abc

    class Base(rt.Routine, abc.ABC):
        @abc.abstractmethod
        def go(self) -> None: ...

    class Concrete(Base):
        def go(self) -> None: ...

    with pytest.raises(TypeError, match=r"abstract"):
        Base()  # type: ignore[abstract]
    assert type(build(Concrete())) is Concrete


def test_a_factory_that_fails_for_a_job_is_named() -> None:
    calls: list[int] = []

    def make() -> rt.Routine:
        calls.append(1)
        if len(calls) > 1:
            msg = "the pool is closed"
            raise RuntimeError(msg)
        return rt.Routine()

    props = RoutineProps.of(make, "add_routine()")
    with pytest.raises(RuntimeError, match=r"^the pool is closed\n") as caught:
        props.build("pool", "f")
    assert caught.value.__notes__ == [
        "Building routine 'pool' for a job of flow 'f': each job makes its own instance by calling the factory "
        "test_a_factory_that_fails_for_a_job_is_named.<locals>.make again. Make it safe to call once per job."
    ]
