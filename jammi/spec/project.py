"""The declarative project file (jammi.yaml): typed, validated at load time.

A project declares sources (where rows come from, their key and column types) and
embedding pipelines (which columns of which source make the text, which model and
index parameters to use). Paths inside the file are relative to the file itself.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from jammi import keys
from jammi.errors import ConfigError
from jammi.redact import dsn_secrets, redact, remember_secrets
from jammi.spec.automation import PATH_SEGMENT, FreshnessSpec, PartitionSpec, RefreshSpec
from jammi.spec.catalog import PostgresCatalogSpec, configure_catalog
from jammi.spec.chunking import CHUNK_COLUMNS, CHUNK_KEY, CHUNK_TEXT, ChunkingSpec
from jammi.spec.entities import EntitySpec
from jammi.spec.provider import ProviderSpec
from jammi.spec.safe_yaml import load_yaml
from jammi.spec.schema import SchemaSpec
from jammi.spec.schema_checks import check_source_schema
from jammi.spec.sinks import SinkSpec, check_sink_columns
from jammi.spec.stream import NatsSpec
from jammi.store import is_url, node_dir
from jammi.types import ColumnType

DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
PROJECT_ENV = "JAMMI_PROJECT"
NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
# fields naming files: a value expanded into them is shown in errors, since it names the file
FILE_FIELDS = ("path", "database", "artifact_dir")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


class ColumnSpec(_Strict):
    """One declared column: its type and the row-level rules Pandera enforces."""

    type: ColumnType = "str"
    nullable: bool = True
    ge: float | None = None
    le: float | None = None
    isin: list[Any] | None = None
    max_length: int | None = Field(default=None, gt=0)
    allow_inf: bool = False  # a float column: accept inf and -inf (refused by default)

    @model_validator(mode="after")
    def _allow_inf_on_floats(self) -> ColumnSpec:
        if self.allow_inf and self.type != "float":
            raise ValueError(f"allow_inf applies to float columns only, not to a {self.type} column")
        return self


class IndexSpec(_Strict):
    """USearch HNSW parameters."""

    metric: Literal["cos", "ip", "l2sq"] = "cos"
    connectivity: int = Field(default=16, ge=2, le=256)
    expansion_add: int = Field(default=128, ge=1)
    expansion_search: int = Field(default=64, ge=1)
    dtype: Literal["f32", "f16", "i8"] = "f32"


Severity = Literal["warn", "error"]


class CompletenessSpec(_Strict):
    required: list[str] | None = None  # default: the source's pipeline text columns
    max_null_rate: float = Field(default=0.1, ge=0, le=1)
    severity: Severity = "warn"


class DuplicatesSpec(_Strict):
    max_rate: float = Field(default=0.05, ge=0, le=1)
    severity: Severity = "warn"


class NearDuplicatesSpec(_Strict):
    enabled: bool = True  # false: the check is neither run nor declared (no passed result)
    threshold: float = Field(default=0.8, gt=0, le=1)
    max_rate: float = Field(default=0.1, ge=0, le=1)
    severity: Severity = "warn"


class OutliersSpec(_Strict):
    numeric: list[str] | None = None  # default: declared int/float columns other than the key
    max_rate: float = Field(default=0.05, ge=0, le=1)
    cutoff: float = Field(default=3.5, gt=0)
    severity: Severity = "warn"


class ConformanceSpec(_Strict):
    max_rate: float = Field(default=0.1, ge=0, le=1)
    severity: Severity = "error"


class DriftSpec(_Strict):
    numeric: list[str] | None = None  # default: declared int/float columns other than the key
    categorical: list[str] = []
    ks_threshold: float = Field(default=0.2, gt=0, le=1)
    psi_threshold: float = Field(default=0.25, gt=0)
    severity: Severity = "warn"


class ForeignKeySpec(_Strict):
    column: str
    references: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*\.[^.]+$")  # source.column
    max_orphans: int = Field(default=0, ge=0)
    severity: Severity = "warn"


class QualitySpec(_Strict):
    """Thresholds and severities of the checks on a source's validated frame."""

    completeness: CompletenessSpec = CompletenessSpec()
    exact_duplicates: DuplicatesSpec = DuplicatesSpec()
    near_duplicates: NearDuplicatesSpec = NearDuplicatesSpec()
    outliers: OutliersSpec = OutliersSpec()
    schema_conformance: ConformanceSpec = ConformanceSpec()
    drift: DriftSpec = DriftSpec()
    foreign_keys: list[ForeignKeySpec] = []

    def columns_used(self) -> dict[str, list[str]]:
        return {
            "completeness.required": self.completeness.required or [],
            "outliers.numeric": self.outliers.numeric or [],
            "drift.numeric": self.drift.numeric or [],
            "drift.categorical": self.drift.categorical,
            "foreign_keys.column": [fk.column for fk in self.foreign_keys],
        }


