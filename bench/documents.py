"""Documents benchmark: whole-document embedding vs chunked embedding with document ranking.

A generated corpus of long documents (1,000-3,000 tokens each, several topics per document,
paragraphs generated sentence by sentence, so none is a copy) with one planted fact sentence
per document at a random paragraph, and one query per document that paraphrases its fact.
Two pipelines over the same source and model go through the real materialization (the CLI's
runner on a local instance): `whole` embeds each document as one text (truncated at the model
window), `chunked` declares `chunking:` (chunks_docs, one vector per chunk). Measured:

- document recall@1 and @10 of each: `whole` ranks documents by their vector; `chunked` ranks
  them by their best chunk with jammi.query.documents.rank_documents, the logic of
  `jammi search --documents` (exact scoring over each table's current vectors, read once;
  a sample of queries is checked against `Jammi().search(..., documents=True)` itself);
- chunks per second of the chunks and embeddings steps;
- a refresh after editing one paragraph in 1% of the documents: chunks re-embedded, which must
  equal the chunks whose text changed (distinct new texts the table does not hold), computed
  independently by chunking the old and new texts of the edited documents with jammi.chunking.

    flock /tmp/jammi-bench.lock python bench/documents.py            # 2,000 documents
    python bench/documents.py --docs 100                             # a quick trial

Prints a table and writes bench/results/documents.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import yaml  # noqa: E402

from jammi.chunking import changed_chunks, chunk_document  # noqa: E402
from jammi.demo.documents import TOPICS, paragraph  # noqa: E402
from jammi.embedding.model import load_encoder  # noqa: E402
from jammi.embedding.tokens import load_tokenizer  # noqa: E402
from jammi.embedding.vectors import vectors_of  # noqa: E402
from jammi.query.documents import rank_documents  # noqa: E402
from jammi.shared import frame_path  # noqa: E402
from jammi.spec.project import DEFAULT_MODEL, load_project  # noqa: E402
from jammi.tables.catalog import Catalog  # noqa: E402
from jammi.tables.versions import read_current  # noqa: E402

RESULT = REPO / "bench" / "results" / "documents.json"
ANIMALS = ["goats", "owls", "ferrets", "tortoises", "peacocks", "donkeys", "alpacas", "hedgehogs",
           "swans", "pigeons", "rabbits", "geese", "llamas", "otters", "parrots", "bats", "foxes",
           "badgers", "ducks", "ponies", "lizards", "beetles", "crabs", "newts"]
PLACES = ["lighthouse", "windmill", "chapel", "boathouse", "water tower", "observatory", "granary",
          "bell tower", "greenhouse", "monastery", "watermill", "castle keep", "tram depot",
          "glasshouse", "dovecote", "signal tower"]
TOWNS = ["Ardmore", "Belcourt", "Carrow", "Dunmere", "Elsworth", "Fenwick", "Glenarm", "Harrowby",
         "Inverlee", "Jessop", "Kilburnie", "Lowestry", "Marlow Cross", "Nethercott", "Oakhampton",
         "Pellham", "Quarrington", "Rosslare", "Saltmarsh", "Thornbury", "Ullapine", "Valemount",
         "Wexcombe", "Yarrowford", "Ashgrove", "Brambleton", "Cinderford", "Drumkeel", "Eastwick",
         "Foxhollow", "Greystone", "Hollins", "Ivybridge", "Juniper Bay", "Kestrel Point",
         "Larkhill", "Millbrook", "Northwold", "Orchard End", "Pinebridge", "Redhaven", "Stourleigh",
         "Tidewater", "Upton Marsh", "Westerly", "Wrenfield", "Ambleside", "Birchmoor", "Coldharbour",
         "Deepdale"]
NAMES = ["Elena Varga", "Tomas Reid", "Priya Nair", "Owen Castell", "Mira Holt", "Jonah Pike",
         "Sofia Lindqvist", "Aaron Blake", "Nadia Osei", "Felix Moreau", "Hana Sato", "Ivo Kral"]
# (fact, query): the query says the same thing in other words; the entities stay
FACTS = [
    ("{name} kept {num} {animal} in the old {place} at {town}.",
     "who looked after {animal} inside the {place} in {town}?"),
    ("In {town}, the {place} was home to {num} {animal} that {name} had rescued.",
     "which {place} in {town} gave shelter to rescued {animal}?"),
    ("{name} painted a mural of {animal} on the wall of the {place} in {town}.",
     "artwork showing {animal} at the {town} {place}"),
    ("Every spring {name} led a count of the {animal} nesting near the {place} outside {town}.",
     "annual survey of {animal} by the {place} close to {town}"),
]
NUMBERS = ["three", "four", "five", "six", "seven", "eight", "nine", "eleven", "twelve"]


def make_corpus(n: int, count, seed: int = 5) -> tuple[list[dict], list[dict]]:
    """`n` documents of 1,000-3,000 tokens and one paraphrased query per document."""
    rng = random.Random(seed)
    combos = rng.sample([(a, p, t) for a in ANIMALS for p in PLACES for t in TOWNS], n)
    docs, queries = [], []
    for i, (animal, place, town) in enumerate(combos):
        doc_id = f"doc-{i:05d}"
        target = rng.randint(1100, 2800)
        topics = rng.sample(sorted(TOPICS), k=rng.randint(3, 5))
        paragraphs, tokens = [], 0
        while tokens < target:
            topic = topics[min(len(topics) - 1, len(paragraphs) * len(topics) * 100 // target)]
            para = paragraph(rng, topic)
            paragraphs.append(para)
            tokens += count(para)
        fact_t, query_t = rng.choice(FACTS)
        slots = dict(name=rng.choice(NAMES), num=rng.choice(NUMBERS), animal=animal, place=place, town=town)
        at = rng.randrange(len(paragraphs))
        paragraphs[at] = paragraphs[at] + " " + fact_t.format(**slots)
        body = "\n\n".join(paragraphs)
        docs.append({"doc_id": doc_id, "body": body})
        queries.append({"doc_id": doc_id, "query": query_t.format(**slots), "fact_paragraph": at})
    return docs, queries


def write_project(root: Path, chunking: dict) -> Path:
    doc = {"artifact_dir": "artifacts",
           "sources": {"docs": {"kind": "jsonl", "path": "docs.jsonl", "key": "doc_id",
                                "columns": {"doc_id": {"type": "str", "nullable": False}, "body": "str"}}},
           "pipelines": {"whole": {"source": "docs", "text_columns": ["body"], "batch_size": 16},
                         "chunked": {"source": "docs", "text_columns": ["body"], "batch_size": 16,
                                     "chunking": chunking}}}
    path = root / "jammi.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


def write_docs(root: Path, docs: list[dict]) -> None:
    with open(root / "docs.jsonl", "w", encoding="utf-8") as fh:
        fh.writelines(json.dumps(d) + "\n" for d in docs)


def materialize(project) -> dict[str, dict]:
    from jammi_assets.runner import run_materialization

    t0 = time.perf_counter()
    outcome = run_materialization(project, [], echo=lambda line: None, workers=1)
    if not outcome.success:
        raise SystemExit(f"materialization failed: {outcome.error}")
    by_asset = {row["asset"]: row["metadata"] for row in outcome.summary}
    by_asset["_wall_s"] = time.perf_counter() - t0
    return by_asset


def table(project, pipeline: str) -> tuple[list[str], list[str], np.ndarray]:
    """(row ids, doc ids, vectors) of the pipeline's active table, as stored."""
    catalog = Catalog(project.artifact_dir)
    rec = catalog.active(pipeline=pipeline)
    cols = ["vector", "_doc_id"] if pipeline == "chunked" else ["vector"]
    t = read_current(rec.tables_dir, catalog.current_version(rec), cols)
    ids = t.column("_row_id").to_pylist()
    docs = t.column("_doc_id").to_pylist() if pipeline == "chunked" else ids
    return ids, docs, vectors_of(t.column("vector"), rec.dimensions)


