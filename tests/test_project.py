"""The project's shape: the README's test command is CI's, the imports run one way, and
``__all__`` is honest."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import types
from pathlib import Path

import proxy
from tests.helpers import ENVIRON

ROOT = Path(__file__).parent.parent
PACKAGE = ROOT / "proxy"
# Each package of the product, and the packages it may import: lower rooms never import higher
# ones (docs/design.md draws the map). The top-level modules wire everything.
LAYERS: dict[str, frozenset[str]] = {
    "config": frozenset(),
    "errors": frozenset(),
    "limits": frozenset({"config", "errors"}),
    "upstream": frozenset({"config", "errors"}),
    "observe": frozenset({"config", "errors", "limits", "upstream"}),
    "http": frozenset({"config", "errors", "limits", "observe"}),
    "identity": frozenset({"config", "errors", "limits", "observe", "http"}),
    "rewards": frozenset({"config", "errors", "limits", "upstream", "observe", "http", "identity"}),
    "reads": frozenset({"config", "errors", "limits", "upstream", "observe", "http", "identity"}),
}
TOP = frozenset({"__init__", "app", "app_proxy", "cli", "components", "serve"})
# The pure core: plain functions over plain data, testable without a server.
CORE = (
    "errors.py",
    "config/schema.py",
    "config/reader.py",
    "config/sections.py",
    "config/settings.py",
    "config/variables.py",
    "identity/claims.py",
    "identity/sessions.py",
    "rewards/policy.py",
    "limits/keys.py",
    "limits/decisions.py",
    "reads/routes.py",
)
FRAMEWORKS = ("starlette", "httpx", "redis", "uvicorn", "aiohttp", "yarl")


def imports(module: Path, package_root: Path = PACKAGE) -> set[str]:
    """Every name a module imports, absolute (``proxy.limits.keys``, ``redis.asyncio``)."""
    package = ".".join(("proxy", *module.relative_to(package_root).parts[:-1]))
    found: set[str] = set()
    for node in ast.walk(ast.parse(module.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def room(dotted: str) -> str | None:
    """The product package (``limits``, ``errors``, ``demo``...) a dotted name lies in."""
    if dotted == "proxy":  # the package itself, whose __init__ imports the app: the top level
        return "__init__"
    parts = dotted.split(".")
    return parts[1] if parts[0] == "proxy" and len(parts) > 1 else None


def broken_import_rules(package: Path) -> list[str]:
    """Every import in ``package`` that runs against ``LAYERS``, as "module -> import"."""
    broken = []
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(package).with_suffix("").parts
        own = parts[0]
        rooms = (room(name) for name in imports(path, package))
        targets = {r for r in rooms if r is not None and r != own}
        if own in TOP:
            allowed = set(LAYERS) | TOP | ({"demo"} if own == "cli" else set())
        elif own == "demo":
            allowed = set(LAYERS) | TOP
        else:
            allowed = set(LAYERS[own])
        broken += [f"{'/'.join(parts)} -> proxy.{t}" for t in sorted(targets - allowed)]
    return broken


def test_every_import_runs_down_the_layers() -> None:
    assert broken_import_rules(PACKAGE) == []


def test_the_layer_rule_catches_an_upward_import(tmp_path: Path) -> None:
    (tmp_path / "limits").mkdir()
    (tmp_path / "limits" / "store.py").write_text("from proxy.rewards.gateway import Gateway\n")
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "schema.py").write_text("from ..errors import ProxyError\n")
    (tmp_path / "http").mkdir()
    (tmp_path / "http" / "paths.py").write_text("import proxy.demo.run\n")
    assert broken_import_rules(tmp_path) == [
        "config/schema -> proxy.errors",
        "http/paths -> proxy.demo",
        "limits/store -> proxy.rewards",
    ]


def test_the_layer_rule_catches_a_bare_import_of_the_package(tmp_path: Path) -> None:
    (tmp_path / "reads").mkdir()
    (tmp_path / "reads" / "cache.py").write_text("import proxy\n")
    (tmp_path / "cli.py").write_text("import proxy\n")
    assert broken_import_rules(tmp_path) == ["reads/cache -> proxy.__init__"]


def test_every_package_is_in_the_map_and_says_what_lives_there() -> None:
    packages = {p.parent.name for p in PACKAGE.glob("*/__init__.py")}
    assert packages == set(LAYERS) - {"errors"} | {"demo"}
    for name in packages:
        doc = ast.get_docstring(ast.parse((PACKAGE / name / "__init__.py").read_text()))
        assert doc, name
        assert doc.endswith("."), name
        assert ". " not in doc, (name, "one sentence")
    top = {p.stem for p in PACKAGE.glob("*.py")}
    assert top == TOP | {"errors"}
    unnamed = [
        f"{row}/{module}"
        for row, module in map_rows()
        if f"`{module}`" not in design_map().get(row, "")
    ]
    assert not unnamed, "modules docs/design.md's map leaves out"


def design_map() -> dict[str, str]:
    """docs/design.md's map: each package's row (``top level`` for the top) by its name."""
    rows = {}
    text = (ROOT / "docs" / "design.md").read_text()
    for line in text.split("## The map", 1)[1].split("\n## ", 1)[0].splitlines():
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if line.startswith("| ") and len(cells) == 3:
            rows[cells[0].split(" ")[0].strip("`")] = cells[1]
    return rows


def map_rows() -> list[tuple[str, str]]:
    """Every module of the product but ``errors`` (a row of its own), as (its row, its name)."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        if parts[-1] != "__init__" and parts != ("errors",):
            found.append((parts[0] if len(parts) > 1 else "top", parts[-1]))
    return found