class RemediationSpec(_Strict):
    """Deterministic fixes applied to raw rows before validation (all off by default)."""

    trim: bool = False  # strip leading/trailing whitespace of str columns
    unicode_nfc: bool = False  # Unicode NFC normalisation of str columns
    collapse_whitespace: bool = False  # runs of whitespace -> one space in str columns
    clip_numeric: bool = False  # clip int/float columns to their declared ge/le bounds
    columns: list[str] | None = None  # default: every declared column


class SourceSpec(_Strict):
    """Where a source's rows come from and what they must look like."""

    kind: Literal["csv", "parquet", "jsonl", "duckdb", "postgres", "nats"]
    key: str
    columns: dict[str, ColumnSpec]
    path: str | None = None
    encoding: str = "utf-8"
    delimiter: str = ","
    quotechar: str = Field(default='"', min_length=1, max_length=1)  # kind csv: e.g. "'"
    escapechar: str | None = Field(default=None, min_length=1, max_length=1)  # kind csv: e.g. "\\"
    query: str | None = None
    table: str | None = None
    dsn: str | None = None
    database: str | None = None  # kind duckdb: a database file to open read-only (query or table)
    description: str | None = None
    quality: QualitySpec = QualitySpec()
    remediation: RemediationSpec = RemediationSpec()
    # versioned schemas and migrations (jammi_assets/schemas); `columns` is the current version
    schema_: SchemaSpec[ColumnSpec] | None = Field(default=None, alias="schema")
    # when it runs (jammi.spec.automation)
    partitions: PartitionSpec | None = None
    refresh: RefreshSpec | None = None
    freshness: FreshnessSpec | None = None
    sensor: bool | None = None  # the file / watermark sensor; default: on when automation is declared
    watermark: str | None = None  # kind postgres: extract only rows past the last successful value
    deleted_at: str | None = None  # kind postgres with watermark: rows with it set are deletes
    nats: NatsSpec | None = None  # kind nats: the JetStream subject, stream and durable consumer

    @field_validator("columns", mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: ({"type": v} if isinstance(v, str) else v) for k, v in value.items()}
        return value

    @model_validator(mode="after")
    def _check(self) -> SourceSpec:
        if not self.columns:
            raise ValueError("declare at least one column")
        for field_name, cols in self.quality.columns_used().items():
            for col in cols:
                if col not in self.columns:
                    raise ValueError(
                        f"quality.{field_name}: {col!r} is not a declared column "
                        f"(declared: {', '.join(self.columns)})"
                    )
        for col in self.remediation.columns or []:
            if col not in self.columns:
                raise ValueError(
                    f"remediation.columns: {col!r} is not a declared column "
                    f"(declared: {', '.join(self.columns)})"
                )
        if self.key not in self.columns:
            raise ValueError(
                f"key {self.key!r} is not a declared column (declared: {', '.join(self.columns)})"
            )
        file_kind = self.kind in ("csv", "parquet", "jsonl")
        if file_kind and not self.path:
            raise ValueError(f"kind {self.kind!r} needs 'path' (a file or a glob)")
        if self.kind == "duckdb":
            if bool(self.table) == bool(self.query):
                raise ValueError("kind 'duckdb' needs exactly one of 'query' or 'table' (with 'database')")
            if self.table and not self.database:
                raise ValueError("kind 'duckdb' with 'table' needs 'database' (a .duckdb file)")
        if self.kind == "postgres":
            if not self.dsn:
                raise ValueError("kind 'postgres' needs 'dsn' (e.g. postgresql://127.0.0.1/test)")
            if bool(self.table) == bool(self.query):
                raise ValueError("kind 'postgres' needs exactly one of 'table' or 'query'")
        if (self.kind == "nats") != (self.nats is not None):
            raise ValueError("kind 'nats' needs a 'nats' block (subject, stream, durable)"
                             if self.kind == "nats" else f"'nats' applies to kind 'nats' sources only, "
                             f"not {self.kind!r}")
        if self.kind == "nats" and self.partitions is not None:
            raise ValueError("kind 'nats' cannot declare partitions: a stream is read in micro-batches "
                             "by `jammi stream`")
        if self.schema_ is not None:
            check_source_schema(self)
        self._check_automation(file_kind)
        return self

    def _check_automation(self, file_kind: bool) -> None:
        part = self.partitions
        if part is not None and part.by_path:
            if not file_kind or PATH_SEGMENT not in (self.path or ""):
                raise ValueError(f"partitions.by {PATH_SEGMENT!r} needs a file source whose path holds "
                                 f"{PATH_SEGMENT} (e.g. data/reviews/{PATH_SEGMENT}.csv)")
        elif part is not None and part.by and part.by not in self.columns:
            raise ValueError(f"partitions.by: {part.by!r} is not a declared column (declared: "
                             f"{', '.join(self.columns)}) nor {PATH_SEGMENT!r}")
        if part is not None and part.dynamic == "files" and not file_kind:
            raise ValueError("partitions: dynamic 'files' needs a file source (csv, parquet, jsonl)")
        if part is not None and part.dynamic == "batches":
            raise ValueError("partitions: dynamic 'batches' needs a stream source, which this "
                             f"kind ({self.kind}) is not")
        for name, col in (("watermark", self.watermark), ("deleted_at", self.deleted_at)):
            if col is not None and self.kind != "postgres":
                raise ValueError(f"{name} applies to kind 'postgres' sources only")
            if col is not None and col not in self.columns:
                raise ValueError(f"{name}: {col!r} is not a declared column (declared: "
                                 f"{', '.join(self.columns)})")
        if self.watermark and self.partitions is not None:
            raise ValueError("watermark and partitions cannot be combined: a watermark source is read "
                             "incrementally as a whole")
        if self.deleted_at and not self.watermark:
            raise ValueError("deleted_at needs watermark (the column that orders changes)")


