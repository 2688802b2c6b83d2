"""Issue 28, reproductions 1 to 4: a damaged segment (flipped bytes in its data, whose values
Parquet alone would serve; or its footer), a damaged deletion file or a damaged sidecar makes
`jammi verify`, `verify --repair`, `jammi search`, `jammi sql` and `jammi materialize` end with
one line naming the file and the fix, never a traceback, and nothing serves a wrong row: every
file's checksum, recorded when it was written, is compared on first use (jammi.checksums).
`verify --repair` rolls the table back to its newest intact version and refreshes forward from
the validated rows, or says why it rebuilds instead; a damaged sidecar is rebuilt from its
segment, and search scores that segment exactly meanwhile."""

from __future__ import annotations

import shutil
import struct
from pathlib import Path

import pytest

from jammi.tables.catalog import TABLES_DIR, Catalog
from tests.conftest import invoke_cli, products_project

ROWS = ["1,Red running shoes,Light trail runners,59.5", "2,Espresso machine,Fifteen bar pump,199",
        "3,Yoga mat,Non-slip mat,25", "4,Skillet,Cast iron,35",
        *(f"{i},Item {i},Thing number {i},{i}" for i in range(6, 14))]


def write_rows(root: Path, rows: list[str]) -> None:
    (root / "data" / "products.csv").write_text("id,title,body,price\n" + "\n".join(rows) + "\n",
                                                encoding="utf-8")


def cli(config: Path, *args: str):
    result = invoke_cli(["--project", str(config), *args])
    assert "Traceback" not in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    return result


@pytest.fixture(scope="module")
def refreshed(tmp_path_factory) -> Path:
    """Twelve rows embedded (version 0), then one changed and one replaced: version 1 is a
    segment of two rows and a deletion file of two."""
    root = tmp_path_factory.mktemp("refreshed") / "proj"
    (root / "data").mkdir(parents=True)
    write_rows(root, ROWS)
    products_project(root, Path("data/products.csv"))
    assert cli(root / "jammi.yaml", "materialize").exit_code == 0
    rows = list(ROWS)
    rows[1], rows[3] = "2,Espresso machine,Twenty bar pump,199", "5,Backpack,Thirty litre,89"
    write_rows(root, rows)
    assert cli(root / "jammi.yaml", "materialize").exit_code == 0
    return root


def copy_of(built: Path, tmp_path: Path) -> tuple[Path, Path]:
    """A copy of the built project to damage (root, its jammi.yaml), its catalog published for
    this folder."""
    root = tmp_path / "proj"
    shutil.copytree(built, root)
    Catalog(root / "artifacts").publish()
    return root, root / "jammi.yaml"


