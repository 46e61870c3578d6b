"""The shipped Foxglove layout: valid JSON whose panels exist and whose topics and plotted fields
are the ones `prescient view` / `export-scene` publish."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace

import pytest

pytest.importorskip("foxglove")

from prescient.service.app.foxglove import stream  # noqa: E402

LAYOUT = Path(stream.__file__).with_name("prescient.layout.json")


def _leaves(node: object) -> list[str]:
    if isinstance(node, str):
        return [node]
    assert isinstance(node, dict) and {"first", "second", "direction"} <= set(node)
    return _leaves(node["first"]) + _leaves(node["second"])


def _planner_fields() -> set[str]:
    """Keys of the /planner/status JSON (``planner_json`` reads only these attributes)."""
    st = SimpleNamespace(prediction_seq=1, e2e_latency_ns=1, data_age_ns=1, chosen_plan=0,
                         min_distance_m=1.0, min_ttc_s=1.0, status="ok")  # fmt: skip
    return set(stream.planner_json(st, 0))  # type: ignore[arg-type]


def test_layout_panels_topics_and_plotted_fields_exist() -> None:
    layout = json.loads(LAYOUT.read_text())
    panels = _leaves(layout["layout"])
    assert sorted(panels) == sorted(layout["configById"])  # every panel placed, every placed one configured
    published = {
        stream.TOPIC_SCENE,
        stream.TOPIC_TF,
        stream.TOPIC_PLANNER,
        stream.TOPIC_HEALTH,
        stream.TOPIC_RASTER,
    }
    cfg = layout["configById"]
    assert set(cfg["3D!scene"]["topics"]) <= published and cfg["3D!scene"]["followTf"] == "base_link"
    fields = {stream.TOPIC_PLANNER: _planner_fields(), stream.TOPIC_HEALTH: {"tick_rate_hz", "node", "state"}}
    plotted = [p["value"] for k, v in cfg.items() if k.startswith("Plot!") for p in v["paths"]]
    assert plotted
    for path in plotted:
        topic, field = re.fullmatch(r"(/[a-z/]+)(?:\{[^}]*\})?\.(\w+)", path).groups()  # type: ignore[union-attr]
        assert topic in published and field in fields[topic], path
    for k, v in cfg.items():
        if k.startswith("RawMessages!"):
            assert v["topicPath"] in published
    assert cfg["Image!raster"]["imageMode"]["imageTopic"] == stream.TOPIC_RASTER
