"""OpenTelemetry traces of runs, checked with the SDK's in-memory span exporter."""

import pytest

try:
    import opentelemetry.sdk  # noqa: F401  # the otel extra: .ci/run installs it
except ImportError:  # nothing is skipped silently: without the extra these tests fail
    pytest.fail("These tests need the otel extra: pip install '.[test,otel]'.", pytrace=False)

import trio
import trio.testing
from hypothesis import given
from hypothesis import strategies as st
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

import runtime as rt
from runtime.testing import FlowSpec, flows


def _tracing() -> tuple[rt.TraceExporter, InMemorySpanExporter]:
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    return rt.TraceExporter(provider), memory


def _by_request(spans: tuple[ReadableSpan, ...]) -> dict[str, ReadableSpan]:
    return {
        str(s.attributes["trioflow.request_id"]): s
        for s in spans
        if s.attributes and "trioflow.request_id" in s.attributes
    }


@given(spec=flows(), attach=st.sampled_from(["recorder", "subscriber"]))
def test_the_spans_of_a_generated_flow_form_exactly_its_request_tree(spec: FlowSpec, attach: str) -> None:
    """Invariant: one root span per run, one span per request, each request span's parent is its
    calling request's span (the entry point's is the run's), and failed requests are errors;
    the same whether the exporter is attached as a recorder (batched) or a live subscriber."""
    exporter, memory = _tracing()
    generated = spec.build()
    if attach == "recorder":
        generated.flow.recorders = (exporter,)
    else:
        generated.flow.subscribers = (*generated.flow.subscribers, exporter)
    result = generated.run()
    spans = memory.get_finished_spans()
    roots = [s for s in spans if s.parent is None]
    assert len(roots) == 1
    root = roots[0]
    assert root.attributes is not None
    assert root.attributes["trioflow.run_id"] == result.state.run_id
    assert len({s.context.trace_id for s in spans}) == 1
    by_request = _by_request(spans)
    assert set(by_request) == set(result.state.requests)
    assert len(spans) == len(result.state.requests) + 1
    span_of = {s.context.span_id: s for s in spans}
    for request_id, span in by_request.items():
        request = result.state.requests[request_id]
        assert span.name == request.node
        assert span.parent is not None
        parent = span_of[span.parent.span_id]
        if request.parent_id is None:
            assert parent is root
        else:
            assert parent is by_request[request.parent_id]
        assert span.attributes is not None
        assert span.attributes["trioflow.status"] == request.status.value
        if request.status is rt.Status.COMPLETED:
            assert span.status.status_code is StatusCode.UNSET
        else:
            assert span.status.status_code is StatusCode.ERROR
        if request.error is not None:
            assert span.status.description == f"{request.error.type}: {request.error.message}"
    assert (root.status.status_code is StatusCode.UNSET) == (result.state.status is rt.Status.COMPLETED)


async def test_a_run_started_with_metadata_carries_its_user_and_conversation() -> None:
    exporter, memory = _tracing()

    @rt.function_node
    async def hello() -> str:
        return "hi"

    metadata = rt.RequestMetadata(user_id="u-1", conversation_id="c-9", run_id="run-meta")
    exporter.describe(metadata)
    flow = rt.Flow("meta", entry_point=hello, subscribers=[exporter])
    # A run started with request metadata, as a session starts one (its private entry point).
    async with flow._open_stream((), {}, metadata=metadata) as events:
        async for _ in events:
            pass
    root = next(s for s in memory.get_finished_spans() if s.parent is None)
    assert root.name == "run meta"
    assert root.attributes is not None
    assert (root.attributes["trioflow.user_id"], root.attributes["trioflow.conversation_id"]) == (
        "u-1",
        "c-9",
    )


async def test_a_cancelled_run_ends_its_open_spans_as_errors(autojump_clock: trio.testing.MockClock) -> None:
    exporter, memory = _tracing()

    @rt.function_node
    async def forever() -> None:
        await trio.sleep_forever()

    result = await rt.Flow("stuck", entry_point=forever, timeout=1.0, subscribers=[exporter]).arun()
    assert result.state.status is rt.Status.TIMED_OUT
    spans = {s.name: s for s in memory.get_finished_spans()}
    assert spans["forever"].status.status_code is StatusCode.ERROR
    assert spans["forever"].status.description == "cancelled"
    assert spans["run stuck"].status.description is not None
    assert spans["run stuck"].status.description.startswith("runtime.RunTimeoutError: Flow 'stuck'")
    assert spans["forever"].end_time is not None
    assert spans["forever"].start_time is not None
    assert spans["forever"].end_time - spans["forever"].start_time == pytest.approx(1e9, rel=1e-3)


def test_routine_events_become_spans_under_the_run() -> None:
    class Echo(rt.Routine):
        def __init__(self) -> None:
            super().__init__()
            self.define_slot("input", handler=self.on_input)
            self.define_event("output", ["data"])

        def on_input(self, data: object = None, **_: object) -> None:
            self.emit("output", data=data)

    exporter, memory = _tracing()
    flow = rt.Flow(flow_id="echo", subscribers=[exporter])
    flow.add_routine(Echo(), "a")
    flow.add_routine(Echo(), "b")
    flow.connect("a", "output", "b", "input")
    flow.execute("a", {"data": 1})
    spans = memory.get_finished_spans()
    root = next(s for s in spans if s.parent is None)
    assert sorted(s.name for s in spans if s is not root) == ["a.output", "b.output"]
    assert all(
        s.parent is not None and s.parent.span_id == root.context.span_id for s in spans if s is not root
    )


async def test_a_sessions_user_and_conversation_reach_the_exporter_without_describe() -> None:
    exporter, memory = _tracing()

    @rt.function_node
    async def hello(message: object) -> str:
        return f"hi {message}"

    flow = rt.Flow("greet", entry_point=hello, recorders=[exporter])
    async with (
        rt.SessionManager(workflow=flow) as manager,
        manager.session(user_id="ada", conversation_id="c1", user_message_id="m1", trace_id="t-1") as session,
    ):
        assert await session.run("there") == "hi there"
        await session.run("again")
    roots = [s for s in memory.get_finished_spans() if s.parent is None]
    assert len(roots) == 2
    for root in roots:
        assert root.attributes is not None
        assert {k: v for k, v in root.attributes.items() if k != "trioflow.run_id"} == {
            "trioflow.flow": "greet",
            "trioflow.user_id": "ada",
            "trioflow.conversation_id": "c1",
            "trioflow.user_message_id": "m1",
            "trioflow.trace_id": "t-1",
            "trioflow.status": "completed",
        }
    assert exporter._metadata == {}  # nothing held once the runs started