def footer(path: Path) -> None:
    """24 bytes flipped at the start of the Parquet footer (its thrift metadata)."""
    data = bytearray(path.read_bytes())
    start = len(data) - 8 - struct.unpack("<I", data[-8:-4])[0]
    for i in range(start, start + 24):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def truncated(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def middle(path: Path) -> None:
    data = bytearray(path.read_bytes())
    for i in range(len(data) // 2, len(data) // 2 + 64):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def table_file(root: Path, which: str) -> Path:
    files = sorted((root / "artifacts" / TABLES_DIR).glob("*.parquet"))
    if which == "deletes":
        return next(p for p in files if p.name.endswith(".deletes.parquet"))
    if which == "segment":
        return next(p for p in files if ".v00001-" in p.name and not p.name.endswith(".deletes.parquet"))
    return next(p for p in files if ".v0" not in p.name)  # the base segment, version 0's


@pytest.mark.slow
@pytest.mark.parametrize(("which", "damage"), [("segment", footer), ("segment", truncated),
                                               ("segment", middle), ("deletes", middle),
                                               ("deletes", footer)])
def test_a_damaged_version_file_is_named_and_repaired_from_the_newest_intact_version(
        refreshed, tmp_path, which, damage):
    root, config = copy_of(refreshed, tmp_path)
    bad = table_file(root, which)
    damage(bad)

    checked = cli(config, "verify", "--format", "csv")
    assert checked.exit_code == 1
    assert bad.name in checked.output and "is damaged" in checked.output, checked.output

    found = cli(config, "search", "products_pipe", "espresso coffee", "-k", "3")
    if found.exit_code:  # the rows it needs are in the damaged file: one line that says so
        assert bad.name in found.output and "--repair" in found.output, found.output
        assert len(found.output.strip().splitlines()) == 1, found.output

    write_rows(root, [*ROWS[:1], "2,Espresso machine,Twenty bar pump,199", ROWS[2],
                      "5,Backpack,Thirty litre,89", *ROWS[4:], "20,Tent,Two person tent,120"])
    failed = cli(config, "materialize")  # before: OSError: Unexpected end of stream / don't know what type
    assert failed.exit_code == 1
    assert f"{bad} is damaged" in failed.output and "--full" in failed.output, failed.output
    assert "jammi verify products_pipe --repair" in failed.output

    repaired = cli(config, "verify", "--repair", "--format", "csv")
    assert repaired.exit_code == 0, repaired.output
    assert "rolled back to version 0 (its newest intact version)" in repaired.output, repaired.output
    catalog = Catalog(root / "artifacts")
    versions = catalog.versions(catalog.active("products_pipe").table_name)
    assert [v.counts.outcome for v in versions][-2:] == ["refreshed", "refreshed"]  # forward, not rebuilt
    assert bad.name not in "".join(f.file for v in versions[-1:] for f in (*v.segments, *v.deletes))

    answer = cli(config, "sql", "SELECT count(*) AS n, count(DISTINCT _row_id) AS k FROM "
                 "jammi.products_pipe_embeddings", "--format", "csv")
    assert answer.exit_code == 0, answer.output
    assert answer.output.strip().splitlines()[-1] == "13,13"
    assert cli(config, "verify").exit_code == 0  # no row missing or stale against the validated rows


@pytest.mark.slow
def test_a_damaged_first_segment_is_rebuilt_and_verify_says_why(refreshed, tmp_path):
    root, config = copy_of(refreshed, tmp_path)
    bad = table_file(root, "base")
    footer(bad)
    repaired = cli(config, "verify", "--repair")
    assert repaired.exit_code == 0, repaired.output
    assert f"full rebuild: {bad.name} is damaged and no earlier version" in repaired.output, repaired.output
    assert cli(config, "verify").exit_code == 0


@pytest.mark.slow
def test_a_vector_damaged_inside_a_segment_is_never_served_nor_copied_on(refreshed, tmp_path):
    """Reproduction 1: 64 bytes flipped in the middle of the refresh segment read as a vector of
    5.9e36 through `jammi sql`, and compaction copied it on."""
    root, config = copy_of(refreshed, tmp_path)
    bad = table_file(root, "segment")
    middle(bad)
    query = "SELECT max(list_max(vector)) AS m FROM jammi.products_pipe_embeddings"
    refused = cli(config, "sql", query)
    assert refused.exit_code == 1
    assert f"{bad} is damaged" in refused.output and "checksum" in refused.output, refused.output
    assert len(refused.output.strip().splitlines()) == 1, refused.output
    other = cli(config, "sql", "SELECT count(*) AS n FROM jammi.validated_products", "--format", "csv")
    assert other.exit_code == 0 and other.output.strip().splitlines()[-1] == "12"  # nothing else is blocked

    compacted = cli(config, "tables", "compact", "products_pipe")
    assert compacted.exit_code == 1 and f"{bad} is damaged" in compacted.output, compacted.output

    repaired = cli(config, "verify", "--repair")
    assert repaired.exit_code == 0, repaired.output
    served = cli(config, "sql", query, "--format", "csv")
    assert served.exit_code == 0, served.output
    assert float(served.output.strip().splitlines()[-1]) <= 1.0  # unit vectors again
    assert cli(config, "verify").exit_code == 0


@pytest.mark.slow
def test_a_damaged_sidecar_is_not_trusted_and_repair_rebuilds_it(refreshed, tmp_path):
    """Reproduction 2: 4 KB flipped inside the base segment's .usearch lost three rows to search
    while verify said 0 unindexed and the recall check passed."""
    root, config = copy_of(refreshed, tmp_path)
    index = table_file(root, "base").with_suffix(".usearch")
    data = bytearray(index.read_bytes())
    start = len(data) // 3
    for i in range(start, min(len(data), start + 4096)):
        data[i] ^= 0xFF
    index.write_bytes(bytes(data))

    for title in ("Red running shoes", "Yoga mat", "Item 9"):  # each row found by its own text
        found = cli(config, "search", "products_pipe", title, "-k", "1", "--select", "title",
                    "--format", "csv")
        assert found.exit_code == 0, found.output
        assert title in found.output.strip().splitlines()[-1], found.output

    checked = cli(config, "verify", "--format", "csv")
    assert checked.exit_code == 1
    row = checked.output.strip().splitlines()[-1].split(",")
    assert int(row[7]) == 10, checked.output  # unindexed: the base segment's 10 current rows

    repaired = cli(config, "verify", "--repair")
    assert repaired.exit_code == 0, repaired.output
    assert cli(config, "verify").exit_code == 0
    assert index.read_bytes() != bytes(data)  # rebuilt from its segment


@pytest.mark.slow
@pytest.mark.parametrize("damage", [middle, truncated])
def test_a_damaged_validated_frame_is_never_read_and_repair_writes_it_again(refreshed, tmp_path, damage):
    """A frame's checksum is recorded when its step commits it: search (which returns the frame's
    columns) and the embeddings step refuse a damaged one, naming it; verify --repair writes it
    again from its source. A frame DuckDB cannot bind (cut short) gets no view in the published
    catalog meanwhile: before, it aborted the publish's transaction and every write failed with
    `Current transaction is aborted`."""
    root, config = copy_of(refreshed, tmp_path)
    frame = root / "artifacts" / "frames" / "validated_products.parquet"
    damage(frame)
    Catalog(root / "artifacts").publish()  # a write of the catalog with the damaged frame in place

    found = cli(config, "search", "products_pipe", "espresso coffee", "-k", "3")
    assert found.exit_code == 1
    assert f"{frame} is damaged" in found.output and "materialize --select validated_products" in found.output
    assert len(found.output.strip().splitlines()) == 1, found.output

    checked = cli(config, "verify", "--format", "csv")
    assert checked.exit_code == 1
    assert "validated_products.parquet is damaged" in checked.output, checked.output
    repaired = cli(config, "verify", "--repair")
    assert repaired.exit_code == 0, repaired.output
    assert "full rebuild" not in repaired.output
    assert cli(config, "verify").exit_code == 0
    answer = cli(config, "search", "products_pipe", "espresso coffee", "-k", "1", "--select", "title",
                 "--format", "csv")
    assert answer.exit_code == 0 and "Espresso machine" in answer.output, answer.output
