"""The package stays small enough to hold in mind: no module over 500 lines (the notebook form's
split belongs to its redesign), and every folder is one layer of the flow."""

from __future__ import annotations

from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "labkit"
LIMIT = 500
EXEMPT = {"widgets.py"}


def test_no_module_is_over_500_lines() -> None:
    long = {str(p.relative_to(PACKAGE)): n for p in PACKAGE.rglob("*.py")
            if p.name not in EXEMPT and (n := len(p.read_text().splitlines())) > LIMIT}
    assert not long, f"modules over {LIMIT} lines: {long}"


def test_the_folders_are_the_layers_the_contracts_name() -> None:
    import tomllib

    config = tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text())["tool"]["importlinter"]
    layers = next(c for c in config["contracts"] if c["type"] == "layers")["layers"]
    named = {m.strip(" ()") for layer in layers for m in layer.replace("|", ":").split(":")}
    here = {f"labkit.{p.stem if p.is_file() else p.name}" for p in PACKAGE.iterdir()
            if (p.suffix == ".py" and p.stem not in ("__init__", "__main__")) or (p / "__init__.py").is_file()}
    assert here == named, f"in the package but in no layer: {here - named}; in a layer but absent: {named - here}"
