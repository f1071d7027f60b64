"""A state document round-trips any JobState whose free-form values are JSON values, and renders."""

import datetime
import json
import unicodedata

from hypothesis import given
from hypothesis import strategies as st

from runtime._cli import render_run
from runtime._serialize import dump_state, load_state
from runtime._state import Delivery, ErrorSummary, HistoryEntry, JobState, Request, Status

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4),
    max_leaves=12,
)
json_objects = st.dictionaries(st.text(), json_values, max_size=4)
ids = st.text(min_size=1, max_size=8)
offsets = st.floats(min_value=0, max_value=1e6, allow_nan=False)
datetimes = st.datetimes(min_value=datetime.datetime(2000, 1, 1), timezones=st.just(datetime.UTC))


@st.composite
def request_trees(draw: st.DrawFn) -> dict[str, Request]:
    requests: dict[str, Request] = {}
    for request_id in draw(st.lists(ids, unique=True, max_size=5)):
        parent = draw(st.none() | st.sampled_from(list(requests))) if requests else None
        requests[request_id] = Request(
            request_id,
            parent,
            draw(st.text(max_size=8)),
            draw(st.sampled_from(Status)),
            draw(offsets),
            draw(st.none() | offsets),
            draw(st.none() | offsets),
            draw(st.none() | st.text(max_size=20)),
            draw(st.none() | st.builds(ErrorSummary, st.text(), st.text(), st.tuples(ids))),
        )
    return requests


job_states = st.builds(
    JobState,
    job_id=ids,
    flow_id=ids,
    status=st.sampled_from(Status),
    created_at=datetimes,
    started_at=st.none() | datetimes,
    finished_at=st.none() | datetimes,
    requests=request_trees(),
    history=st.lists(st.builds(HistoryEntry, ids, ids, json_objects, datetimes, offsets)),
    routine_states=st.dictionaries(ids, json_objects, max_size=3),
    shared_data=json_objects,
    shared_log=st.lists(json_objects, max_size=3),
    context=json_objects,
    result=st.none() | st.text(),
    undelivered=st.lists(st.builds(Delivery, ids, ids, ids, ids, json_objects), max_size=2),
    metrics=st.dictionaries(ids, offsets, max_size=3),
)


@given(job_states)
def test_dump_json_load_round_trips(state: JobState) -> None:
    doc = dump_state(state, strict=True)
    loaded = load_state(json.loads(json.dumps(doc, allow_nan=False)))
    assert loaded == state
    assert list(loaded.requests) == list(state.requests)


_UNSAFE = {"Cc", "Cf", "Cs"}


@given(job_states)
def test_render_run_of_any_loadable_state_is_one_escaped_line_per_item(state: JobState) -> None:
    """Any state the loader accepts renders: one line per request and history entry, and no
    control character, bidi override or lone surrogate reaches the terminal, whatever the
    names, ids, results and errors hold."""
    loaded = load_state(json.loads(json.dumps(dump_state(state, strict=True))))
    lines = render_run(loaded).split("\n")
    assert all(unicodedata.category(char) not in _UNSAFE for line in lines for char in line)
    header = 1 + (loaded.error is not None or loaded.status is Status.COMPLETED)
    tree = 1 + len(loaded.requests) if loaded.requests else 0
    history = 1 + len(loaded.history) if loaded.history else 0
    assert len(lines) == header + tree + history


@given(job_states, st.none() | ids)
def test_flat_document_round_trips_any_state(state: JobState, current: str | None) -> None:
    """Routilux's flat form (JobState.serialize, then deserialize) through JSON gives back an equal
    state, with its current_routine_id and updated_at, whatever the values and names hold."""
    state.current_routine_id = current
    text = json.dumps(state.serialize(strict=True), allow_nan=False)
    loaded = JobState().deserialize(json.loads(text))
    assert loaded == state
    assert (loaded.current_routine_id, loaded.updated_at) == (current, state.updated_at)
    assert list(loaded.requests) == list(state.requests)
