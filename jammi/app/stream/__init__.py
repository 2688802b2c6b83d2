"""Stream sources: micro-batches of a NATS JetStream subject committed to the pipeline's table
(batch), the long-running worker (worker) and its figures (metrics)."""
