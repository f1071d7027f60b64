"""``rt.context`` and ``rt.request()``: what a node sees of its run."""

import threading

import pytest
import trio
import trio.testing

import runtime as rt


def _flow(node: rt.Node[..., object], **context: object) -> rt.Flow[..., object]:
    return rt.Flow(node.name, entry_point=node, context=context)


def test_get_put_update_delete() -> None:
    @rt.function_node
    async def edit() -> dict[str, object]:
        seen = {"a": rt.context.get("a"), "missing": rt.context.get("missing", None), "dflt": rt.context.get("x", 7)}
        rt.context.put("b", 2)
        rt.context.update({"c": 3, "a": 10})
        rt.context.delete("gone")
        seen["has_gone"] = "gone" in rt.context
        seen["has_b"] = "b" in rt.context
        seen["all"] = rt.context.as_dict()
        return seen

    result = _flow(edit, a=1, gone=0).run()
    assert result.result == {
        "a": 1,
        "missing": None,
        "dflt": 7,
        "has_gone": False,
        "has_b": True,
        "all": {"a": 10, "b": 2, "c": 3},
    }
    assert result.state.context == {"a": 10, "b": 2, "c": 3}


def test_get_of_a_missing_key_without_a_default_raises_key_error_listing_the_keys() -> None:
    @rt.function_node
    async def read() -> object:
        return rt.context.get("nope")

    result = _flow(read, a=1, b=2).run()
    assert isinstance(result.error, KeyError)
    assert result.error.args[0] == (
        "rt.context.get('nope'): the run's context has no key 'nope'; its keys are 'a', 'b'. "
        "Pass a default to get one instead: rt.context.get('nope', None)."
    )


def test_get_with_an_explicit_default_never_raises() -> None:
    @rt.function_node
    async def read() -> object:
        return (rt.context.get("nope", None), rt.context.get("nope", default=0), rt.context.get("a"))

    assert _flow(read, a=1).invoke() == (None, 0, 1)


def test_keys_are_a_live_view_of_the_runs_context() -> None:
    @rt.function_node
    async def read() -> object:
        keys = rt.context.keys()
        before = sorted(keys)
        rt.context.put("c", 3)
        return before, sorted(keys), {k: rt.context.get(k) for k in list(rt.context.keys())}

    assert _flow(read, a=1, b=2).invoke() == (["a", "b"], ["a", "b", "c"], {"a": 1, "b": 2, "c": 3})


def test_children_share_their_runs_context() -> None:
    @rt.function_node
    async def child() -> object:
        rt.context.put("from_child", rt.context.get("from_parent"))
        return rt.context.get("from_child")

    @rt.function_node
    async def parent() -> object:
        rt.context.put("from_parent", "hi")
        await rt.call(child)
        return rt.context.get("from_child")

    assert _flow(parent).invoke() == "hi"


def test_delete_of_a_missing_key_lists_the_keys() -> None:
    @rt.function_node
    async def remove() -> None:
        rt.context.delete("nope")

    result = _flow(remove, a=1, b=2).run()
    assert isinstance(result.error, KeyError)
    assert result.error.args[0] == "rt.context.delete('nope'): the run's context has no key 'nope'; its keys are 'a', 'b'."


def test_as_dict_is_a_copy() -> None:
    @rt.function_node
    async def peek() -> object:
        copy = rt.context.as_dict()
        copy["items"].append(99)  # type: ignore[attr-defined]
        return rt.context.get("items")

    assert _flow(peek, items=[1]).invoke() == [1]


def test_in_place_changes_never_reach_the_flow_or_the_next_run() -> None:
    @rt.function_node
    async def mutate() -> object:
        items = rt.context.get("items")
        assert isinstance(items, list)
        items.append(len(items))
        nested = rt.context.get("nested")
        assert isinstance(nested, dict)
        nested["deep"].append("x")
        return list(items)

    flow = _flow(mutate, items=[], nested={"deep": []})
    assert flow.invoke() == [0]
    assert flow.invoke() == [0]  # the second run starts from the Flow's context again
    assert flow.context == {"items": [], "nested": {"deep": []}}


def test_a_value_marked_shared_is_the_same_object_in_every_run_and_the_rest_still_copied() -> None:
    """A lock (or socket, or client) wrapped in rt.Shared: each run gets the
    same object, unwrapped, while the context's other values are still the run's own."""
    lock = threading.Lock()
    cache: dict[str, int] = {}
    items: list[int] = [1]
    seen: list[object] = []

    @rt.function_node
    async def use() -> int:
        rt.context.get("items").append(2)  # type: ignore[attr-defined]
        shared_cache = rt.context.get("cache")
        assert isinstance(shared_cache, dict)
        shared_cache["runs"] = shared_cache.get("runs", 0) + 1  # seen by the next run, on purpose
        seen.append(rt.context.get("lock"))
        snapshot = rt.context.as_dict()
        assert snapshot["lock"] is lock
        assert snapshot["cache"] is shared_cache
        assert snapshot["items"] == [1, 2]
        return int(shared_cache["runs"])

    flow = _flow(use, lock=rt.Shared(lock), cache=rt.Shared(cache), items=items)
    assert flow.invoke() == 1
    assert flow.invoke() == 2
    assert seen == [lock, lock]
    assert all(value is lock for value in seen)
    assert cache == {"runs": 2}
    assert items == [1]
    assert flow.context["items"] == [1]


