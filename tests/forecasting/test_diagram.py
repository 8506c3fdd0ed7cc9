"""The run picture: a definition drawn as SVG on the server, one box per state, coloured by status, escaped."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from forecasting import diagram
from forecasting.engine import validate
from forecasting.engine.builder import Machine, catch, retry
from forecasting.forecast.pipeline import definition as forecast_definition

SVG = "{http://www.w3.org/2000/svg}"


def parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)  # noqa: S314 (our own output)


def boxes(root: ET.Element) -> dict[str, ET.Element]:
    """The state groups of the picture by their path."""
    found = {}
    for group in root.iter(f"{SVG}g"):
        if "state" in (group.get("class") or "").split():
            assert group.get("data-path") not in found, f"two boxes for {group.get('data-path')}"
            found[group.get("data-path")] = group
    return found


def fill_of(group: ET.Element) -> str:
    """The colour of a state's box (a group's header bar, a leaf's rectangle)."""
    rects = [r for r in group.findall(f"{SVG}rect")]
    header = [r for r in rects if r.get("class") == "header"]
    return (header or rects)[0].get("fill")


def nested() -> dict:
    return {
        "StartAt": "Fanout",
        "States": {
            "Fanout": {
                "Type": "Parallel",
                "Branches": [
                    {"StartAt": "Load", "States": {"Load": {"Type": "Task", "Resource": "probe.echo", "End": True}}},
                    {"StartAt": "Load", "States": {"Load": {"Type": "Pass", "End": True}}},
                ],
                "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Broken"}],
                "Next": "Each",
            },
            "Each": {
                "Type": "Map",
                "ItemsPath": "$.items",
                "ItemProcessor": {
                    "StartAt": "Work",
                    "States": {
                        "Work": {"Type": "Task", "Resource": "probe.echo", "Next": "Check"},
                        "Check": {
                            "Type": "Choice",
                            "Choices": [{"Variable": "$.ok", "BooleanEquals": True, "Next": "Fine"}],
                            "Default": "Work",
                        },
                        "Fine": {"Type": "Succeed"},
                    },
                },
                "End": True,
            },
            "Broken": {"Type": "Fail", "Error": "Broken"},
        },
    }


def test_the_svg_parses_as_xml_with_one_box_per_state_nested_ones_included():
    definition = validate(nested())
    root = parse(diagram.definition_svg(definition, statuses={}))
    assert root.tag == f"{SVG}svg"
    expected = [
        "Fanout",
        "Fanout/Branches[0]/Load",
        "Fanout/Branches[1]/Load",
        "Each",
        "Each/ItemProcessor/Work",
        "Each/ItemProcessor/Check",
        "Each/ItemProcessor/Fine",
        "Broken",
    ]
    assert diagram.state_paths(definition) == expected
    assert sorted(boxes(root)) == sorted(expected)
    # Nested states are drawn inside their group's box.
    shown = boxes(root)
    outer = shown["Each"].find(f"{SVG}rect")
    inner = shown["Each/ItemProcessor/Work"].find(f"{SVG}rect")
    assert float(outer.get("x")) < float(inner.get("x"))
    assert float(outer.get("y")) < float(inner.get("y"))
    assert float(inner.get("y")) + float(inner.get("height")) < float(outer.get("y")) + float(outer.get("height"))


def test_each_box_takes_the_colour_of_its_status_and_the_legend_names_them_all():
    definition = validate(nested())
    statuses = {
        "Fanout": diagram.CAUGHT,
        "Fanout/Branches[0]/Load": diagram.FAILED,
        "Fanout/Branches[1]/Load": diagram.ABORTED,
        "Each": diagram.RUNNING,
        "Each/ItemProcessor/Work": diagram.RETRIED,
        "Each/ItemProcessor/Check": diagram.SUCCEEDED,
        "Broken": "SOMETHING ELSE",  # unknown: drawn as not run
    }
    root = parse(diagram.definition_svg(definition, statuses=statuses))
    shown = boxes(root)
    for path, status in statuses.items():
        status = status if status in diagram.STATUSES else diagram.NOT_RUN
        assert fill_of(shown[path]) == diagram.COLOURS[status][0], path
        assert shown[path].get("data-status") == status
    assert shown["Each/ItemProcessor/Fine"].get("data-status") == diagram.NOT_RUN
    legend = {rect.get("data-status"): rect.get("fill") for rect in root.iter(f"{SVG}rect") if rect.get("data-status")}
    assert legend == {status: diagram.COLOURS[status][0] for status in diagram.STATUSES}
    texts = "".join(root.itertext())
    assert all(label in texts for label in diagram.LABELS.values())


