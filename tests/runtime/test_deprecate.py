"""Deprecations, and the legacy ``@rt.session`` decorator."""

import pathlib
import re
import subprocess
import sys

import pytest
import trio

import runtime as rt
from runtime._deprecate import warn_deprecated

_SESSION_WARNING = re.escape(
    "@rt.session is deprecated since trioflow 0.1; use rt.Flow(name, entry_point=node, ...) instead."
)


@rt.function_node
async def greet(name: str) -> str:
    return f"Hello, {name}!"


def test_warn_deprecated_names_the_thing_version_replacement_and_issue() -> None:
    with pytest.warns(
        rt.TrioflowDeprecationWarning,
        match=r"^old_api\(\) is deprecated since trioflow 0\.1; use new_api\(\) instead\. "
        r"\(https://github\.com/trioflow/trioflow/issues/12\)$",
    ) as record:
        warn_deprecated("old_api()", version="0.1", instead="new_api()", issue=12, stacklevel=2)
    assert record[0].filename == __file__
    assert issubclass(rt.TrioflowDeprecationWarning, DeprecationWarning)


def test_session_warns_once_when_applied() -> None:
    with pytest.warns(rt.TrioflowDeprecationWarning, match=f"^{_SESSION_WARNING}$") as record:

        @rt.session
        async def main() -> None: ...

    assert len(record) == 1
    assert record[0].filename == __file__
    with pytest.warns(rt.TrioflowDeprecationWarning, match=f"^{_SESSION_WARNING}$") as record:

        @rt.session(timeout=5)
        async def configured() -> None: ...

    assert record[0].filename == __file__


def test_session_on_a_sync_function_is_a_type_error() -> None:
    def sync_main() -> None: ...

    with pytest.raises(
        TypeError,
        match=r"^@rt\.session: the @session decorator can only be applied to async functions, and '.*sync_main' "
        r"is not one\. "
        r"Make it `async def`, or use rt\.Flow\(name, entry_point=rt\.function_node\(fn\)\)\.$",
    ):
        rt.session(sync_main)  # type: ignore[arg-type]


async def test_each_call_is_its_own_isolated_run() -> None:
    with pytest.warns(rt.TrioflowDeprecationWarning):

        @rt.session(context={"visits": []})
        async def main(name: str) -> tuple[str, str | None, object]:
            visits = rt.context.get("visits")
            assert isinstance(visits, list)
            visits.append(name)
            return await rt.call(greet, name), rt.request().run_id, list(visits)

    first, first_session = await main("Ann")
    second, second_session = await main("Bob")
    assert first_session.session_id == first[1]
    assert second_session.session_id == second[1]
    assert first[0] == "Hello, Ann!"
    assert second[0] == "Hello, Bob!"
    assert first[1] != second[1]
    assert first[2] == ["Ann"]
    assert second[2] == ["Bob"]  # nothing of the first run is seen by the second


def test_session_keeps_the_functions_name_and_docstring() -> None:
    with pytest.warns(rt.TrioflowDeprecationWarning):

        @rt.session
        async def report(day: str) -> str:
            """Make the daily report."""
            return day

    assert report.__name__ == "report"
    assert report.__doc__ == "Make the daily report."


async def test_a_call_returns_the_result_and_the_session_as_railtracks_1_7_does() -> None:
    with pytest.warns(rt.TrioflowDeprecationWarning):

        @rt.session(context={"user": "ann"})
        async def main(name: str) -> str:
            rt.context.put("greeted", name)
            return await rt.call(greet, name)

    result, session = await main("Ann")
    assert result == "Hello, Ann!"
    assert isinstance(session, rt.Session)
    assert isinstance(session, rt.SessionView)
    assert session.name == "main"
    assert session.context.as_dict() == {"user": "ann", "greeted": "Ann"}
    assert session.result is not None
    assert session.result.status is rt.Status.COMPLETED
    assert session.state.job_id == session.session_id == session._identifier
    assert session.info.answer == "Hello, Ann!"
    assert session.payload() == rt.dump_state(session.state)
    assert session.rt_state.executor_config.end_on_error is False


async def test_session_settings_apply_to_each_run(
    autojump_clock: trio.abc.Clock, tmp_path: pathlib.Path
) -> None:
    with pytest.warns(rt.TrioflowDeprecationWarning):

        @rt.session(name="slow-session", timeout=2)
        async def slow() -> None:
            await trio.sleep(10)

    with pytest.raises(
        rt.RunTimeoutError, match=r"^Flow 'slow-session' \(run run-[0-9a-f]{12}\) timed out after 2 s;"
    ):
        await slow()
    assert trio.current_time() == 2.0


_BUSY_WARNING = (
    r"^runtime\.Busy is deprecated since trioflow 0\.1; use runtime\.BusyError instead\. "
    r"\(https://github\.com/trioflow/trioflow/issues/13\)$"
)


def test_the_old_busy_name_warns_and_gives_busy_error() -> None:
    with pytest.warns(rt.TrioflowDeprecationWarning, match=_BUSY_WARNING) as record:
        old = rt.Busy
    assert old is rt.BusyError
    assert len(record) == 1
    assert record[0].filename == __file__


def test_importing_the_old_busy_name_warns() -> None:
    with pytest.warns(rt.TrioflowDeprecationWarning, match=_BUSY_WARNING):
        from runtime import Busy
    assert Busy is rt.BusyError


def test_the_old_busy_name_is_not_public() -> None:
    assert "Busy" not in rt.__all__
    assert "Busy" not in dir(rt)


def test_an_unknown_attribute_is_still_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match=r"^module 'runtime' has no attribute 'Bussy'$") as info:
        rt.Bussy  # noqa: B018
    assert info.value.name == "Bussy"
    assert not hasattr(rt, "Bussy")


def test_the_old_fault_injection_error_name_warns_and_gives_the_fuzz_kits_class() -> None:
    with pytest.warns(
        rt.TrioflowDeprecationWarning,
        match=(
            r"^runtime\.FaultInjectionError is deprecated since trioflow 0\.1; "
            r"use runtime\.testing\.FaultInjectionError instead\. "
        ),
    ):
        old = rt.FaultInjectionError
    from runtime.testing import FaultInjectionError

    assert old is FaultInjectionError
    assert issubclass(old, rt.TrioflowError)
    assert "FaultInjectionError" not in rt.__all__


def test_runtime_does_not_import_the_fuzz_kit_for_its_moved_error() -> None:
    code = "import sys, runtime; assert 'runtime.testing' not in sys.modules, sorted(sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True)