class EmbeddingQualitySpec(_Strict):
    """Gates on a new embedding table and its index."""

    max_centroid_shift: float = Field(default=0.1, ge=0, le=2)
    drift_severity: Literal["warn", "error"] = "warn"
    min_recall: float = Field(default=0.95, ge=0, le=1)
    recall_queries: int = Field(default=200, ge=1)
    # a new table or version with fewer rows than this share of the serving one is refused
    # (and 0 rows whenever the serving one has rows, unless this is 0)
    min_row_ratio: float = Field(default=0.5, ge=0, le=1)


class PipelineSpec(_Strict):
    """One embedding table family: a source, its text columns and a model."""

    source: str
    text_columns: list[str] = Field(min_length=1)
    model: str = DEFAULT_MODEL
    # what runs the model: sentence-transformers on torch, or its export on onnxruntime (fp32 or
    # dynamically quantized int8) or OpenVINO; vectors differ, so it is part of the generation
    backend: Literal["torch", "onnx", "onnx-int8", "openvino"] = "torch"
    # texts per model call; "auto": a short calibration on the table's own texts picks it
    batch_size: Literal["auto"] | Annotated[int, Field(ge=1)] = "auto"
    index: IndexSpec = IndexSpec()
    quality: EmbeddingQualitySpec = EmbeddingQualitySpec()
    # older ready (and failed) tables kept beyond the active one and its rollback target
    keep_tables: int = Field(default=3, ge=0)
    refresh: RefreshSpec | None = None
    freshness: FreshnessSpec | None = None
    # long texts: the text columns make one document, split into chunks that are embedded
    chunking: ChunkingSpec | None = None
    # a service that embeds the texts (jammi.spec.provider) instead of `model` in this process
    provider: ProviderSpec | None = None
    # serving stores kept exact (jammi.spec.sinks): each its own asset `<pipeline>_<sink>`
    sinks: dict[Annotated[str, Field(pattern=NAME_PATTERN)], SinkSpec] = {}

    @model_validator(mode="after")
    def _provider_or_model(self) -> PipelineSpec:
        both = sorted({"model", "backend"} & self.model_fields_set)
        if self.provider is not None and both:
            raise ValueError(f"{' and '.join(both)} name an in-process model; a pipeline with a "
                             "provider names its model as provider.model (remove one of them)")
        return self

    @property
    def model_id(self) -> str:
        """What the pipeline's vectors are named by: `model`, or the provider's model id."""
        return self.provider.model_id if self.provider is not None else self.model

    @property
    def embedded_columns(self) -> list[str]:
        """The columns of the pipeline's input frame whose text is embedded: the text columns,
        or a chunked pipeline's chunk text."""
        return [CHUNK_TEXT] if self.chunking else list(self.text_columns)


