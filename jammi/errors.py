"""One small exception hierarchy; every message names the source, field or key."""


class JammiError(Exception):
    """Base class for errors a user can act on."""


class ConfigError(JammiError):
    """jammi.yaml is missing, unreadable or invalid."""


class SourceError(JammiError):
    """A source could not be extracted or breaks its declared contract."""


class KeyIntegrityError(SourceError):
    """Null or duplicate keys: the whole run is refused."""


class ModelLoadError(JammiError):
    """An embedding model could not be loaded."""


class EmbeddingError(JammiError):
    """Texts could not be encoded, even one at a time."""


class ProviderError(EmbeddingError):
    """An embedding service refused the credentials or the model, or the run could not make
    progress against it; the message names the service (its key masked) and what to do."""


class ArtifactError(JammiError):
    """The artifact directory or one of its tables is unusable."""


class DiskFullError(ArtifactError):
    """A write ran out of space (or quota); the message names the file and what is free."""


class SearchError(JammiError):
    """A search request cannot be answered."""


class FusionError(JammiError):
    """Source records cannot be standardized or fused into an entity."""


class SchemaMigrationError(SourceError):
    """Rows could not be migrated between a source's schema versions."""


class SinkError(JammiError):
    """A serving store (pgvector, LanceDB) could not be read or written; the message names the
    pipeline and sink (the DSN's secrets masked) and what failed."""


class SinkMoved(SinkError):
    """Another writer changed the store table since this run read its state: nothing was
    applied; run again."""