def recall(ranked: list[list[str]], truth: list[str], k: int) -> float:
    return sum(t in r[:k] for r, t in zip(ranked, truth, strict=True)) / len(truth)


def rank_whole(q: np.ndarray, ids: list[str], vecs: np.ndarray, k: int) -> list[str]:
    scores = vecs @ q
    return [ids[i] for i in np.argsort(-scores, kind="stable")[:k]]


def rank_chunked(q: np.ndarray, ids, docs, vecs, chunk_frame: pd.DataFrame, k: int) -> list[str]:
    scores = vecs @ q
    order = np.argsort(-scores, kind="stable")

    def chunk_search(n: int) -> pd.DataFrame:
        top = order[:n]
        hits = pd.DataFrame({"_row_id": [ids[i] for i in top], "similarity": scores[top]})
        return hits.merge(chunk_frame, left_on="_row_id", right_on="chunk_id").sort_values(
            "similarity", ascending=False, kind="stable")

    return rank_documents(chunk_search, k, "chunked")["doc_id"].tolist()


def edit_documents(docs: list[dict], queries: list[dict], share: float, seed: int = 9) -> list[int]:
    """Replace one paragraph (never the fact's) in `share` of the documents; their positions."""
    rng = random.Random(seed)
    chosen = sorted(rng.sample(range(len(docs)), max(1, round(len(docs) * share))))
    for i in chosen:
        paragraphs = docs[i]["body"].split("\n\n")
        at = rng.choice([j for j in range(len(paragraphs)) if j != queries[i]["fact_paragraph"]])
        paragraphs[at] = paragraph(rng, rng.choice(sorted(TOPICS)))
        docs[i] = {**docs[i], "body": "\n\n".join(paragraphs)}
    return chosen


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=2000, help="documents in the corpus")
    parser.add_argument("--strategy", default="sentence", choices=["sentence", "tokens", "recursive"])
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--overlap", type=int, default=16)
    parser.add_argument("--edit-share", type=float, default=0.01)
    parser.add_argument("--check-queries", type=int, default=20,
                        help="queries also run through Jammi().search(..., documents=True)")
    parser.add_argument("--workdir", default=None, help="keep the project here (default: a temp dir)")
    parser.add_argument("--out", default=str(RESULT))
    args = parser.parse_args(argv)
    out = Path(args.out).resolve()  # the runner works in the instance's folder

    from jammi.app.facade import Jammi

    root = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="jammi-documents-"))
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    os.environ["DAGSTER_HOME"] = str(root / "dagster_home")
    (root / "dagster_home").mkdir()
    tok = load_tokenizer(DEFAULT_MODEL)
    t0 = time.perf_counter()
    docs, queries = make_corpus(args.docs, tok.count)
    doc_tokens = [tok.count(d["body"]) for d in docs]
    print(f"{len(docs)} documents, {min(doc_tokens)}-{max(doc_tokens)} tokens (mean "
          f"{np.mean(doc_tokens):.0f}), made in {time.perf_counter() - t0:.1f}s", flush=True)
    chunking = {"strategy": args.strategy, "max_tokens": args.max_tokens, "overlap": args.overlap}
    write_docs(root, docs)
    project = load_project(write_project(root, chunking))

    first = materialize(project)
    chunks_meta, chunked_meta, whole_meta = (first["chunks_docs"], first["chunked_embeddings"],
                                             first["whole_embeddings"])
    print(f"materialized in {first['_wall_s']:.0f}s: {chunks_meta['dagster/row_count']} chunks", flush=True)

    encoder = load_encoder(DEFAULT_MODEL)
    qvecs = encoder.encode([q["query"] for q in queries])
    truth = [q["doc_id"] for q in queries]
    chunk_frame = pd.read_parquet(frame_path(project.artifact_dir, "chunks_docs"),
                                  columns=["doc_id", "chunk_id", "ordinal", "start", "end", "text"])
    w_ids, _, w_vecs = table(project, "whole")
    c_ids, c_docs, c_vecs = table(project, "chunked")
    ranked_whole = [rank_whole(q, w_ids, w_vecs, 10) for q in qvecs]
    ranked_chunked = [rank_chunked(q, c_ids, c_docs, c_vecs, chunk_frame, 10) for q in qvecs]

    jammi = Jammi(project, recover_on_open=False)
    sample = random.Random(3).sample(range(len(queries)), min(args.check_queries, len(queries)))
    agreeing = 0
    for i in sample:  # the in-memory ranking is the one `search --documents` gives
        via_search = jammi.search("chunked", queries[i]["query"], k=10, documents=True, exact=True)
        agreeing += via_search["doc_id"].tolist() == ranked_chunked[i]

    # refresh after editing one paragraph in edit-share of the documents
    before = chunk_frame
    edited_at = edit_documents(docs, queries, args.edit_share)
    old_texts = {docs[i]["doc_id"]: None for i in edited_at}
    for d in json.loads("[" + ",".join((root / "docs.jsonl").read_text(encoding="utf-8").splitlines())
                        + "]"):
        if d["doc_id"] in old_texts:
            old_texts[d["doc_id"]] = d["body"]
    write_docs(root, docs)
    second = materialize(project)
    # independently: chunk the old and new text of each edited document and diff the ids
    budget = args.max_tokens - tok.special_tokens
    expected_new, expected_gone = 0, 0
    held = set(before["text"])  # texts whose vectors the table holds before the refresh
    new_texts: set[str] = set()
    for i in edited_at:
        kw = dict(strategy=args.strategy, max_tokens=budget, overlap=args.overlap, count_tokens=tok.count,
                  token_offsets=tok.offsets)
        old = chunk_document(docs[i]["doc_id"], old_texts[docs[i]["doc_id"]], **kw)
        new = chunk_document(docs[i]["doc_id"], docs[i]["body"], **kw)
        to_embed, to_delete = changed_chunks(old, new)
        expected_new += len(to_embed)
        expected_gone += len(to_delete)
        held |= {c.text for c in old}
        new_texts |= {c.text for c in to_embed}
    # a chunk with a new id whose exact text the table already holds (its ordinal moved) takes
    # the held vector: what must be encoded is each distinct text the table does not hold
    expected_encoded = len(new_texts - held)
    after = pd.read_parquet(frame_path(project.artifact_dir, "chunks_docs"), columns=["chunk_id"])
    refreshed = second["chunked_embeddings"]
    new_in_frame = len(set(after["chunk_id"]) - set(before["chunk_id"]))

    result = {
        "documents": len(docs),
        "tokens_per_document": {"min": int(min(doc_tokens)), "max": int(max(doc_tokens)),
                                "mean": round(float(np.mean(doc_tokens)), 1)},
        "model": DEFAULT_MODEL,
        "model_window_tokens": encoder.max_seq_length,
        "chunking": chunking,
        "recall": {
            "whole_document": {"at_1": recall(ranked_whole, truth, 1),
                               "at_10": recall(ranked_whole, truth, 10)},
            "chunked_documents": {"at_1": recall(ranked_chunked, truth, 1),
                                  "at_10": recall(ranked_chunked, truth, 10)},
        },
        "whole": {"rows_encoded": whole_meta["rows_encoded"], "rows_truncated": whole_meta["rows_truncated"],
                  "seconds": whole_meta["seconds"], "rows_per_second": whole_meta["rows_per_second"]},
        "chunked": {"chunks": chunks_meta["dagster/row_count"],
                    "chunks_per_document": round(chunks_meta["dagster/row_count"] / len(docs), 2),
                    "chunking_seconds": chunks_meta["seconds"],
                    "chunks_per_second_chunking": round(chunks_meta["dagster/row_count"]
                                                        / chunks_meta["seconds"], 1),
                    "embedding_seconds": chunked_meta["seconds"],
                    "chunks_per_second_embedding": chunked_meta["rows_per_second"],
                    "rows_truncated": chunked_meta["rows_truncated"]},
        "refresh_after_edit": {
            "documents_edited": len(edited_at),
            "documents_rechunked": second["chunks_docs"]["documents_rechunked"],
            "chunks_reembedded": refreshed["rows_encoded"],
            "chunk_texts_changed_independent": expected_encoded,
            "chunks_added": refreshed["added"],
            "chunk_ids_new_independent": expected_new,
            "chunks_deleted": refreshed["deleted"],
            "chunks_unchanged": refreshed["unchanged"],
            "new_chunk_ids_in_chunks_frame": new_in_frame,
            "reembedded_equals_changed": (refreshed["rows_encoded"] == expected_encoded
                                          and refreshed["added"] == expected_new == new_in_frame
                                          and refreshed["deleted"] == expected_gone),
            "chunking_seconds": second["chunks_docs"]["seconds"],
            "embedding_seconds": refreshed["seconds"],
            "whole_rows_reembedded": second["whole_embeddings"]["rows_encoded"],
        },
        "search_checked_queries": len(sample),
        "search_agreeing_queries": int(agreeing),
        "first_materialization_wall_s": round(first["_wall_s"], 1),
        "refresh_wall_s": round(second["_wall_s"], 1),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
    }
    print_table(result)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {out}")
    if not args.workdir:
        shutil.rmtree(root, ignore_errors=True)
    ref = result["refresh_after_edit"]
    assert ref["reembedded_equals_changed"], f"re-embedded chunks differ from the changed chunks: {ref}"
    return result


