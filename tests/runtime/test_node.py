"""``@rt.function_node`` and :class:`rt.Node`."""

import inspect
import re
import threading

import pytest
import trio
import trio.testing

import runtime as rt


@rt.function_node
async def greet(name: str, punctuation: str = "!") -> str:
    """Say hello to *name*."""
    return f"Hello, {name}{punctuation}"


@rt.function_node
def shout(text: str) -> str:
    """Upper-case *text*, in a worker thread."""
    return text.upper()


def _thread_name() -> str:
    return threading.current_thread().name


def test_async_function_keeps_signature_and_docstring() -> None:
    assert isinstance(greet, rt.Node)
    assert greet.name == "greet"
    assert greet.__name__ == "greet"
    assert greet.__doc__ == "Say hello to *name*."
    assert inspect.signature(greet) == inspect.signature(greet.fn)
    assert str(inspect.signature(greet)) == "(name: str, punctuation: str = '!') -> str"
    assert greet.is_async
    assert not greet.thread
    assert repr(greet) == "<Node greet(name: str, punctuation: str = '!') -> str>"


def test_plain_function_keeps_signature_and_docstring() -> None:
    assert shout.__doc__ == "Upper-case *text*, in a worker thread."
    assert str(inspect.signature(shout)) == "(text: str) -> str"
    assert not shout.is_async


def test_calling_a_node_directly_calls_the_function() -> None:
    assert shout("hi") == "HI"


async def test_calling_an_async_node_directly_returns_its_coroutine() -> None:
    assert await greet("Ann") == "Hello, Ann!"


def test_options_form_names_the_node() -> None:
    @rt.function_node(name="fetch")
    async def get(url: str) -> str:
        return url

    assert get.name == "fetch"
    assert get.__name__ == "get"


def test_async_node_runs_in_a_flow() -> None:
    assert rt.Flow("greet", entry_point=greet).invoke("Bob", punctuation="?") == "Hello, Bob?"


@pytest.mark.parametrize("thread", [None, True])
def test_a_plain_node_runs_in_a_worker_thread_unless_thread_false(thread: bool | None) -> None:
    @rt.function_node(thread=thread)
    def where() -> str:
        return _thread_name()

    assert where.thread
    assert rt.Flow("threaded", entry_point=where).invoke() != _thread_name()
    assert rt.function_node(where.fn).thread


def test_thread_false_keeps_a_plain_node_on_the_loop_thread() -> None:
    @rt.function_node(thread=False)
    def where() -> tuple[str, float]:
        return _thread_name(), trio.current_time()  # trio.current_time() works only on the loop's thread

    assert not where.thread
    name, _now = rt.Flow("inline", entry_point=where).invoke()
    assert name == _thread_name()


def test_an_async_node_never_runs_in_a_thread() -> None:
    async def fetch() -> None: ...

    assert not rt.function_node(fetch).thread
    assert not rt.function_node(thread=False)(fetch).thread


def test_thread_must_be_true_false_or_none() -> None:
    def fetch() -> None: ...

    with pytest.raises(
        TypeError,
        match=r"^@function_node\(thread='yes'\) on 'fetch': thread is True, False or None \(the default: a plain function runs in a worker thread\)\.$",
    ):
        rt.function_node(thread="yes")(fetch)  # type: ignore[call-overload]


def test_sync_siblings_in_a_call_batch_overlap() -> None:
    """Four plain nodes meet at a barrier: one after another, the first would wait alone and break it."""
    barrier = threading.Barrier(4, timeout=10)

    @rt.function_node
    def meet(n: int) -> int:
        barrier.wait()
        return n

    @rt.function_node
    async def fan() -> list[object]:
        return await rt.call_batch(meet, range(4))

    assert rt.Flow("fan", entry_point=fan).invoke() == [0, 1, 2, 3]


async def test_a_plain_node_past_the_timeout_ends_the_run_timed_out(autojump_clock: trio.testing.MockClock) -> None:
    """The thread cannot be stopped; the run ends ``timed_out`` as soon as it returns."""
    release = threading.Event()

    @rt.function_node
    def slow() -> str:
        release.wait(10)
        return "late"

    async def let_go() -> None:
        await trio.sleep(5)  # long past the run's timeout, on the mock clock
        release.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(let_go)
        result = await rt.Flow("slow", entry_point=slow, timeout=0.1).arun()
        assert trio.current_time() == 5
    assert release.is_set()
    assert result.status is rt.Status.TIMED_OUT
    assert isinstance(result.error, rt.RunTimeoutError)
    assert result.state.requests["r1"].status is rt.Status.CANCELLED


