"""The embedding model resource: any sentence-transformers model, loaded offline, or the service
a pipeline's `provider:` block names."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from jammi.embedding.model import Encoder, LazyEncoder, load_encoder
from jammi.embedding.providers import pipeline_encoder
from jammi.spec.project import PipelineSpec


class EmbeddingModelResource(dg.ConfigurableResource):
    """Loads pipeline models by Hugging Face id or local directory; device auto = CUDA if present.

    Each model is loaded once per process and reused by every asset that asks for it.
    """

    device: str = "auto"

    def encoder(self, model_id: str, backend: str = "torch",
                artifact_dir: Path | str | None = None) -> Encoder:
        """The loaded model (loads it now: a model that cannot load fails the step here); the
        onnx, onnx-int8 and openvino backends keep their export under `artifact_dir`."""
        return load_encoder(model_id, self.device, backend, artifact_dir)

    def lazy(self, model_id: str, backend: str = "torch",
             artifact_dir: Path | str | None = None) -> LazyEncoder:
        """The model, loaded only when a text is first encoded."""
        return LazyEncoder(model_id, self.device, backend, artifact_dir)

    def for_pipeline(self, pipe: PipelineSpec, artifact_dir: Path | str | None = None,
                     secrets: tuple[str, ...] = ()) -> Encoder:
        """The pipeline's encoder: its provider (a fresh one per step: its usage is the step's), or
        its model, loaded only when a text is first encoded; `secrets` are masked in its errors."""
        return pipeline_encoder(pipe, self.device, artifact_dir, secrets)
