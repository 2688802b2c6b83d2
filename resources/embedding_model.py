"""The embedding model resource: any sentence-transformers model, loaded offline."""

from __future__ import annotations

import dagster as dg

from jammi_assets.embeddings.model import SentenceTransformerEncoder, load_encoder


class EmbeddingModelResource(dg.ConfigurableResource):
    """Loads pipeline models by Hugging Face id or local directory; device auto = CUDA if present.

    Each model is loaded once per process and reused by every asset that asks for it.
    """

    device: str = "auto"

    def encoder(self, model_id: str) -> SentenceTransformerEncoder:
        return load_encoder(model_id, self.device)
