"""Flow definitions as versioned documents: serialize(), deserialize() and what loading refuses (issue 14)."""

from __future__ import annotations

import json
import pathlib
import re
import sys

import pytest

import runtime as rt


class Scale(rt.Routine):
    """Multiplies what it gets by ``factor`` and emits it."""

    def __init__(self, factor: int = 2, *, label: str = "scale") -> None:
        super().__init__()
        self.factor = factor
        self.label = label
        self.define_slot("input", handler=self.scale)
        self.define_event("output", ["value"])

    def scale(self, value: int = 0) -> None:
        self.emit("output", value=self.factor * value)

    def also(self, **data: object) -> None:
        self.send_output("also", **data)


class Collect(rt.Routine):
    """Sends what it gets as the job's output."""

    def __init__(self) -> None:
        super().__init__()
        self.define_slot("input", handler=self.take)

    def take(self, value: int = 0) -> None:
        self.send_output("value", value=value)


class Flaky(Exception):
    """An exception class of this module, for retryable_exceptions."""


def build() -> rt.Flow[..., object]:
    flow: rt.Flow[..., object] = rt.Flow("scaled", timeout=5.0, max_steps=100)
    scale = Scale(3, label="triple")
    scale.set_config(unit="m", nested={"a": [1, 2]})
    scale.set_error_handler(rt.ErrorHandler(strategy="retry", max_retries=5, retryable_exceptions=[Flaky]))
    flow.add_routine(scale, "scale")
    flow.add_routine(Collect, "collect")
    flow.connect("scale", "output", "collect", "input")
    flow.set_entry("scale")
    flow.set_error_handler("continue")
    return flow


def through_json(doc: dict[str, object]) -> object:
    return json.loads(json.dumps(doc))


def test_a_flow_document_names_each_routine_by_class_and_constructor_arguments() -> None:
    doc = build().serialize()
    assert doc["format"] == "trioflow.flow"
    assert doc["version"] == 1
    assert doc["flow_id"] == "scaled"
    assert (doc["timeout"], doc["max_steps"], doc["end_on_error"], doc["entry_id"]) == (
        5.0,
        100,
        False,
        "scale",
    )
    assert doc["error_handler"] == {
        "strategy": "continue",
        "max_retries": 3,
        "retry_delay": 1.0,
        "retry_backoff": 2.0,
        "retryable_exceptions": ["builtins:Exception"],
        "is_critical": False,
    }
    routines = doc["routines"]
    assert isinstance(routines, dict)
    assert routines["scale"] == {
        "class_path": f"{__name__}:Scale",
        "args": [3],
        "kwargs": {"label": "triple"},
        "config": {"unit": "m", "nested": {"a": [1, 2]}},
        "error_handler": {
            "strategy": "retry",
            "max_retries": 5,
            "retry_delay": 1.0,
            "retry_backoff": 2.0,
            "retryable_exceptions": [f"{__name__}:Flaky"],
            "is_critical": False,
        },
        "slots": [],
        "events": [],
        "attributes": {},
    }
    assert routines["collect"]["class_path"] == f"{__name__}:Collect"
    assert doc["connections"] == [
        {"source": "scale", "event": "output", "target": "collect", "slot": "input", "param_mapping": {}}
    ]
    assert (doc["execution_strategy"], doc["max_workers"]) == ("actors", 1)
    assert "job_state" not in doc


def test_a_loaded_flow_serializes_to_the_same_document_and_runs_the_same() -> None:
    flow = build()
    doc = flow.serialize()
    loaded = rt.Flow("placeholder").deserialize(through_json(doc), allow=[Scale, Collect, Flaky])
    assert loaded.name == "scaled"
    assert loaded.serialize() == doc
    assert [o["data"] for o in loaded.run({"value": 4}).result] == [{"value": 12}]
    assert loaded.routines["scale"].get_config("nested") == {"a": [1, 2]}
    handler = loaded.routines["scale"].get_error_handler()
    assert handler is not None
    assert handler.retryable_exceptions == (Flaky,)


