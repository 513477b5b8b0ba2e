"""The project's shape: the README's test command is CI's, the imports run one way, and
``__all__`` is honest."""

from __future__ import annotations

import ast
import re
import types
from pathlib import Path

import proxy

ROOT = Path(__file__).parent.parent
PACKAGE = ROOT / "proxy"
CORE = ("errors", "policy", "claims", "sessions", "schema", "settings", "keys", "ratelimit")
FRAMEWORKS = ("starlette", "httpx", "redis", "uvicorn", "aiohttp")


def imports(module: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(module.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            prefix = "proxy." if node.level else ""
            base = f"{prefix}{node.module or ''}"
            if node.level == 2:
                base = f"proxy.{node.module or ''}"
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def test_ci_runs_exactly_the_readme_test_command() -> None:
    readme = (ROOT / "README.md").read_text()
    commands = re.findall(r"^python3 -m venv .*$", readme, re.MULTILINE)
    assert len(commands) == 2
    demo, tests = commands
    assert demo.endswith("trigger-proxy demo")
    for tool in ("ruff format --check", "ruff check", "mypy", "pytest"):
        assert tool in tests
    assert tests in (ROOT / ".ci" / "run").read_text().splitlines()


def test_the_core_imports_no_framework_and_no_edge() -> None:
    for name in CORE:
        found = imports(PACKAGE / f"{name}.py")
        for outside in FRAMEWORKS:
            assert not any(i == outside or i.startswith(outside + ".") for i in found), (
                name,
                outside,
            )
        assert not {"proxy.app", "proxy.gateway", "proxy.upstream", "proxy.redis_store"} & found


def test_the_schema_imports_nothing_of_the_project() -> None:
    assert not any(i.startswith("proxy") for i in imports(PACKAGE / "schema.py"))


def modules() -> dict[str, Path]:
    """Every module of the product, the benchmark and the tests, by dotted name."""
    found = {}
    for folder in ("proxy", "bench", "tests"):
        for path in (ROOT / folder).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def test_no_import_cycle_anywhere() -> None:
    known = modules()
    graph: dict[str, set[str]] = {}
    for name, path in known.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                    base = f"{anchor}.{base}" if base else anchor
                names = [base, *(f"{base}.{alias.name}" for alias in node.names)]
            targets |= {n for n in names if n in known and n != name}
        graph[name] = targets
    # Depth-first search; a module met again on the current path closes a cycle.
    done: set[str] = set()

    def visit(name: str, path: list[str]) -> None:
        if name in path:
            raise AssertionError("import cycle: " + " -> ".join([*path[path.index(name) :], name]))
        if name in done:
            return
        for target in sorted(graph[name]):
            visit(target, [*path, name])
        done.add(name)

    for name in sorted(graph):
        visit(name, [])


def test_each_module_stays_readable_in_one_sitting() -> None:
    sizes = {p.name: len(p.read_text().splitlines()) for p in PACKAGE.rglob("*.py")}
    assert not {name: n for name, n in sizes.items() if n > 310}


def test_the_store_and_the_upstream_client_do_not_import_each_other() -> None:
    stores = ("memory_store", "redis_store", "ratelimit", "keys")
    assert not any(f"proxy.{s}" in imports(PACKAGE / "upstream.py") for s in stores)
    for store in stores:
        assert "proxy.upstream" not in imports(PACKAGE / f"{store}.py")


def test_nothing_in_the_product_imports_the_demo() -> None:
    for module in PACKAGE.glob("*.py"):
        if module.name == "cli.py":
            continue  # `trigger-proxy demo` starts it, lazily
        assert not any(i.startswith("proxy.demo") for i in imports(module)), module.name


def test_all_is_honest() -> None:
    public = {
        name
        for name, value in vars(proxy).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert public - {"annotations"} == set(proxy.__all__)


def test_the_example_config_lists_every_key_of_the_schema() -> None:
    import tomllib
    from dataclasses import fields

    from proxy.schema import SECTIONS, OfferOverride, TriggerSettings, WalletOverride

    example = tomllib.loads((ROOT / "config" / "proxy.example.toml").read_text())
    for name, section in SECTIONS.items():
        missing = {f.name for f in fields(section)} - set(example[name])
        assert not missing, f"[{name}] lacks {missing}"
    spin = example["triggers"][0]
    per_trigger = {f.name for f in fields(TriggerSettings)} - {"wallet", "offer"} | {"override"}
    assert per_trigger <= set(spin)
    assert {f.name for f in fields(WalletOverride)} - {"coin_min", "coin_max"} | {
        "coin_range"
    } <= set(spin["override"]["wallet"])
    assert {f.name for f in fields(OfferOverride)} <= set(
        example["triggers"][1]["override"]["offer"]
    )
