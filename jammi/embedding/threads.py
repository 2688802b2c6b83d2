"""How many CPU threads the model's operations use in this process.

The stream worker encodes small batches (tens of texts); on a shared CPU, PyTorch's intra-op
threads then mostly wait on each other: on this 2-core machine under load, 10 short texts took
0.07-0.77 s with 2 threads and a steady 0.04-0.05 s with one."""

from __future__ import annotations


def set_cpu_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(max(1, int(threads)))