def test_allowing_a_module_by_name_allows_its_classes() -> None:
    doc = build().serialize()
    loaded = rt.Flow().deserialize(doc, allow=[__name__])
    assert type(loaded.routines["scale"]) is Scale


def test_settings_made_after_construction_are_kept() -> None:
    flow: rt.Flow[..., object] = rt.Flow("late")
    scale = Scale()
    scale.define_slot("extra", handler=scale.also, merge_strategy="append")
    scale.define_event("side", ["x", "y"])
    scale.note = "kept"
    plain = rt.Routine()
    plain.define_slot("input")
    plain.define_event("output", None)
    flow.add_routine(scale, "scale")
    flow.add_routine(plain, "plain")
    doc = flow.serialize()
    routine_doc = doc["routines"]["scale"]  # type: ignore[index]
    assert routine_doc["slots"] == [{"name": "extra", "handler": "also", "merge_strategy": "append"}]
    assert routine_doc["events"] == [{"name": "side", "params": ["x", "y"]}]
    assert routine_doc["attributes"] == {"note": "kept"}
    loaded = rt.Flow().deserialize(through_json(doc), allow=[Scale])
    again = loaded.routines["scale"]
    assert list(again.slots) == ["input", "extra"]
    assert again.slots["extra"].merge_strategy == "append"
    assert again.events["side"].params == frozenset({"x", "y"})
    assert again.note == "kept"  # type: ignore[attr-defined]
    assert list(loaded.routines["plain"].slots) == ["input"]
    assert loaded.serialize() == doc


def test_an_unknown_class_path_is_refused_by_name_and_nothing_is_imported() -> None:
    doc = build().serialize()
    doc["routines"]["scale"]["class_path"] = "trioflow_never_imported:Evil"  # type: ignore[index]
    flow: rt.Flow[..., object] = rt.Flow("kept")
    with pytest.raises(
        rt.DefinitionDocumentError,
        match=r"^Cannot load a flow document into Flow\('kept'\): at \$\.routines\.scale\.class_path, the class "
        r"'trioflow_never_imported:Evil' is not allowed, so nothing was imported\. Allow it with "
        r"deserialize\(\.\.\., allow=\[Evil\]\) or allow its module with allow=\['trioflow_never_imported'\]\.$",
    ):
        flow.deserialize(doc, allow=[Scale, Collect])
    assert "trioflow_never_imported" not in sys.modules
    assert flow.name == "kept"
    assert not flow.routines


def test_an_allowed_module_gives_only_routine_subclasses() -> None:
    doc = build().serialize()
    doc["routines"]["scale"]["class_path"] = "subprocess:Popen"  # type: ignore[index]
    doc["routines"]["scale"]["args"] = [["true"]]  # type: ignore[index]
    with pytest.raises(rt.DefinitionDocumentError, match=r"'subprocess:Popen' is not a Routine subclass\.$"):
        rt.Flow().deserialize(doc, allow=["subprocess", Collect, Flaky])


def test_a_class_missing_from_an_allowed_module_is_named() -> None:
    doc = build().serialize()
    doc["routines"]["scale"]["class_path"] = f"{__name__}:Gone"  # type: ignore[index]
    with pytest.raises(rt.DefinitionDocumentError, match=rf"module '{__name__}' has no class 'Gone'\.$"):
        rt.Flow().deserialize(doc, allow=[__name__])


def test_retryable_exceptions_need_allowing_too() -> None:
    doc = build().serialize()
    with pytest.raises(
        rt.DefinitionDocumentError,
        match=r"at \$\.routines\.scale\.error_handler\.retryable_exceptions\[0\], the class '.*:Flaky' is not allowed",
    ):
        rt.Flow().deserialize(doc, allow=[Scale, Collect])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"version": 2},
            r"it has version 2, but this trioflow reads version 1\. Upgrade trioflow to read it\.$",
        ),
        (
            {"version": 0},
            r"it has version 0, but this trioflow reads version 1\. No trioflow writes that version; the document is corrupt\.$",
        ),
        ({"format": "trioflow.state"}, r"its format is 'trioflow.state', not 'trioflow.flow'\."),
        ({"timeout": "soon"}, r"at \$\.timeout, expected a number, got a string\.$"),
        ({"extra": 1}, r"\): unknown key 'extra'\.$"),
        ({"timeout": -1.0}, r"timeout must be a positive number of seconds, or None\.$"),
    ],
)
def test_a_document_that_does_not_fit_is_refused_with_its_path(
    change: dict[str, object], message: str
) -> None:
    doc = {**build().serialize(), **change}
    flow: rt.Flow[..., object] = rt.Flow("kept")
    with pytest.raises(rt.DefinitionDocumentError, match=message):
        flow.deserialize(doc, allow=[Scale, Collect, Flaky])
    assert flow.name == "kept"


