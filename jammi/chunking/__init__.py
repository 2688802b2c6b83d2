"""Splitting long documents into token-bounded chunks with exact offsets and deterministic ids."""

from jammi.chunking.chunks import Chunk, changed_chunks, chunk_document

__all__ = ["Chunk", "changed_chunks", "chunk_document"]