def test_a_value_that_can_be_neither_copied_nor_is_shared_is_refused_naming_its_key() -> None:
    @rt.function_node
    async def use() -> None: ...

    with pytest.raises(
        TypeError,
        match=r"^Flow\('use', context=\.\.\.\): the context value under 'lock' \(lock\) cannot be deep-copied "
        r"\(cannot pickle '_thread\.lock' object\), and each run starts from its own deep copy of the context\. "
        r"To share that one object between runs on purpose, wrap it: \{'lock': rt\.Shared\(value\)\}; "
        r"or create it inside the run\.$",
    ):
        _flow(use, ok=[1], lock=threading.Lock())
    with pytest.raises(
        TypeError, match=r"^Flow\('use', context=\.\.\.\): the context value under 'nested' \(dict\)"
    ):
        _flow(use, nested={"inner": threading.Lock()})


def test_an_uncopyable_value_put_in_a_run_stays_in_that_run() -> None:
    """put() never copies: the run's own value need not be copyable; as_dict() says which key to wrap."""
    lock = threading.Lock()
    seen: list[object] = []

    @rt.function_node
    async def use() -> None:
        rt.context.put("lock", lock)
        seen.append(rt.context.get("lock"))
        rt.context.as_dict()

    flow = _flow(use)
    with pytest.raises(
        TypeError,
        match=r"^rt\.context\.as_dict\(\): the context value under 'lock' \(lock\) cannot be deep-copied",
    ):
        flow.invoke()
    assert seen == [lock]
    assert "lock" not in flow.context


def test_shared_is_never_copied_nor_nested() -> None:
    import copy

    value = object()
    shared = rt.Shared(value)
    assert copy.copy(shared) is shared
    assert copy.deepcopy({"k": [shared]})["k"][0] is shared
    assert rt.Shared(shared).value is value
    assert repr(rt.Shared(1)) == "Shared(1)"


async def test_concurrent_runs_never_see_each_others_context(autojump_clock: trio.abc.Clock) -> None:
    @rt.function_node
    async def worker(name: str) -> object:
        shared = rt.context.get("log")
        assert isinstance(shared, list)
        for step in range(3):
            shared.append(f"{name}-{step}")
            rt.context.put("last", name)
            await trio.sleep(1)  # let the other runs interleave
        return (list(shared), rt.context.get("last"))

    flow = _flow(worker, log=["start"])
    results: dict[str, object] = {}

    async def one(name: str) -> None:
        results[name] = await flow.ainvoke(name)

    async with trio.open_nursery() as nursery:
        for name in ("a", "b", "c"):
            nursery.start_soon(one, name)
    assert results == {name: (["start", f"{name}-0", f"{name}-1", f"{name}-2"], name) for name in "abc"}
    assert flow.context == {"log": ["start"]}


def test_request_metadata_carries_the_run_id() -> None:
    @rt.function_node
    async def who() -> object:
        return rt.request()

    result = _flow(who).run()
    assert result.result == rt.RequestMetadata(run_id=result.state.run_id)


@pytest.mark.parametrize(
    ("use", "api"),
    [
        (lambda: rt.context.get("k"), "rt.context.get()"),
        (lambda: rt.context.put("k", 1), "rt.context.put()"),
        (lambda: rt.context.update({"k": 1}), "rt.context.update()"),
        (lambda: rt.context.delete("k"), "rt.context.delete()"),
        (lambda: rt.context.as_dict(), "rt.context.as_dict()"),
        (lambda: rt.context.keys(), "rt.context.keys()"),
        (lambda: "k" in rt.context, "rt.context"),
        (rt.request, "rt.request()"),
    ],
)
def test_outside_a_run(use: object, api: str) -> None:
    expected = (
        f"{api} was called outside a run. Start one with rt.Flow('demo', entry_point=node).invoke(...), "
        "or await flow.ainvoke(...) from Trio code."
    )
    with pytest.raises(rt.OutsideRunError) as info:
        use()  # type: ignore[operator]
    assert str(info.value) == expected


def test_get_of_a_missing_key_outside_a_run_is_an_outside_run_error_not_a_key_error() -> None:
    """Railtracks raises its ContextError outside a session, whatever the key: no run, no context."""
    with pytest.raises(rt.OutsideRunError, match=r"^rt\.context\.get\(\) was called outside a run\. "):
        rt.context.get("missing")
    with pytest.raises(rt.OutsideRunError):
        rt.context.get("missing", None)


async def test_outside_a_run_in_trio_too() -> None:
    with pytest.raises(rt.OutsideRunError, match=r"^rt\.context\.get\(\) was called outside a run\. "):
        rt.context.get("k")
    await trio.testing.wait_all_tasks_blocked()
