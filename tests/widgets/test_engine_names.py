"""The widgets call the engine only through names it declares public: ``lorakit``'s API, a room's ``__all__``
(``lorakit.<room>``) or a room's public module. import-linter keeps the engine from importing the widgets;
this keeps the widgets from reaching inside a room (a file name or a private name the engine may change)."""
from __future__ import annotations

import ast
import importlib
from pathlib import Path

WIDGETS = Path(__file__).resolve().parents[2] / "widgets"


def engine_imports():
    for path in sorted(WIDGETS.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("lorakit"):
                if not node.module.startswith("lorakit.widgets"):
                    yield f"{path.relative_to(WIDGETS)}:{node.lineno}", node.module, [a.name for a in node.names]
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.startswith("lorakit.") and not alias.name.startswith("lorakit.widgets"):
                        yield f"{path.relative_to(WIDGETS)}:{node.lineno}", alias.name, []


def offered(module: str, name: str) -> bool:
    package = importlib.import_module(module)
    if name in getattr(package, "__all__", ()):
        return True
    # a room's public module (from lorakit.config import targets)
    return not name.startswith("_") and (Path(package.__file__).parent / f"{name}.py").is_file()


def test_the_widgets_use_only_names_the_engine_declares_public():
    inside = [f"{where}: {module}" for where, module, _ in engine_imports() if module.count(".") > 1]
    assert not inside, f"widgets import from inside a room (import from lorakit.<room> instead): {inside}"
    hidden = [f"{where}: {module}.{name}" for where, module, names in engine_imports() for name in names
              if not offered(module, name)]
    assert not hidden, f"names the room does not offer: {hidden}"


def test_the_check_sees_the_imports():
    found = list(engine_imports())
    assert len(found) > 20 and any(module == "lorakit.memory" for _, module, _ in found)
    assert not offered("lorakit.playground", "_column_label") and offered("lorakit", "compare")
