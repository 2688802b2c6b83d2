"""Two nodes that share no disk: two `jammi` processes, each in its own working directory with
its own node cache (JAMMI_CACHE_DIR, so its own node folder and Dagster instance), sharing only
a SeaweedFS S3 bucket (`artifact_dir: s3://...`) and the PostgreSQL catalog. Node A extracts and
validates the sources and fuses an entity; node B, which has not even the source files, embeds
and indexes the validated rows and searches them with the source's columns; node A then sees
the table in `jammi sql` and `jammi search`, and node B the fused entity and its fusion state.
Nothing a step writes for another node stays in a node's own folder."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from jammi import store
from jammi.app.facade import Jammi
from jammi.fusion.state import load_state
from jammi.spec.project import load_project
from tests.conftest import PG_DSN, REPO, new_bucket

pytestmark = pytest.mark.slow

PRODUCTS = ["id,title,body", "1,Red running shoes,Light trail runners", "2,Espresso machine,Fifteen bar pump",
            "3,Cast iron skillet,Heavy and even heat", "4,Yoga mat,Non-slip mat for workouts",
            "5,Trail backpack,Thirty litre pack for day hikes", "6,Rain jacket,Waterproof shell"]
CRM = ["id,name,email,updated", "c1,John Smith,john@old.example,2023-01-01",
       "c2,Ann Lee,ann@example.com,2023-02-01"]
SHOP = ["uid,full_name,mail,ts", "c1,Johnny Smith,john@new.example,2024-06-01",
        "c3,Bo Chan,bo@example.com,2024-01-01"]
CUSTOMER = {
    "fields": {"name": "str", "email": "str", "customer_ref": "str"},
    "link_keys": ["customer_ref"],
    "sources": {
        "crm": {"priority": 1, "timestamp": "updated",
                "mapping": {"customer_ref": "id", "name": "name", "email": "email"}},
        "shop": {"priority": 2, "timestamp": "ts",
                 "mapping": {"customer_ref": "uid", "name": "full_name", "email": "mail"}},
    },
    "resolution": {"email": ["most_recent"], "name": ["priority"]},
    "matching": {"enabled": False},
}


def project_doc(url: str, schema: str) -> dict:
    return {
        "artifact_dir": url,
        "catalog": {"postgres": "${JAMMI_CATALOG_DSN}", "schema": schema},
        "sources": {
            "products": {"kind": "csv", "path": "products.csv", "key": "id",
                         "columns": {"id": "int", "title": "str", "body": "str"}},
            "crm": {"kind": "csv", "path": "crm.csv", "key": "id",
                    "columns": {"id": "str", "name": "str", "email": "str", "updated": "datetime"}},
            "shop": {"kind": "csv", "path": "shop.csv", "key": "uid",
                     "columns": {"uid": "str", "full_name": "str", "mail": "str", "ts": "datetime"}},
        },
        "entities": {"customer": CUSTOMER},
        "pipelines": {"products_pipe": {"source": "products", "text_columns": ["title", "body"]}},
    }


class Node:
    """One machine: its own working directory (holding its copy of jammi.yaml) and node cache."""

    def __init__(self, root: Path, doc: dict, s3_env: dict[str, str]):
        self.root, self.cache = root / "work", root / "cache"
        self.root.mkdir(parents=True)
        (self.root / "jammi.yaml").write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith(("AWS_", "DAGSTER_", "JAMMI_"))}
        self.env.update(s3_env, JAMMI_CATALOG_DSN=PG_DSN, JAMMI_CACHE_DIR=str(self.cache),
                        PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")

    def jammi(self, *args: str, ok: bool = True) -> subprocess.CompletedProcess:
        done = subprocess.run([sys.executable, "-c", "from jammi_assets.cli import main; main()", *args],
                              cwd=self.root, env=self.env, capture_output=True, text=True, timeout=600)
        if ok:
            assert done.returncode == 0, f"jammi {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
        return done

    def out(self, *args: str) -> str:
        return self.jammi(*args).stdout

    def folder(self, url: str) -> Path:
        """This node's own folder for the project (jammi.store.node_dir under its cache)."""
        old = os.environ.get(store.CACHE_ENV)
        os.environ[store.CACHE_ENV] = str(self.cache)
        try:
            return store.node_dir(url)
        finally:
            if old is None:
                del os.environ[store.CACHE_ENV]
            else:
                os.environ[store.CACHE_ENV] = old