def test_without_statuses_the_boxes_are_plain_and_there_is_no_status_legend():
    root = parse(diagram.definition_svg(validate(nested())))
    assert {fill_of(group) for group in boxes(root).values()} == {diagram.PLAIN[0]}
    assert not [group for group in boxes(root).values() if group.get("data-status")]
    assert "failed" not in "".join(root.itertext())


def test_catch_edges_are_dashed_and_transitions_point_down_the_layers():
    machine = (
        Machine()
        .task("Poll", "probe.echo", retry=[retry(["Pending"])], catch=[catch(["States.ALL"], "Oops")])
        .pass_("Done", end=True)
        .fail("Oops", error="Oops")
    )
    definition = machine.build()
    root = parse(diagram.definition_svg(validate(definition), statuses={}))
    paths = [p for p in root.iter(f"{SVG}path") if "transition" in (p.get("class") or "")]
    dashed = [p for p in paths if "catch" in p.get("class")]
    assert len(dashed) == 1 and dashed[0].get("stroke-dasharray")
    assert all(not p.get("stroke-dasharray") for p in paths if "catch" not in p.get("class"))
    shown = boxes(root)
    y = {path: float(group.find(f"{SVG}rect").get("y")) for path, group in shown.items()}
    assert y["Poll"] < y["Done"] and y["Poll"] < y["Oops"]


def test_a_loop_back_is_drawn_up_the_side_and_the_start_is_on_top():
    definition = validate(nested())
    root = parse(diagram.definition_svg(definition, statuses={}))
    loops = [p for p in root.iter(f"{SVG}path") if "loop" in (p.get("class") or "")]
    assert len(loops) == 1  # Check's Default back to Work
    shown = boxes(root)
    work, check = (float(shown[f"Each/ItemProcessor/{n}"].find(f"{SVG}rect").get("y")) for n in ("Work", "Check"))
    assert work < check


def test_state_names_are_escaped_in_text_and_attributes():
    name = "<script>alert('x')</script> & \"quotes\" \x01"
    definition = validate({"StartAt": name, "States": {name: {"Type": "Pass", "End": True}}})
    svg = diagram.definition_svg(definition, statuses={name: diagram.FAILED}, title="<b>run & co</b>")
    assert "<script" not in svg and "<b>" not in svg
    root = parse(svg)
    (group,) = boxes(root).values()
    assert group.get("data-path") == name.replace("\x01", "\ufffd")
    assert fill_of(group) == diagram.COLOURS[diagram.FAILED][0]
    texts = "".join(root.itertext())
    assert "<script>alert('x" in texts  # shown as text (cut to fit the box), never as markup
    assert "<b>run & co</b>" in texts


def test_a_definition_of_fifty_states_renders_every_box_inside_the_picture():
    machine = Machine()
    for n in range(48):
        machine = machine.pass_(f"Step{n:02d}")
    definition = machine.build()
    definition["States"]["Step47"] = {
        "Type": "Choice",
        "Choices": [{"Variable": "$.again", "BooleanEquals": True, "Next": "Step00"}],
        "Default": "Done",
    }
    definition["States"]["Done"] = {"Type": "Succeed"}
    definition["States"]["Step10"]["Next"] = "Side"
    definition["States"]["Side"] = {"Type": "Pass", "Next": "Step11"}
    validate(definition)
    assert len(definition["States"]) == 50
    svg = diagram.definition_svg(definition, statuses={f"Step{n:02d}": diagram.SUCCEEDED for n in range(48)})
    root = parse(svg)
    shown = boxes(root)
    assert len(shown) == 50
    width, height = float(root.get("width")), float(root.get("height"))
    for group in shown.values():
        rect = group.find(f"{SVG}rect")
        assert 0 <= float(rect.get("x")) and float(rect.get("x")) + float(rect.get("width")) <= width
        assert 0 <= float(rect.get("y")) and float(rect.get("y")) + float(rect.get("height")) <= height


def test_the_forecast_pipeline_renders_with_its_map_and_parallel_groups():
    root = parse(diagram.definition_svg(forecast_definition(), statuses={}))
    shown = boxes(root)
    assert "LoadHistory/ItemProcessor/LoadBatch" in shown
    assert "ModelsAndCandidate/Branches[1]/VolumeCandidate" in shown
    assert len(shown) == len(diagram.state_paths(forecast_definition()))


def test_what_is_not_a_state_machine_draws_an_empty_picture():
    for junk in (None, [], {"States": []}, {"StartAt": "X", "States": {"X": 3}}):
        root = parse(diagram.definition_svg(junk))
        assert "No states" in "".join(root.itertext())
