"""A table's generation: what its vectors mean (source schema version x text spec x model x
inference backend, or the provider that embeds them).

Refresh keeps a generation and commits new versions of its table; a change of generation
builds a new table blue/green. The fingerprint is made here and nowhere else.
"""

from __future__ import annotations

import hashlib
import json

from jammi.embedding.texts import TEXT_SEPARATOR
from jammi.spec.project import PipelineSpec, SourceSpec

DEFAULT_SCHEMA_VERSION = "v1"


def generation_fingerprint(
    schema_version: str, text_columns: list[str], separator: str, model_id: str,
    chunking: dict | None = None, backend: str = "torch", partitioned: bool = False,
    provider: dict | None = None,
) -> str:
    """Identifies what a table's vectors mean: a change of source schema version, text spec,
    model, (for a chunked pipeline) chunking, or inference backend gives a new generation (and a
    new table); the same inputs always the same one. The default backend (torch) is left out, so
    tables built before backends existed keep their generation."""
    fields = {"schema_version": schema_version,
              "text": {"columns": list(text_columns), "separator": separator}, "model": model_id}
    if chunking is not None:
        fields["chunking"] = chunking
    if backend != "torch":
        fields["backend"] = backend
    if partitioned:  # its rows carry their partition: a table built before they did is rebuilt
        fields["partitioned"] = True
    if provider is not None:  # a service's endpoint, model and dimensions (never its key)
        fields["provider"] = provider
    spec = json.dumps(fields, sort_keys=True)
    return hashlib.sha1(spec.encode("utf-8")).hexdigest()[:16]


def source_schema_version(spec: SourceSpec) -> str:
    """The source's current schema version (`schema.current`), "v1" when it declares none."""
    for attr in ("schema_", "schema"):  # the model field is `schema_`, aliased `schema` in jammi.yaml
        current = getattr(getattr(spec, attr, None), "current", None)
        if isinstance(current, str) and current:
            return current
    return DEFAULT_SCHEMA_VERSION


def generation_of(pipe: PipelineSpec, src: SourceSpec) -> str:
    """The fingerprint of (source schema version, text spec, model, backend) a pipeline builds
    now; `src` is its input frame's spec (a chunked pipeline's: the chunks frame, with the
    chunking and the document's text columns in the fingerprint)."""
    chunking = None
    if pipe.chunking is not None:
        chunking = {**pipe.chunking.model_dump(), "document_columns": list(pipe.text_columns)}
    return generation_fingerprint(source_schema_version(src), pipe.embedded_columns, TEXT_SEPARATOR,
                                  pipe.model_id, chunking, pipe.backend, carries_partition(src),
                                  pipe.provider.identity if pipe.provider else None)


def carries_partition(src: SourceSpec) -> bool:
    """Whether a table of this source keeps `_partition` on its rows: a partitioned source whose
    partition runs each commit their own rows (a stream's batches append instead)."""
    return getattr(src, "partitions", None) is not None and getattr(src, "kind", None) != "nats"