class ProjectSpec(_Strict):
    artifact_dir: str = "artifacts"
    sources: dict[Annotated[str, Field(pattern=NAME_PATTERN)], SourceSpec]
    pipelines: dict[Annotated[str, Field(pattern=NAME_PATTERN)], PipelineSpec] = {}
    entities: dict[Annotated[str, Field(pattern=NAME_PATTERN)], EntitySpec] = {}
    # None: the catalog's state is the private DuckDB file under artifact_dir (jammi.spec.catalog)
    catalog: PostgresCatalogSpec | None = None

    @model_validator(mode="after")
    def _cross_refs(self) -> ProjectSpec:
        if is_url(self.artifact_dir) and self.catalog is None:
            raise ValueError(f"artifact_dir {self.artifact_dir!r} is an object-store URL, which needs "
                             "`catalog: {postgres: ...}` (the catalog's state cannot live in an object "
                             "store); add a catalog, or use a local artifact_dir")
        self._check_entities()
        for made, by in keys.declared_names(self.sources, self.entities, self.pipelines).items():
            if len(by) > 1:
                raise ValueError(f"the name {made!r} is made by both {by[0]} and {by[1]}; "
                                 "rename one of them")
        for name, src in self.sources.items():
            for fk in src.quality.foreign_keys:
                parent, _, col = fk.references.partition(".")
                if parent not in self.sources or col not in self.sources[parent].columns:
                    raise ValueError(
                        f"sources.{name}.quality.foreign_keys: {fk.references!r} is not a declared "
                        "source.column"
                    )
        self._check_streams()
        for name, pipe in self.pipelines.items():
            if pipe.source in self.entities:
                declared, what, listed = self.entities[pipe.source].fields, "a field of entity", "fields"
            elif pipe.source in self.sources:
                declared, what, listed = self.sources[pipe.source].columns, "a column of source", "declared"
            else:
                raise ValueError(
                    f"pipelines.{name}.source: unknown source or entity {pipe.source!r} "
                    f"(declared: {', '.join([*self.sources, *self.entities])})"
                )
            for col in pipe.text_columns:
                if col not in declared:
                    raise ValueError(f"pipelines.{name}.text_columns: {col!r} is not {what} "
                                     f"{pipe.source!r} ({listed}: {', '.join(declared)})")
            if pipe.sinks:
                self._check_sinks(name, pipe, list(declared))
        self._check_chunking()
        return self

    def _check_sinks(self, name: str, pipe: PipelineSpec, declared: list[str]) -> None:
        entity = self.entities.get(pipe.source)
        if pipe.chunking:
            declared, what = list(CHUNK_COLUMNS), f"chunks_{pipe.source}"
        elif entity is not None:
            declared, what = [entity.id_column(pipe.source), *declared], f"fused_{pipe.source}"
        else:
            what = f"source {pipe.source!r}"
        check_sink_columns(name, pipe.sinks, declared, what)

    def _check_chunking(self) -> None:
        chunked: dict[str, str] = {}
        for name, pipe in self.pipelines.items():
            if pipe.chunking is None:
                continue
            if pipe.source in chunked:
                raise ValueError(f"pipelines.{name}.chunking: source {pipe.source!r} is already chunked by "
                                 f"pipeline {chunked[pipe.source]!r}; a source has one chunks_"
                                 f"{pipe.source} asset, so declare chunking on one pipeline of it")
            chunked[pipe.source] = name
            src = self.sources.get(pipe.source)
            if src is not None and src.partitions is not None:
                raise ValueError(f"pipelines.{name}.chunking: source {pipe.source!r} is partitioned; "
                                 "chunked pipelines need an unpartitioned source (remove its "
                                 "'partitions' or the pipeline's 'chunking')")

    def _check_streams(self) -> None:
        """A stream source feeds exactly one pipeline, which its worker commits batch by batch."""
        for name, src in self.sources.items():
            if src.kind != "nats":
                continue
            feeding = [p for p, pipe in self.pipelines.items() if pipe.source == name]
            if len(feeding) > 1:
                raise ValueError(f"sources.{name}: a nats source feeds one pipeline, not "
                                 f"{len(feeding)} ({', '.join(feeding)}); declare one stream per pipeline")
            users = [e for e, ent in self.entities.items() if name in ent.sources]
            if users:
                raise ValueError(f"sources.{name}: a nats source cannot be fused into an entity "
                                 f"({', '.join(users)}); fuse a batch source instead")
            if any(self.pipelines[p].chunking is not None for p in feeding):
                raise ValueError(f"sources.{name}: a nats source's pipeline cannot declare chunking yet; "
                                 "chunk a batch source instead")

    def _check_entities(self) -> None:
        for entity, ent in self.entities.items():
            where = f"entities.{entity}"
            if entity in self.sources:
                raise ValueError(f"{where}: the name is already a source; entities and sources need "
                                 "distinct names")
            for name, contrib in ent.sources.items():
                if name not in self.sources:
                    raise ValueError(f"{where}.sources: unknown source {name!r} "
                                     f"(declared: {', '.join(self.sources)})")
                columns = self.sources[name].columns
                named = [(f"mapping.{t}", c) for t, m in contrib.mapping.items() for c in m.inputs]
                named += [("timestamp", contrib.timestamp), ("id", contrib.id)]
                for field_path, col in named:
                    if col is not None and col not in columns:
                        raise ValueError(f"{where}.sources.{name}.{field_path}: {col!r} is not a "
                                         f"column of source {name!r} (declared: {', '.join(columns)})")


