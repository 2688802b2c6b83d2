"""A pipeline's `chunking:` block: how long texts are split before they are embedded."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

CHUNK_COLUMNS = ("doc_id", "chunk_id", "ordinal", "start", "end", "text")
CHUNK_KEY = "chunk_id"
CHUNK_TEXT = "text"
CHUNK_DOC = "doc_id"


class ChunkingSpec(BaseModel):
    """`{strategy, max_tokens, overlap}`; tokens are counted by the pipeline model's tokenizer,
    special tokens included, so a chunk of `max_tokens` fits a model window of that size."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    # sentence: whole sentences packed; tokens: fixed token windows; recursive: semchunk's
    # recursive split at paragraph, line, sentence, clause and word boundaries
    strategy: Literal["sentence", "tokens", "recursive"] = "recursive"
    max_tokens: int = Field(default=256, ge=8, le=8192)
    overlap: int = Field(default=32, ge=0)

    @model_validator(mode="after")
    def _overlap_below_budget(self) -> ChunkingSpec:
        if self.overlap >= self.max_tokens // 2:
            raise ValueError(f"overlap ({self.overlap}) must be less than half of max_tokens "
                             f"({self.max_tokens}), or every chunk would mostly repeat the one before")
        return self
