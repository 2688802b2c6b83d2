"""A pipeline's `provider:` block: a service that embeds its texts over HTTP instead of a model in
Jammi's process. `kind: openai` is the OpenAI embeddings wire API, which OpenAI, Azure OpenAI's
v1 endpoint, Hugging Face TEI, Infinity, vLLM, Ollama and LiteLLM all speak.

    pipelines:
      products:
        source: products
        text_columns: [title, description]
        provider:
          kind: openai
          base_url: ${EMBED_URL}          # default: the OpenAI endpoint
          api_key: ${OPENAI_API_KEY}      # masked in every error, log line and listing
          model: text-embedding-3-small
          dimensions: 512                 # where the model supports it
          max_batch_texts: 256            # texts per request
          max_batch_tokens: 8000          # tokens per request
          max_concurrency: 4              # requests in flight
          requests_per_minute: 3000       # client-side limits
          tokens_per_minute: 1000000
          price_per_million_tokens: 0.02  # for the cost metadata

The provider, its endpoint, model and dimensions are part of the table's generation: changing
any of them builds a new table beside the active one (blue/green).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

OPENAI_BASE_URL = "https://api.openai.com/v1"


class ProviderSpec(BaseModel):
    """Where and how a pipeline's texts are embedded by a service."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    kind: Literal["openai"] = "openai"
    base_url: str = OPENAI_BASE_URL
    # None: $OPENAI_API_KEY when set; a local server that checks no key gets a placeholder
    api_key: SecretStr | None = None
    model: str = Field(min_length=1)
    dimensions: int | None = Field(default=None, ge=1, le=65536)
    max_batch_texts: int = Field(default=256, ge=1, le=2048)
    max_batch_tokens: int = Field(default=8000, ge=16)
    # the model's input window in tokens: longer texts are cut to it before they are sent and
    # counted in rows_truncated (default: the tokenizer's window, 8191 for OpenAI's models)
    max_input_tokens: int | None = Field(default=None, ge=8)
    # a local model directory (or the default model's id) whose tokenizer counts the tokens;
    # default: the model's own when it resolves to one, else a conservative estimate
    tokenizer: str | None = None
    max_concurrency: int = Field(default=4, ge=1, le=64)
    requests_per_minute: float | None = Field(default=None, gt=0)
    tokens_per_minute: float | None = Field(default=None, gt=0)
    price_per_million_tokens: float | None = Field(default=None, ge=0)
    timeout_s: float = Field(default=60.0, gt=0)
    # attempts of one request after a 5xx, a timeout or a dropped connection, with exponential
    # back-off and jitter; a 429 waits as long as its Retry-After says and is not counted here
    max_retries: int = Field(default=6, ge=0, le=50)
    # a run in which no request has succeeded for this long fails: it cannot make progress
    stall_timeout_s: float = Field(default=300.0, gt=0)

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("base_url must be an http:// or https:// URL (e.g. http://127.0.0.1:7997)")
        return value.rstrip("/")

    @property
    def model_id(self) -> str:
        """What the table's `_model_id` column and content hashes name: the provider kind, the
        model and, where declared, its dimensions."""
        return f"{self.kind}:{self.model}" + (f"@{self.dimensions}" if self.dimensions else "")

    @property
    def identity(self) -> dict:
        """What the provider's vectors depend on (the generation's part): never the key."""
        return {"kind": self.kind, "base_url": self.base_url, "model": self.model,
                "dimensions": self.dimensions}