def test_a_document_that_is_not_a_dict_is_refused() -> None:
    with pytest.raises(rt.DefinitionDocumentError, match=r"it is a list, not a trioflow\.flow document"):
        rt.Flow().deserialize([])


def test_a_bad_routine_field_is_refused_with_its_path() -> None:
    doc = build().serialize()
    doc["routines"]["collect"]["args"] = "none"  # type: ignore[index]
    with pytest.raises(
        rt.DefinitionDocumentError, match=r"at \$\.routines\.collect\.args, expected an array"
    ):
        rt.Flow().deserialize(doc, allow=[Scale, Collect, Flaky])


def test_a_handler_name_that_is_not_a_method_is_refused() -> None:
    flow: rt.Flow[..., object] = rt.Flow("late")
    scale = Scale()
    scale.define_slot("extra", handler=scale.also)
    flow.add_routine(scale, "scale")
    doc = flow.serialize()
    doc["routines"]["scale"]["slots"][0]["handler"] = "__init__"  # type: ignore[index]
    with pytest.raises(
        rt.DefinitionDocumentError,
        match=r"at \$\.routines\.scale\.slots\[0\]\.handler, Scale has no method '__init__'\.$",
    ):
        rt.Flow().deserialize(doc, allow=[Scale])


def test_a_connection_to_an_unknown_slot_names_its_place() -> None:
    doc = build().serialize()
    doc["connections"][0]["slot"] = "inptu"  # type: ignore[index]
    with pytest.raises(rt.GraphDefinitionError, match=r"routine 'collect' has no slot 'inptu'") as info:
        rt.Flow().deserialize(doc, allow=[Scale, Collect, Flaky])
    assert info.value.__notes__ == ["In the flow document, at $.connections[0]."]


def test_a_value_json_cannot_hold_is_refused_when_serializing() -> None:
    flow: rt.Flow[..., object] = rt.Flow("chan")
    flow.add_routine(Scale(label=object()), "scale")  # type: ignore[arg-type]
    with pytest.raises(
        rt.UnserializableValueError,
        match=r"^Cannot serialize flow 'chan': \$\.routines\.scale\.kwargs\.label a object is not a JSON value\.",
    ) as info:
        flow.serialize()
    assert info.value.path == "$.routines.scale.kwargs.label"


def test_a_factory_routine_or_a_function_handler_cannot_be_serialized() -> None:
    flow: rt.Flow[..., object] = rt.Flow("made")
    flow.add_routine(lambda: Scale(4), "scale")
    with pytest.raises(TypeError, match=r"\$\.routines\.scale was made by a factory"):
        flow.serialize()
    routine = rt.Routine()
    routine.define_slot("input", handler=print)
    with pytest.raises(
        TypeError, match=r"slot 'input' is handled by .*, which is not a method of its routine"
    ):
        routine.serialize()


def test_a_node_flow_has_no_routine_graph_to_serialize() -> None:
    @rt.function_node
    def hello() -> str:
        return "hi"

    with pytest.raises(rt.GraphDefinitionError, match=r"this flow has the entry point node"):
        rt.Flow("nodes", entry_point=hello).serialize()