class Project:
    """A loaded project: the validated spec plus the directory paths resolve against."""

    def __init__(self, spec: ProjectSpec, path: Path, secrets: tuple[str, ...] = ()):
        self.spec = spec
        self.path = path
        self.root = path.parent
        # values expanded from ${VAR} (outside file locations): masked in every error
        self.secrets = secrets
        # every Catalog of this artifact directory opens the declared backend (and, for an
        # object-store artifact_dir, keeps its tables under the URL)
        configure_catalog(self.artifact_dir, spec.catalog, self.artifact_url)
        if spec.catalog is not None:
            remember_secrets(dsn_secrets(spec.catalog.postgres))

    @property
    def sources(self) -> dict[str, SourceSpec]:
        return self.spec.sources

    @property
    def pipelines(self) -> dict[str, PipelineSpec]:
        return self.spec.pipelines

    @property
    def artifact_dir(self) -> Path:
        """The local artifact folder. With `artifact_dir: s3://...`, this node's own folder for
        the project (jammi.store.node_dir: its published jammi.duckdb, locks, frames), while the
        embedding tables live under the URL (`artifact_url`)."""
        if is_url(self.spec.artifact_dir):
            return node_dir(self.spec.artifact_dir)
        return self.resolve(self.spec.artifact_dir)

    @property
    def artifact_url(self) -> str | None:
        """The object-store URL of `artifact_dir: s3://...`, None for a local artifact_dir."""
        return self.spec.artifact_dir.rstrip("/") if is_url(self.spec.artifact_dir) else None

    def resolve(self, relative: str) -> Path:
        p = Path(os.path.expanduser(relative))
        return p if p.is_absolute() else (self.root / p)

    @property
    def entities(self) -> dict[str, EntitySpec]:
        return self.spec.entities

    def entity_of(self, name: str) -> str | None:
        """The entity `name` refers to, as `product` or as its asset `fused_product`."""
        if name in self.entities:
            return name
        bare = name.removeprefix("fused_")
        return bare if name.startswith("fused_") and bare in self.entities else None

    def embedding_source(self, name: str) -> str:
        """The `_source_id` of tables embedding `name`: the source, `fused_<entity>`, or
        `chunks_<source>` for a chunked pipeline's input."""
        entity = self.entity_of(name)
        return keys.fused(entity) if entity else name

    def chunked_source(self, name: str) -> str | None:
        """The source (or entity) whose chunks `name` (`chunks_<source>`) holds, else None."""
        bare = name.removeprefix(keys.CHUNKS_PREFIX)
        if name.startswith(keys.CHUNKS_PREFIX) and any(
                p.chunking and p.source == bare for p in self.pipelines.values()):
            return bare
        return None

    def chunking_pipeline(self, source: str) -> str | None:
        """The pipeline that chunks `source`, if any."""
        return next((n for n, p in self.pipelines.items() if p.chunking and p.source == source), None)

    def pipeline_input(self, pipeline: str) -> str:
        """What `pipeline` embeds the rows of: its source (or entity), or `chunks_<source>`."""
        pipe = self.pipelines[pipeline]
        return keys.chunks(pipe.source) if pipe.chunking else pipe.source

    def frame_asset(self, name: str) -> str:
        """The asset holding the rows of `name`: `validated_<source>`, `fused_<entity>` or
        `chunks_<source>`."""
        if self.chunked_source(name):
            return name
        entity = self.entity_of(name)
        return keys.fused(entity) if entity else keys.validated(name)

    def frame_spec(self, name: str) -> SourceSpec | None:
        """The declared columns and key of a source, or those of a fused entity's or a chunks
        frame."""
        if self.chunked_source(name):
            columns = {c: ColumnSpec(type="int" if c in ("ordinal", "start", "end") else "str",
                                     nullable=False) for c in CHUNK_COLUMNS}
            return SourceSpec(kind="parquet", path=name, key=CHUNK_KEY, columns=columns,
                              description=f"chunks of {name.removeprefix(keys.CHUNKS_PREFIX)!r}")
        entity = self.entity_of(name)
        if entity is None:
            return self.sources.get(name)
        ent = self.entities[entity]
        id_col = ent.id_column(entity)
        columns = {id_col: ColumnSpec(type="str", nullable=False)}
        columns.update({f: ColumnSpec(type=t) for f, t in ent.fields.items()})
        return SourceSpec(kind="parquet", path=keys.fused(entity), key=id_col, columns=columns,
                          description=f"fused entity {entity!r}")

    def pipelines_of(self, source: str) -> dict[str, PipelineSpec]:
        return {n: p for n, p in self.pipelines.items() if p.source == source}