def print_table(r: dict) -> None:
    rec, ch, ref = r["recall"], r["chunked"], r["refresh_after_edit"]
    tpd = r["tokens_per_document"]
    print(f"\n{r['documents']} documents of {tpd['min']}-{tpd['max']} tokens (mean {tpd['mean']}), "
          f"{r['model']} (window {r['model_window_tokens']}), chunking {r['chunking']}")
    print(f"{'':38} {'recall@1':>9} {'recall@10':>10}")
    print(f"{'whole document (truncated)':38} {rec['whole_document']['at_1']:9.3f} "
          f"{rec['whole_document']['at_10']:10.3f}")
    print(f"{'chunked, ranked by best chunk':38} {rec['chunked_documents']['at_1']:9.3f} "
          f"{rec['chunked_documents']['at_10']:10.3f}")
    print(f"\n{'step':38} {'seconds':>9} {'per second':>10}")
    print(f"{'whole: embed documents':38} {r['whole']['seconds']:9.1f} {r['whole']['rows_per_second']:10.1f}")
    print(f"{'chunks_docs: chunk documents':38} {ch['chunking_seconds']:9.1f} "
          f"{ch['chunks_per_second_chunking']:10.1f}")
    print(f"{'chunked: embed ' + str(ch['chunks']) + ' chunks':38} {ch['embedding_seconds']:9.1f} "
          f"{ch['chunks_per_second_embedding']:10.1f}")
    print(f"Jammi().search(documents=True) gave the same ten documents for {r['search_agreeing_queries']} "
          f"of {r['search_checked_queries']} sampled queries")
    print(f"\nrefresh after editing one paragraph in {ref['documents_edited']} documents: "
          f"{ref['chunks_reembedded']} chunks re-embedded (independently: "
          f"{ref['chunk_texts_changed_independent']} chunk texts changed), {ref['chunks_added']} added "
          f"({ref['chunk_ids_new_independent']} new ids), {ref['chunks_deleted']} deleted, "
          f"{ref['chunks_unchanged']} unchanged; "
          f"{ref['documents_rechunked']} documents re-chunked")


if __name__ == "__main__":
    main()