def test_a_routine_document_applies_to_a_routine_made_the_same_way() -> None:
    routine = Scale(5)
    routine.set_config(none=None, text="测试 🎉", zero=0)
    routine.set_error_handler("skip")
    doc = routine.serialize()
    assert doc["format"] == "trioflow.routine"
    again = Scale(5).deserialize(through_json(doc))
    assert again.get_config("text") == "测试 🎉"
    assert again.get_config("none") is None
    assert again.get_error_handler() == rt.ErrorHandler(strategy="skip")
    with pytest.raises(
        rt.DefinitionDocumentError,
        match=rf"the document is of {__name__}:Scale\(\*\[5\], \*\*\{{\}}\), and this routine was made as "
        rf"{__name__}:Scale\(\*\[6\], \*\*\{{\}}\)\. Load a routine's document into a routine made the same way",
    ):
        Scale(6).deserialize(doc)


def test_an_error_handler_round_trips_and_checks_its_settings() -> None:
    handler = rt.ErrorHandler(
        strategy="retry", max_retries=2, retry_delay=0.5, retryable_exceptions=[KeyError]
    )
    doc = handler.serialize()
    assert doc["format"] == "trioflow.error_handler"
    assert doc["retryable_exceptions"] == ["builtins:KeyError"]
    assert rt.ErrorHandler().deserialize(through_json(doc)) == handler
    with pytest.raises(
        rt.DefinitionDocumentError, match=r"at \$, ErrorHandler\(max_retries=-1\): give a whole number"
    ):
        rt.ErrorHandler().deserialize({**doc, "max_retries": -1})
    with pytest.raises(
        rt.DefinitionDocumentError, match=r"at \$\.retries, ErrorHandler has no setting 'retries'"
    ):
        rt.ErrorHandler().deserialize({**doc, "retries": 1})
    with pytest.raises(rt.DefinitionDocumentError, match=r"'builtins:print' is not a BaseException subclass"):
        rt.ErrorHandler().deserialize({**doc, "retryable_exceptions": ["builtins:print"]})


def test_the_coming_from_routilux_page_snippet_runs_as_shown(capsys: pytest.CaptureFixture[str]) -> None:
    page = pathlib.Path(__file__).resolve().parents[2] / "docs" / "coming-from-routilux.md"
    blocks = re.findall(r"```python\n(.*?)```", page.read_text(encoding="utf-8"), re.DOTALL)
    blocks = [block for block in blocks if "allow=" in block]  # the page's definition example
    assert len(blocks) == 1
    namespace: dict[str, object] = {"__name__": "__main__"}
    exec(compile(blocks[0], "coming-from-routilux.md", "exec"), namespace)  # the page's own code
    first, second = capsys.readouterr().out.splitlines()
    assert first == "completed {'value': 12}"
    assert "the class '__main__:Scale' is not allowed, so nothing was imported." in second


class Named(rt.Routine):
    """Takes ``amount`` where Scale emits ``value``."""

    def __init__(self) -> None:
        super().__init__()
        self.define_slot("input", handler=self.take)

    def take(self, amount: int = 0) -> None:
        self.send_output("amount", amount=amount)


def test_param_mappings_and_the_execution_strategy_round_trip() -> None:
    flow: rt.Flow[..., object] = rt.Flow("mapped", execution_strategy="concurrent", max_workers=3)
    flow.add_routine(Scale(5), "scale")
    flow.add_routine(Named(), "named")
    flow.connect("scale", "output", "named", "input", param_mapping={"value": "amount"})
    doc = flow.serialize()
    assert doc["connections"][0]["param_mapping"] == {"value": "amount"}  # type: ignore[index]
    assert (doc["execution_strategy"], doc["max_workers"]) == ("concurrent", 3)
    loaded = rt.Flow().deserialize(through_json(doc), allow=[Scale, Named])
    assert (loaded.execution_strategy, loaded.max_workers) == ("concurrent", 3)
    assert loaded.serialize() == doc
    state = loaded.execute("scale", {"value": 2})
    assert [o["data"] for o in state.get_shared_data("output_log")] == [{"amount": 10}]  # type: ignore[union-attr]


def test_an_unknown_execution_strategy_in_a_document_is_refused() -> None:
    doc = {**build().serialize(), "execution_strategy": "fast"}
    with pytest.raises(rt.DefinitionDocumentError, match=r"execution_strategy"):
        rt.Flow().deserialize(doc, allow=[Scale, Collect, Flaky])
