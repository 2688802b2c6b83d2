"""What a provider pipeline's run cost, for its Counts (refresh_log) and its materialization:
the provider's own counts (requests, tokens sent, retries, waits, estimated cost), and the tokens
and cost avoided because the table already held vectors for the rows' texts (unchanged rows, or
texts another row has). In-process runs have none."""

from __future__ import annotations

from typing import TYPE_CHECKING

from jammi.embedding.providers.usage import UsageSnapshot, cost_of

if TYPE_CHECKING:  # build imports this module
    from jammi.tables.build import SourceRows


def run_usage(encoder, rows: SourceRows | None = None, sent: set[str] | None = None) -> dict | None:
    """The provider's usage so far, with the tokens of the distinct texts of `rows` whose content
    hash is not in `sent` (kept, not sent) as avoided; None for an in-process encoder."""
    usage = getattr(encoder, "usage", None)
    if usage is None:
        return None
    avoided = 0
    if rows is not None:
        kept = [rows.text_of[h] for h in set(rows.hashes) - (sent or set())]
        if kept:
            window = encoder.max_seq_length
            avoided = sum(min(n, window) for n in encoder.token_counts(kept))
    return usage.snapshot(avoided).as_dict()


def unchanged_usage(tokens: int, price_per_million: float | None) -> dict:
    """A run that found nothing changed, sent nothing, and avoided the `tokens` of its rows."""
    return UsageSnapshot(estimated_cost=cost_of(0, price_per_million), tokens_avoided=tokens,
                         cost_avoided=cost_of(tokens, price_per_million)).as_dict()


def usage_tokens(usage: dict | None) -> int:
    """The tokens of every text a run's rows hold: sent now or avoided (what a no-change run avoids)."""
    return int((usage or {}).get("tokens_sent") or 0) + int((usage or {}).get("tokens_avoided") or 0)