def test_the_core_imports_no_framework() -> None:
    for name in CORE:
        found = imports(PACKAGE / name)
        for outside in FRAMEWORKS:
            assert not any(i == outside or i.startswith(outside + ".") for i in found), (
                name,
                outside,
            )


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


def test_all_is_honest() -> None:
    public = {
        name
        for name, value in vars(proxy).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    # create_app is imported when first asked for (proxy/__init__.py says why).
    assert public - {"annotations"} <= set(proxy.__all__)
    assert all(getattr(proxy, name) is not None for name in proxy.__all__)


def test_the_example_config_lists_every_key_of_the_schema() -> None:
    import tomllib
    from dataclasses import fields

    from proxy.config.campaign import CAMPAIGN_KEYS
    from proxy.config.schema import SECTIONS
    from proxy.config.triggers import OfferOverride, TriggerSettings, WalletOverride

    example = tomllib.loads((ROOT / "config" / "proxy.example.toml").read_text())
    for name, section in SECTIONS.items():
        missing = {f.name for f in fields(section)} - set(example[name])
        assert not missing, f"[{name}] lacks {missing}"
    spin = example["triggers"][0]
    campaign = {"schedule", "coin_budget", "customer_coins", "dry_run", "challenge"}
    per_trigger = {f.name for f in fields(TriggerSettings)} - {"wallet", "offer"} - campaign
    assert per_trigger | {"override"} <= set(spin)
    # A campaign's keys, on the third trigger; the human check needs a provider's secret, so
    # it is shown in a comment.
    assert set(CAMPAIGN_KEYS) - {"challenge"} <= set(example["triggers"][2])
    assert '# challenge = "turnstile"' in (ROOT / "config" / "proxy.example.toml").read_text()
    assert {f.name for f in fields(WalletOverride)} - {"coin_min", "coin_max"} | {
        "coin_range"
    } <= set(spin["override"]["wallet"])
    assert {f.name for f in fields(OfferOverride)} <= set(
        example["triggers"][1]["override"]["offer"]
    )


def test_uvicorn_is_bounded_and_ci_tests_the_protocol_on_the_lowest() -> None:
    import re
    import tomllib

    import uvicorn

    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    [spec] = [d for d in dependencies if d.startswith("uvicorn")]
    bounds = re.fullmatch(r"uvicorn\[standard\]>=([0-9.]+),<([0-9.]+)", spec)
    assert bounds is not None, spec
    high = tuple(int(p) for p in bounds.group(2).split("."))
    assert tuple(int(p) for p in uvicorn.__version__.split(".")) < high
    ci = (ROOT / ".ci" / "run").read_text()
    assert '"uvicorn[standard]==$lowest"' in ci
    assert ".venv-lowest/bin/pytest -q -p no:cacheprovider tests/http/test_server_protocol.py" in ci


# Started as `serve` starts it, on memory://: what the process loaded beside the app.
_SERVING_PROCESS = """
import asyncio, json, sys
import proxy.cli  # the entry point: it must leave the app (and httpx) for serve to load
assert "httpx" not in sys.modules, "the command line imported httpx before serve could decide"
from proxy.serve import skip_httpx_cli
skip_httpx_cli()
from proxy import Settings
from proxy.app import create_app

async def main():
    app = create_app(Settings.load("config/proxy.example.toml", ENVIRON))
    async with app.router.lifespan_context(app):
        pass

asyncio.run(main())
print(json.dumps(sorted({m.split(".")[0] for m in sys.modules})))
"""


def test_a_memory_store_worker_loads_no_redis_client_and_no_httpx_command_line() -> None:
    """redis-py (with what it pulls in) and httpx's command line (rich and pygments, when
    installed) would be carried by every memory:// worker for nothing (docs/design.md)."""
    script = f"ENVIRON = {ENVIRON!r}\n{_SERVING_PROCESS}"
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    loaded = set(json.loads(out.stdout.splitlines()[-1]))
    assert {"proxy", "httpx", "aiohttp"} <= loaded  # the app did start
    assert not loaded & {"redis", "hiredis", "rich", "pygments"}, loaded
