"""pyproject.toml says what the code needs; pip-requirements.txt pins the tested environment
within it: the two must agree, and the environment the tests run in must satisfy both."""
from __future__ import annotations

import importlib.metadata
import tomllib

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from helpers import ROOT


def declared() -> dict[str, Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    lines = project["dependencies"] + [line for extra in project["optional-dependencies"].values() for line in extra]
    return {canonicalize_name(requirement.name): requirement for requirement in map(Requirement, lines)}


def pins() -> list[Requirement]:
    lines = (ROOT / "pip-requirements.txt").read_text().splitlines()
    return [Requirement(line) for line in lines if line.strip() and not line.lstrip().startswith("#")]


def test_every_pin_is_a_declared_dependency_and_fits_its_range():
    dependencies = declared()
    for pin in pins():
        [version] = [specifier.version for specifier in pin.specifier if specifier.operator == "=="]
        requirement = dependencies.get(canonicalize_name(pin.name))
        assert requirement is not None, f"{pin.name} is pinned but not a dependency in pyproject.toml"
        assert requirement.specifier.contains(version, prereleases=True), \
            f"pip-requirements.txt pins {pin}, outside pyproject.toml's {requirement}"


def test_the_int8_packages_are_an_extra_only():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = {canonicalize_name(Requirement(line).name) for line in project["dependencies"]}
    int8 = {canonicalize_name(Requirement(line).name) for line in project["optional-dependencies"]["int8"]}
    assert int8 == {"onnxruntime", "onnx", "onnxscript"} and not int8 & core


def test_the_environment_satisfies_the_declared_core_dependencies():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for requirement in map(Requirement, project["dependencies"]):
        installed = importlib.metadata.version(requirement.name)
        assert requirement.specifier.contains(installed.split("+")[0], prereleases=True), \
            f"{requirement.name} {installed} installed, pyproject.toml needs {requirement}"