def test_thread_node_called_from_another_node() -> None:
    @rt.function_node(thread=True)
    def add(a: int, b: int) -> int:
        return a + b

    @rt.function_node
    async def total() -> int:
        return await rt.call(add, 2, 3) + await rt.call(add, a=10, b=20)

    assert rt.Flow("sum", entry_point=total).invoke() == 35


def test_thread_on_an_async_function_is_refused() -> None:
    async def fetch() -> None: ...

    with pytest.raises(
        TypeError,
        match=r"^@function_node\(thread=True\) on 'fetch': only plain functions can run in a worker thread; this one is async\.$",
    ):
        rt.function_node(thread=True)(fetch)


def test_a_node_cannot_be_wrapped_twice() -> None:
    with pytest.raises(TypeError, match=r"^'greet' is already a node; apply @function_node once\.$"):
        rt.function_node(greet)


def test_a_non_callable_is_refused() -> None:
    with pytest.raises(TypeError, match=r"^@function_node needs a function, not int 3\.$"):
        rt.function_node(3)  # type: ignore[call-overload]


def test_check_arguments_accepts_what_the_signature_accepts() -> None:
    greet.check_arguments(("Ann",), {})
    greet.check_arguments((), {"name": "Ann", "punctuation": "."})
    greet.check_arguments(("Ann", "."), {})


@pytest.mark.parametrize(
    ("args", "kwargs", "problem"),
    [
        ((), {}, "missing a required argument: 'name'"),
        (("a", "b", "c"), {}, "too many positional arguments"),
        (("a",), {"name": "b"}, "multiple values for argument 'name'"),
        (("a",), {"colour": "red"}, "got an unexpected keyword argument 'colour'"),
    ],
)
def test_check_arguments_names_the_node_and_the_problem(
    args: tuple[object, ...], kwargs: dict[str, object], problem: str
) -> None:
    expected = (
        f"Cannot call node 'greet' with these arguments: {problem}. "
        "Its signature is greet(name: str, punctuation: str = '!') -> str."
    )
    with pytest.raises(rt.NodeArgumentError, match=f"^{re.escape(expected)}$") as info:
        greet.check_arguments(args, kwargs)
    assert isinstance(info.value, TypeError)


async def test_thread_node_leaves_the_trio_loop_free() -> None:
    started = threading.Event()
    release = threading.Event()

    @rt.function_node(thread=True)
    def blocking() -> str:
        started.set()
        release.wait(5)
        return "done"

    @rt.function_node
    async def both() -> list[str]:
        async def unblock() -> None:
            await trio.to_thread.run_sync(started.wait, 5)
            release.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(unblock)
            result = await rt.call(blocking)
        return [result]

    assert await rt.Flow("both", entry_point=both).ainvoke() == ["done"]


async def test_a_timed_out_run_waits_for_its_thread_node_so_no_work_outlives_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A thread cannot be killed: the run's end waits for it, rather than leave it running."""
    release = threading.Event()
    finished = threading.Event()

    @rt.function_node(thread=True)
    def slow() -> str:
        release.wait(5)
        finished.set()
        return "late"

    @rt.function_node
    async def entry() -> str:
        return await rt.call(slow)

    async def let_go() -> None:
        await trio.sleep(2)  # past the run's timeout, on the mock clock
        release.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(let_go)
        result = await rt.Flow("threaded", entry_point=entry, timeout=1).arun()
        assert finished.is_set()  # the thread ended before the run did
        assert trio.current_time() == 2
    assert result.status is rt.Status.TIMED_OUT
    # What the thread returned after the cancel is discarded: both requests end cancelled.
    assert [r.status for r in result.state.requests.values()] == [rt.Status.CANCELLED] * 2


async def test_a_thread_node_can_notice_the_cancel_with_check_cancelled(
    autojump_clock: trio.testing.MockClock,
) -> None:
    cleaned_up = threading.Event()
    polls: list[int] = []

    @rt.function_node(thread=True)
    def cooperative() -> str:
        try:
            while True:
                polls.append(1)
                trio.from_thread.check_cancelled()  # raises trio.Cancelled once the run is
                threading.Event().wait(0.001)
        finally:
            cleaned_up.set()

    result = await rt.Flow("cooperative", entry_point=cooperative, timeout=1).arun()
    assert cleaned_up.is_set()
    assert polls
    assert result.status is rt.Status.TIMED_OUT
    assert result.state.requests["r1"].status is rt.Status.CANCELLED
