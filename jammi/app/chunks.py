"""A chunked pipeline's chunks step: split each document of its source into chunks and keep
them as the frame `chunks_<source>` (`doc_id, chunk_id, ordinal, start, end, text`).

Tokens are counted by the pipeline model's own tokenizer, loaded without the model. A document
whose text and chunking are unchanged since the last run keeps its chunks as they were (they
would come out the same), so a refresh only re-chunks what changed; the embeddings step then
diffs the chunks by id and content hash, embedding new chunks and deleting gone ones.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from filelock import FileLock

from jammi import keys, store
from jammi.chunking import chunk_document
from jammi.embedding.tokens import load_tokenizer
from jammi.errors import SourceError
from jammi.shared import frame_path, read_frame
from jammi.spec.chunking import CHUNK_COLUMNS
from jammi.spec.project import Project
from jammi.tables.build import keyed_texts
from jammi.tables.catalog import Catalog
from jammi.tables.frames import store_frame

DOC_HASH = "_doc_hash"  # the document text and chunk settings a document's chunks were made from
LOCK_WAIT_S = 600.0


@dataclass
class ChunkRun:
    frame: pd.DataFrame
    documents: int
    skipped: int  # documents with no text
    rechunked: int  # documents chunked this run (new or changed); the rest kept their chunks
    seconds: float


def _doc_hash(settings: str, text: str) -> str:
    return hashlib.blake2b(f"{settings}\x00{text}".encode(), digest_size=16).hexdigest()


def chunk_source(project: Project, source: str) -> ChunkRun:
    """Chunk the stored validated (or fused) frame of `source` into `chunks_<source>`."""
    t0 = time.perf_counter()
    pipeline = project.chunking_pipeline(source)
    if pipeline is None:
        raise SourceError(f"source {source!r}: no pipeline declares chunking for it")
    pipe, spec = project.pipelines[pipeline], project.pipelines[pipeline].chunking
    docs_asset, src = project.frame_asset(source), project.frame_spec(source)
    docs_file = frame_path(project.artifact_dir, docs_asset)
    asset = keys.chunks(source)
    out_file = frame_path(project.artifact_dir, asset)
    # one writer at a time, so the last frame written is made from the last documents read (on
    # every node, for a frame under a URL: the catalog's lock, held in PostgreSQL)
    lock = (Catalog(project.artifact_dir).pipeline_lock(asset) if store.is_url(out_file)
            else FileLock(str(Path(out_file).with_name(f".{asset}.lock")), timeout=LOCK_WAIT_S))
    with lock:
        if not store.exists(docs_file):
            raise SourceError(f"pipeline {pipeline!r}: {docs_asset} has not been materialized "
                              f"({docs_file} missing); materialize it first")
        docs = read_frame(docs_file, columns=list(dict.fromkeys([src.key, *pipe.text_columns])))
        doc_ids, texts, skipped = keyed_texts(docs, src.key, pipe.text_columns)
        settings = json.dumps({**spec.model_dump(), "model": pipe.model, "columns": pipe.text_columns},
                              sort_keys=True)
        previous = _previous(out_file)
        tok = None
        parts, rechunked = [], 0
        for doc_id, text in zip(doc_ids, texts, strict=True):
            digest = _doc_hash(settings, text)
            kept = previous.get(doc_id)
            if kept is not None and kept[DOC_HASH].iat[0] == digest:
                parts.append(kept)
                continue
            tok = tok or load_tokenizer(pipe.model)
            # the model adds its special tokens ([CLS], [SEP]) to every chunk it embeds
            budget = spec.max_tokens - tok.special_tokens
            chunks = chunk_document(doc_id, text, strategy=spec.strategy, max_tokens=budget,
                                    overlap=min(spec.overlap, budget - 1), count_tokens=tok.count,
                                    token_offsets=tok.offsets)
            rechunked += 1
            frame = pd.DataFrame([(c.doc_id, c.chunk_id, c.ordinal, c.start, c.end, c.text) for c in chunks],
                                 columns=list(CHUNK_COLUMNS))
            frame[DOC_HASH] = digest
            parts.append(frame)
        chunks = _concat(parts)
        store_frame(project.artifact_dir, asset, chunks)
    return ChunkRun(chunks, len(doc_ids), skipped, rechunked, time.perf_counter() - t0)


def _previous(path) -> dict[str, pd.DataFrame]:
    if not store.exists(path):
        return {}
    frame = read_frame(path)
    if DOC_HASH not in frame.columns:
        return {}
    return {str(doc): part.reset_index(drop=True) for doc, part in frame.groupby("doc_id", sort=False)}


def _concat(parts: list[pd.DataFrame]) -> pd.DataFrame:
    parts = [p for p in parts if len(p)]
    if not parts:
        return pd.DataFrame({c: pd.Series(dtype="int64" if c in ("ordinal", "start", "end") else "object")
                             for c in (*CHUNK_COLUMNS, DOC_HASH)})
    frame = pd.concat(parts, ignore_index=True)
    return frame.astype({"ordinal": "int64", "start": "int64", "end": "int64"})
