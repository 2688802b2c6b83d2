"""The embedding model resource: any sentence-transformers model, loaded offline."""

from __future__ import annotations

import dagster as dg

from jammi.embedding.model import LazyEncoder, SentenceTransformerEncoder, load_encoder


class EmbeddingModelResource(dg.ConfigurableResource):
    """Loads pipeline models by Hugging Face id or local directory; device auto = CUDA if present.

    Each model is loaded once per process and reused by every asset that asks for it.
    """

    device: str = "auto"

    def encoder(self, model_id: str) -> SentenceTransformerEncoder:
        """The loaded model (loads it now: a model that cannot load fails the step here)."""
        return load_encoder(model_id, self.device)

    def lazy(self, model_id: str) -> LazyEncoder:
        """The model, loaded only when a text is first encoded."""
        return LazyEncoder(model_id, self.device)