def test_two_nodes_sharing_only_s3_and_postgres(s3_env, schema, tmp_path, monkeypatch):
    url = f"s3://{new_bucket(s3_env)}/team/shop"
    doc = project_doc(url, schema)
    a, b = Node(tmp_path / "a", doc, s3_env.env()), Node(tmp_path / "b", doc, s3_env.env())
    for name, lines in (("products.csv", PRODUCTS), ("crm.csv", CRM), ("shop.csv", SHOP)):
        (a.root / name).write_text("\n".join(lines) + "\n", encoding="utf-8")  # only node A has them

    # node A: bronze and silver of every source, and the fused entity
    a.out("materialize", *[f"--select={n}" for n in ("raw_products", "validated_products", "raw_crm",
                                                      "validated_crm", "raw_shop", "validated_shop",
                                                      "fused_customer")])
    shared = [store.name_of(p) for p in store.listdir(f"{url}/frames")]
    assert {"validated_products.parquet", "raw_products.parquet", "fused_customer.parquet"} <= set(shared)
    assert not (a.folder(url) / "frames").exists() and not (a.folder(url) / "fusion").exists()

    # node B, without the source files: the embedding table and its index from the shared frame
    assert not (b.root / "products.csv").exists()
    out = b.out("materialize", "--select=products_pipe_embeddings", "--select=products_pipe_ann_index")
    assert "products_pipe_embeddings" in out and "products_pipe_ann_index" in out, out
    hits = b.out("search", "products_pipe", "backpack for hiking", "-k", "1", "--select", "title",
                 "--format", "csv")
    assert hits.splitlines()[0].split(",")[:2] == ["title", "_row_id"] and "Trail backpack" in hits, hits
    # node B sees the entity node A fused, and its fusion state (the review reads it)
    assert b.out("sql", "SELECT count(*) AS n FROM jammi.fused_customer", "--format", "csv").split() == [
        "n", "3"]
    assert "nothing to review for 'customer'" in b.out("fusion", "review", "customer")

    # node A: the table node B built, through SQL and search
    assert a.out("sql", "SELECT count(*) AS n FROM jammi.products_pipe_embeddings", "--format", "csv"
                 ).split() == ["n", "6"]
    hits = a.out("search", "products_pipe", "espresso", "-k", "1", "--select", "title,body",
                 "--format", "csv")
    assert "Espresso machine,Fifteen bar pump" in hits, hits
    b.out("verify")

    # a change reaches node B's search after node A validates it again: a new version, one row
    # changed, embedded by node B
    changed = [*PRODUCTS[:2], "2,Espresso grinder,Burr grinder", *PRODUCTS[3:]]
    (a.root / "products.csv").write_text("\n".join(changed) + "\n", encoding="utf-8")
    a.out("materialize", "--select=raw_products", "--select=validated_products")
    out = b.out("materialize", "--select=products_pipe_embeddings", "--select=products_pipe_ann_index")
    assert "outcome=refreshed" in out and "changed=1" in out, out
    assert "Espresso grinder" in a.out("search", "products_pipe", "coffee grinder", "-k", "1", "--select",
                                       "title")

    # what each node keeps to itself: its published jammi.duckdb, locks, fetched objects, memos
    for node in (a, b):
        folder = node.folder(url)
        assert (folder / "jammi.duckdb").exists()
        assert not any((folder / d).exists() for d in ("frames", "fusion", "jammi_db"))
    # the fusion state is readable from a third node folder (this process's cache)
    monkeypatch.setenv(store.CACHE_ENV, str(tmp_path / "c"))
    monkeypatch.setenv("JAMMI_CATALOG_DSN", PG_DSN)
    project = load_project(a.root / "jammi.yaml")
    state = load_state(project.artifact_dir, "customer")
    assert state is not None and sorted(state.entities["customer_ref"]) == ["c1", "c2", "c3"]


def test_partitions_written_on_one_node_are_embedded_and_read_on_another(s3_env, schema, tmp_path,
                                                                           monkeypatch):
    """A partitioned source under a URL: node A runs the first day's partition, node B (another
    node folder) the second's, which refreshes the table node A built; the partition folder's
    view dedupes keys across partitions, and a third node searches rows of both days."""
    from tests.test_partitions import DAYS, reviews_rows, run_partition, table_vectors, write_csv

    url = f"s3://{new_bucket(s3_env)}/team/reviews"
    monkeypatch.setenv("JAMMI_CATALOG_DSN", PG_DSN)
    write_csv(tmp_path / "data" / "reviews.csv", reviews_rows(3))
    doc = {"artifact_dir": url, "catalog": {"postgres": "${JAMMI_CATALOG_DSN}", "schema": schema},
           "sources": {"reviews": {"kind": "csv", "path": "data/reviews.csv", "key": "id",
                                   "columns": {"id": "int", "title": "str", "created_at": "str"},
                                   "partitions": {"by": "created_at", "granularity": "day",
                                                  "start": DAYS[0]}}},
           "pipelines": {"reviews_pipe": {"source": "reviews", "text_columns": ["title"]}}}
    (tmp_path / "jammi.yaml").write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")

    def node(name: str):
        monkeypatch.setenv(store.CACHE_ENV, str(tmp_path / name))
        return load_project(tmp_path / "jammi.yaml")

    run_partition(node("a"), DAYS[0])
    run_partition(node("b"), DAYS[1])
    names = [store.name_of(p) for p in store.listdir(f"{url}/frames/validated_reviews")]
    assert names == ["2026-11-01.parquet", "2026-11-02.parquet", "_frame.json"]
    third = node("c")
    assert sorted(table_vectors(third)) == sorted(str((d + 1) * 100 + i) for d in range(2) for i in range(3))
    jammi = Jammi(third)
    assert jammi.sql("SELECT count(*) AS n FROM jammi.validated_reviews")["n"][0] == 6
    hits = jammi.search("reviews_pipe", "warm boots", k=6, select=["title", "created_at"])
    assert {h[:10] for h in hits["created_at"]} == set(DAYS[:2])
    for name in ("a", "b", "c"):  # no node keeps a frame to itself
        assert (tmp_path / name / "nodes").is_dir() and not list((tmp_path / name).glob("nodes/*/frames"))