def project_path(explicit: str | os.PathLike | None = None) -> Path:
    """--project PATH, else $JAMMI_PROJECT, else ./jammi.yaml."""
    raw = explicit or os.environ.get(PROJECT_ENV) or "jammi.yaml"
    return Path(raw).expanduser().resolve()


def _expand_env(value: Any, where: str, file: Path, expanded: list[str]) -> Any:
    if isinstance(value, dict):
        return {k: _expand_env(v, f"{where}.{k}" if where else str(k), file, expanded)
                for k, v in value.items()}
    if isinstance(value, list):
        return [_expand_env(v, f"{where}[{i}]", file, expanded) for i, v in enumerate(value)]
    if isinstance(value, str):
        def sub(m: re.Match) -> str:
            if m.group(1) not in os.environ:
                raise ConfigError(f"{file}: {where}: environment variable ${{{m.group(1)}}} is not set")
            if where.rsplit(".", 1)[-1] not in FILE_FIELDS:
                expanded.append(os.environ[m.group(1)])
            return os.environ[m.group(1)]
        return _ENV_REF.sub(sub, value)
    return value


def _format_validation_error(file: Path, err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"])
        msg = e["msg"].removeprefix("Value error, ")
        lines.append(f"{file}: {loc}: {msg}" if loc else f"{file}: {msg}")
    return "\n".join(lines)


def parse_project(data: Any, path: Path) -> Project:
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping with 'sources' and 'pipelines'")
    expanded: list[str] = []
    try:
        spec = ProjectSpec.model_validate(_expand_env(data, "", path, expanded))
    except ValidationError as err:
        raise ConfigError(redact(_format_validation_error(path, err), expanded)) from None
    return Project(spec, path, tuple(dict.fromkeys(expanded)))


def load_project(path: str | os.PathLike | None = None) -> Project:
    """Read and validate a project file; every problem names the file and the field."""
    file = project_path(path)
    if not file.is_file():
        raise ConfigError(
            f"{file}: project file not found (pass --project PATH or set ${PROJECT_ENV})"
        )
    return parse_project(load_yaml(file.read_text(encoding="utf-8"), file), file)
