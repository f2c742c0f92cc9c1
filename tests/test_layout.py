"""The package's shape: library modules import one another as a tree (no cycle), commands
live in bertkpe/commands, and each typed option has its flag with the same default."""
from __future__ import annotations

import argparse
import ast
import dataclasses
import json
from pathlib import Path

import pytest

from helpers import ROOT

PACKAGE = ROOT / "bertkpe"


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Every import of a bertkpe module by another, at any depth of the file (lazy imports
    inside functions tie modules as much as those at the top)."""
    modules = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            targets = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                # `from package import module` names the module itself
                targets = [f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in modules else node.module
                           for alias in node.names]
            graph[name].update(target for target in targets if target in modules and target != name)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    found, state, stack = [], {}, []

    def visit(node: str) -> None:
        state[node] = "open"
        stack.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == "open":
                found.append(stack[stack.index(target):] + [target])
            elif target not in state:
                visit(target)
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return found


def test_the_modules_import_one_another_without_a_cycle():
    graph = import_graph()
    assert "bertkpe.dataset_classes" in graph["bertkpe.options"]  # the graph sees imports
    assert cycles(graph) == []


def test_a_cycle_is_seen():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == [["a", "b", "c", "a"]]


def test_commands_live_in_one_place_and_the_library_defines_none():
    from bertkpe.cli import COMMANDS

    assert all(module.startswith("bertkpe.commands.") for module, _ in COMMANDS.values())
    for path in PACKAGE.rglob("*.py"):
        if "commands" in path.parts or path.name == "cli.py":
            continue
        defined = {node.name for node in ast.parse(path.read_text()).body if isinstance(node, ast.FunctionDef)}
        assert not {"add_arguments", "run"} & defined, path


@pytest.mark.parametrize("kind, add_flags", [("TrainOptions", "add_train_arguments"),
                                             ("TestOptions", "add_test_arguments"),
                                             ("ExtractOptions", "add_extract_arguments")])
def test_every_option_has_its_flag_with_the_same_default(kind, add_flags, monkeypatch):
    from bertkpe import options

    monkeypatch.delenv("LOCAL_RANK", raising=False)
    parser = argparse.ArgumentParser()
    getattr(options, add_flags)(parser)
    flags = {action.dest: action.default for action in parser._actions if action.dest != "help"}
    fields = {item.name: item for item in dataclasses.fields(getattr(options, kind))}
    assert set(flags) == set(fields)
    defaults = dataclasses.asdict(getattr(options, kind)())
    required = {action.dest for action in parser._actions if action.required}
    assert {name: flags[name] for name in fields if name not in required} == \
        {name: defaults[name] for name in fields if name not in required}


def test_the_original_flag_names_still_parse():
    from bertkpe.cli import build_parser

    args = build_parser("train").parse_args(["--run_mode", "train", "--dataset_class", "openkp", "--local-rank", "3",
                                             "--checkpoint_file", "runs/x/last", "--use_viso", "--save_checkpoint",
                                             "--pretrain_model_path", "models", "--no-test_after_training"])
    assert (args.resume, args.local_rank, args.use_viso, args.test_after_training) == ("runs/x/last", 3, True, False)


def test_an_older_runs_options_are_brought_up_to_date(tmp_path):
    from bertkpe.options import LEGACY_TRAIN_VALUES, TrainOptions, upgrade_train_options

    saved = dataclasses.asdict(TrainOptions(dataset_class="kp20k", max_token=256))
    for name in (*LEGACY_TRAIN_VALUES, "max_doc_tokens", "save_every_minutes", "num_workers"):
        saved.pop(name)
    saved["given_options"] = ["dataset_class"]  # what runs once saved beside their options
    upgraded = upgrade_train_options(json.loads(json.dumps(saved)))
    assert upgraded.train_windows == 0 and upgraded.rank_loss == "margin" and upgraded.phrase_pooling == "max"
    assert upgraded.train_splits == ["train"] and upgraded.ema_decay == 0.0 and upgraded.hidden_dropout is None
    assert upgraded.max_doc_tokens == 256  # read one window, as it did
    assert upgraded.save_every_minutes == TrainOptions.save_every_minutes and upgraded.num_workers is None
    assert upgraded.max_token == 256 and upgraded.dataset_class == "kp20k"
