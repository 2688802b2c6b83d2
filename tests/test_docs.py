"""The documentation site stays true to the code: the generated pages (CLI reference, benchmark
tables, layout) equal what docs/gen.py makes from the click commands, bench/results/*.json and
the tree; every page is in the nav; the README stays a two-minute read whose links resolve; and
every section of the old 1,416-line README has a home in the docs.

When a test here says a generated page is stale, run `make docs-gen` and commit the result.
"""

from __future__ import annotations

import importlib.util
import re

import click
import pytest
import yaml

from tests.conftest import REPO

DOCS = REPO / "docs"
REGENERATE = "make docs-gen"


@pytest.fixture(scope="module")
def gen():
    spec = importlib.util.spec_from_file_location("docs_gen", DOCS / "gen.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def nav_pages(nav) -> list[str]:
    pages = []
    for entry in nav:
        value = next(iter(entry.values())) if isinstance(entry, dict) else entry
        pages += nav_pages(value) if isinstance(value, list) else [value]
    return pages


def test_generated_pages_are_current(gen):
    stale = gen.stale()
    assert stale == [], f"generated docs out of date: {', '.join(stale)}; run `{REGENERATE}` and commit"


def test_a_changed_option_help_makes_the_cli_reference_stale(gen, monkeypatch):
    from jammi.cli import cli

    option = next(p for p in cli.commands["search"].params if p.name == "k")
    monkeypatch.setattr(option, "help", "A reworded help text for -k.")
    page = DOCS / "reference" / "cli.md"
    regenerated = gen.cli_reference()
    assert "A reworded help text for -k." in regenerated
    assert str(page.relative_to(REPO)) in gen.stale({page: regenerated})


def test_the_cli_reference_documents_every_command_and_option(gen):
    from jammi.cli import cli

    page = (DOCS / "reference" / "cli.md").read_text()

    def walk(group: click.Group, path: str):
        for name, command in group.commands.items():
            yield f"{path} {name}", command
            if isinstance(command, click.Group):
                yield from walk(command, f"{path} {name}")

    for path, command in walk(cli, "jammi"):
        assert f"`{path}`" in page, f"{path} is missing from the CLI reference"
        assert (command.help or "").strip(), f"{path} has no help text to document"
        for param in command.params:
            if isinstance(param, click.Option):
                assert any(f"`{opt}" in page or f", {opt}" in page for opt in param.opts), (path, param.opts)


def test_a_layout_line_for_a_missing_file_fails(gen, monkeypatch):
    monkeypatch.setitem(gen.LAYOUT, "jammi/no_such_module.py", "gone")
    with pytest.raises(ValueError, match="jammi/no_such_module.py"):
        gen.layout()


def test_the_layout_lists_every_module(gen):
    tree = (DOCS / "_generated" / "layout.md").read_text()
    for package in gen.LAYOUT_PACKAGES:
        for module in (REPO / package).glob("*.py"):
            assert re.search(rf"^  {re.escape(module.name)}\b", tree, re.M), f"{package}/{module.name}"
        for sub in (REPO / package).iterdir():
            if (sub / "__init__.py").exists():
                assert f"  {sub.name}/" in tree, f"{package}/{sub.name}/"
                for module in sub.glob("*.py"):
                    if module.name != "__init__.py":
                        assert re.search(rf"[\[ ]{re.escape(module.stem)}[,\]]", tree), f"{sub}/{module.name}"


def test_every_page_is_in_the_nav_and_every_nav_entry_exists():
    config = yaml.safe_load((REPO / "mkdocs.yml").read_text())
    nav = set(nav_pages(config["nav"]))
    pages = {str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md") if "_generated" not in p.parts}
    assert nav == pages


def test_every_generated_table_is_included_and_every_include_exists():
    included = set()
    for page in DOCS.rglob("*.md"):
        for target in re.findall(r'^--8<-- "([^"]+)"', page.read_text(), re.M):
            assert (DOCS / target).is_file(), (
                f"{page.relative_to(REPO)} includes {target}, which does not exist"
            )
            included.add(target)
    generated = {str(p.relative_to(DOCS)) for p in (DOCS / "_generated").rglob("*.md")}
    assert generated - included == set(), "generated snippets no page includes"


def test_the_benchmark_tables_carry_the_results_files_figures():
    """Spot checks that the tables read the JSON rather than a copy: one figure per file."""
    import json

    def result(name):
        return json.loads((REPO / "bench" / "results" / f"{name}.json").read_text())

    def snippet(name):
        return (DOCS / "_generated" / "bench" / f"{name}.md").read_text()

    assert f"{result('refresh')['full_seconds']:.1f}" in snippet("refresh")
    assert f"{result('search')['p50_ms']:.2f}" in snippet("search")
    assert f"{result('backends')['onnx-int8']['speedup']:.3f}" in snippet("backends")
    assert f"{result('fusion_quality')['sets']['dblp_acm']['f1']:.3f}" in snippet("fusion_quality")
    assert f"{result('partitions')['serial_seconds']:.1f}" in snippet("partitions")
    faults = result("object_store_faults")
    assert f"answered {faults['reader']['answers']:,} times" in snippet("object_store_faults")


README_MAX_LINES = 150


def test_the_readme_is_a_two_minute_read():
    lines = (REPO / "README.md").read_text().splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines; move detail into docs/"


def test_the_readme_links_resolve():
    readme = (REPO / "README.md").read_text()
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", readme)
    local = [link for link in links if not re.match(r"[a-z]+://", link)]
    assert local, "the README links into the docs"
    for link in local:
        assert (REPO / link).exists(), f"README.md links to {link}, which does not exist"
    assert any(link.startswith("docs/guide/") for link in local)
    assert "docs/reference/cli.md" in local


# Each section of the README before the docs site (its `## ` headings), the page that took it in,
# and a phrase from it that the page must still hold.
OLD_README_SECTIONS = {
    "Two commands": ("getting-started.md", "HF_HUB_OFFLINE=1"),
    "The project file": ("guide/project-file.md", "Two declarations that would make the same asset"),
    "Assets": ("guide/assets.md", "`dagster/row_count`, `dagster/column_schema`"),
    "Quality gates": ("guide/quality.md", "jammi quarantine readmit products"),
    "Schema evolution": ("guide/schema-evolution.md", "classifies a change as `full`, `backward`"),
    "Fused entities": ("guide/fusion.md", "Amazon–Google ≥ 0.75 is met only with answers"),
    "Documents": ("guide/documents.md", "document search fetches k × 4 chunks"),
    "Streams": ("guide/streams.md", "SIGKILL at any\nmoment loses and duplicates nothing"),
    "Incremental refresh": ("guide/refresh.md", "jammi tables expire products --keep 3"),
    "Scale: memory flat in the source's size": ("guide/production.md", "Every step streams."),
    "Partitions": ("guide/partitions-and-automation.md", "A key that\nmoves"),
    "Automation": ("guide/partitions-and-automation.md", "Incremental PostgreSQL sources"),
    "Production": ("guide/production.md", "QueuedRunCoordinator"),
    "Embedding tables": ("guide/embedding-tables.md", "Catalog and recovery"),
    "Querying": ("guide/search-and-sql.md", "SELECT * FROM jammi.embedding_status;"),
    "Safety": ("guide/safety.md", "`jammi search -k` takes 1 to 10,000"),
    "CLI": ("guide/search-and-sql.md", "Query commands take `--format table|json|csv`"),
    "Python": ("reference/python.md", 'jammi.rollback_version("products", 2)'),
    "Throughput and backends": ("guide/throughput.md", "Only Transformer + Pooling"),
    "Benchmark": ("benchmarks.md", "bench/kill_trials.py"),
    "Layout": ("layout.md", "tests/test_layout.py"),
}


@pytest.mark.parametrize("section", list(OLD_README_SECTIONS))
def test_every_old_readme_section_has_a_home(section):
    page, phrase = OLD_README_SECTIONS[section]
    text = (DOCS / page).read_text()
    assert " ".join(phrase.split()) in " ".join(text.split()), f"{section!r}: {page} lost {phrase!r}"
