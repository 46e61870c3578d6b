"""The stack's one config file: precedence (defaults < file < flags), bad keys, `config show`, `up`."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from prescient.bus.errors import StartupError
from prescient.service.app.cli import build_parser, main
from prescient.service.app.stack_cli import stack_config_from_args
from prescient.service.app.stack_config import StackConfig, build_config, to_toml

FILE = """
[stack]
duration_s = 12.5
record = false

[sim]
scenario = "roundabout"
seed = 7
agents = 12

[service]
threads = 3
no_model = true
metrics_port = 9464

[tracker]
reorder_window_s = 0.1
use_radar = false

[planner]
conditional_every = 0
"""


def _cfg(*argv: str) -> StackConfig:
    return stack_config_from_args(build_parser().parse_args(["config", "show", *argv]))


@pytest.fixture
def stack_toml(tmp_path: Path) -> Path:
    path = tmp_path / "stack.toml"
    path.write_text(FILE)
    return path


def test_config_defaults_without_file_or_flags() -> None:
    """No file, no flags: the documented defaults (those of `up` before the config file existed)."""
    cfg = _cfg()
    assert cfg == StackConfig()
    assert (cfg.sim.scenario, cfg.sim.seed, cfg.sim.agents, cfg.stack.duration_s) == (
        "intersection",
        0,
        40,
        40.0,
    )
    assert cfg.stack.record and cfg.stack.live and cfg.service.metrics_port is None
    assert cfg.service.metrics_host == "127.0.0.1"


def test_config_file_values_then_only_given_flags_override(stack_toml: Path) -> None:
    """The file beats the defaults; a flag beats the file only when it is given."""
    cfg = _cfg("--config", str(stack_toml))
    assert (cfg.sim.scenario, cfg.sim.seed, cfg.sim.agents) == ("roundabout", 7, 12)
    assert cfg.stack.duration_s == 12.5 and not cfg.stack.record and cfg.stack.picture
    assert cfg.service.threads == 3 and cfg.service.no_model and cfg.service.metrics_port == 9464
    assert cfg.planner.conditional_every == 0

    cfg = _cfg("--config", str(stack_toml), "--seed", "9", "--record", "--metrics-port", "0", "--night")
    assert (cfg.sim.seed, cfg.sim.agents, cfg.sim.night) == (9, 12, True)  # agents still from the file
    assert cfg.stack.record and cfg.service.metrics_port == 0 and cfg.service.threads == 3


def test_config_explicit_model_flag_beats_files_no_model(stack_toml: Path, tmp_path: Path) -> None:
    """`--model M` with a file saying no_model: the model runs (the flag wins)."""
    cfg = _cfg("--config", str(stack_toml), "--model", str(tmp_path / "m.onnx"))
    assert not cfg.service.no_model and cfg.service.model == tmp_path / "m.onnx"


def test_config_relative_paths_are_relative_to_the_file(tmp_path: Path) -> None:
    """A relative path in a file is resolved against the file's folder, so a copy elsewhere still works."""
    (tmp_path / "conf").mkdir()
    path = tmp_path / "conf" / "stack.toml"
    path.write_text('[service]\nmodel = "models/m.onnx"\n[stack]\ncurve_dir = "keys"\n')
    cfg = build_config(path, {})
    assert cfg.service.model == tmp_path / "conf" / "models" / "m.onnx"
    assert cfg.stack.curve_dir == tmp_path / "conf" / "keys"


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("[service]\nthread = 3\n", ["service.thread", "unknown key"]),
        ("[simulator]\nseed = 1\n", ["simulator", "unknown key"]),
        ('[sim]\nseed = "7"\n', ["sim.seed", "integer"]),
        ('[stack]\nrecord = "yes"\n', ["stack.record", "boolean"]),
        ("[sim]\nagents = -1\n", ["sim.agents", "greater than or equal to 0"]),
        ('[sim]\nscenario = "moon"\n', ["sim.scenario", "unknown scenario"]),
        ("[stack]\nduration_s = inf\n", ["stack.duration_s", "finite"]),
        ("sim = 3\n", ["sim"]),
        ("[sim\n", ["not TOML", "line 1"]),
    ],
)
def test_config_bad_file_exits_1_with_one_line_naming_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, names: list[str]
) -> None:
    """Unknown keys, wrong types, bad values, broken TOML: exit 1 and one line that names the key."""
    path = tmp_path / "bad.toml"
    path.write_text(text)
    assert main(["config", "show", "--config", str(path)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and str(path) in lines[0], captured.err
    for name in names:
        assert name in lines[0], lines[0]


def test_config_bad_flag_value_names_the_flag(stack_toml: Path) -> None:
    """A value out of range on the command line is blamed on the flag, not on the file."""
    with pytest.raises(StartupError, match="--agents: sim.agents"):
        _cfg("--config", str(stack_toml), "--agents", "5000")


def test_config_missing_file_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(StartupError, match="cannot read"):
        _cfg("--config", str(tmp_path / "nope.toml"))


def test_config_show_output_round_trips(stack_toml: Path, tmp_path: Path, capsys) -> None:
    """`config show` prints TOML that, read back as --config, gives the same effective config."""
    argv = ["--config", str(stack_toml), "--seed", "11", "--bus", "ipc:///tmp/x", "--model", "m.onnx"]
    assert main(["config", "show", *argv]) == 0
    shown = capsys.readouterr().out
    assert tomllib.loads(shown)["sim"]["seed"] == 11
    again = tmp_path / "again.toml"
    again.write_text(shown)
    assert build_config(again, {}) == _cfg(*argv)
    assert to_toml(build_config(again, {})) == shown


def test_up_hands_config_to_the_children_and_the_run_directory(
    stack_toml: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`up --config F --metrics-port 0`: the service child gets --metrics-port and the [service]
    flags, the planner its [planner] flags, and the effective config travels as config.toml."""
    import prescient.service.app.stack as stack

    seen: dict[str, stack.StackOptions] = {}

    def fake_run_stack(opts: stack.StackOptions) -> object:
        seen["opts"] = opts
        return type("R", (), {"ok": True})()

    monkeypatch.setattr(stack, "run_stack", fake_run_stack)
    (tmp_path / "r").mkdir()  # run_stack makes it; the children's argv checks it exists
    assert main(["up", "--config", str(stack_toml), "--metrics-port", "0", "--out", str(tmp_path / "r")]) == 0
    opts = seen["opts"]
    assert (opts.scenario, opts.seed, opts.agents, opts.duration_s) == ("roundabout", 7, 12, 12.5)
    assert opts.model is None and not opts.record
    children = {c.name: c.argv for c in stack.build_children(opts, tmp_path / "log.mcap")}
    serve = children["service"]
    assert serve[:2] == ["serve", "--no-model"]
    assert serve[serve.index("--metrics-port") + 1] == "0"
    assert serve[serve.index("--threads") + 1] == "3"
    assert serve[serve.index("--metrics-host") + 1] == "127.0.0.1"
    assert children["planner"][-2:] == ["--conditional-every", "0"]
    assert opts.config_toml is not None
    copy = tmp_path / "copy.toml"
    copy.write_text(opts.config_toml)
    assert build_config(copy, {}) == _cfg("--config", str(stack_toml), "--metrics-port", "0")
    # The children parse what the launcher gives them.
    for name in ("service", "planner"):
        build_parser().parse_args(children[name])
    # [tracker] reaches the service's tracker; what the file leaves out keeps TrackerConfig's default.
    from prescient.service.app.stack_config import tracker_config_from_args
    from prescient.service.tracker import TrackerConfig

    tracker = tracker_config_from_args(build_parser().parse_args(serve))
    assert (tracker.reorder_window_s, tracker.use_radar) == (0.1, False)
    default = TrackerConfig()
    assert (tracker.lookahead, tracker.max_range_m, tracker.capacity, tracker.use_bearings) == (
        default.lookahead,
        default.max_range_m,
        default.capacity,
        default.use_bearings,
    )


def test_config_bad_tracker_value_is_one_line(tmp_path: Path, capsys) -> None:
    """A tracker key out of range: exit 1, one line naming the key and the file."""
    bad = tmp_path / "bad.toml"
    bad.write_text("[tracker]\nreorder_window_s = -0.5\n")
    assert main(["config", "show", "--config", str(bad)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "tracker.reorder_window_s" in err and str(bad) in err
