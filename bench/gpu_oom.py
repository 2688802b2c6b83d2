"""Out-of-memory back-off on a real GPU: the encoder's batches under a memory cap that the
starting batch size cannot fit.

1. `device: auto` resolves to CUDA and the encoder loads there; the starting batch size from the
   device's free memory (`jammi.embedding.batching.start_size`).
2. Reference vectors: the texts encoded with no cap (batch size 32).
3. The cap: `torch.cuda.set_per_process_memory_fraction` set so that the memory held after
   loading plus a sixth of what a batch of --start texts needed above it fits. Then the same
   texts go through `encode_window` with a sizer that starts at --start and grows back after
   --grow-after good batches: the first batch must run out of memory, the size halve until it
   fits, grow back, and every row still get a vector equal to the reference's.

Prints a table and writes bench/results/gpu_oom.json; exits non-zero when no out-of-memory error
happened, `auto` did not pick CUDA, a row failed, a grow-back never happened, or a vector differs
(cosine < 0.999).

    python bench/gpu_oom.py [--texts 1500] [--start 1024] [--grow-after 1] \
        [--data-dir ../shared/data/amazon-google] [--results bench/results/gpu_oom.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from embed_overhead import DATA, check_device, long_texts, software  # noqa: E402

from jammi.embedding.batching import BatchSizer, start_size  # noqa: E402
from jammi.embedding.encode import encode_window  # noqa: E402
from jammi.embedding.model import load_encoder, resolve_device  # noqa: E402
from jammi.spec.project import DEFAULT_MODEL  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "gpu_oom.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=1500)
    parser.add_argument("--start", type=int, default=1024, help="the sizer's starting batch size")
    parser.add_argument("--grow-after", type=int, default=1,
                        help="good batches before a halved size doubles (each halving doubles it)")
    parser.add_argument("--data-dir", type=Path, default=DATA)
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args()
    check_device("cuda")
    import torch

    auto = resolve_device("auto")  # what a pipeline's `device: auto` gets on this machine
    encoder = load_encoder(DEFAULT_MODEL, "auto")
    texts = long_texts(args.texts, args.data_dir)
    device = torch.device("cuda", torch.cuda.current_device())  # an index: the memory cap needs one
    free_start = start_size("cuda", encoder.max_seq_length)

    t0 = time.perf_counter()
    reference = encode_window(encoder, texts, BatchSizer(size=32)).vectors
    reference_s = time.perf_counter() - t0

    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    held = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    encoder.encode(texts[: args.start])  # the longest texts: what the first capped batch needs
    need = torch.cuda.max_memory_allocated(device) - held
    torch.cuda.empty_cache()
    total = torch.cuda.get_device_properties(device).total_memory
    cap = held + need // 6
    torch.cuda.set_per_process_memory_fraction(cap / total, device)

    sizer = BatchSizer(size=args.start, grow_after=args.grow_after)
    t0 = time.perf_counter()
    window = encode_window(encoder, texts, sizer)
    capped_s = time.perf_counter() - t0
    torch.cuda.set_per_process_memory_fraction(1.0, device)

    cosines = (window.vectors * reference).sum(axis=1)
    failed = sum(error is not None for error in window.errors)
    grew = any(b > a for a, b in zip(sizer.history, sizer.history[1:], strict=False))
    result = {
        "model": DEFAULT_MODEL, "software": software("cuda"), "texts": len(texts),
        "device_auto": auto, "encoder_device": str(encoder.model.device),
        "start_size_from_free_memory": free_start,
        "cap_mb": round(cap / 2**20, 1), "held_after_load_mb": round(held / 2**20, 1),
        "batch_of_start_needs_mb": round(need / 2**20, 1),
        "sizer_start": args.start, "grow_after": args.grow_after,
        "oom_events": sizer.oom_events, "reductions": sizer.reductions, "size_history": sizer.history,
        "final_size": sizer.size, "grew_back": grew, "rows_failed": failed,
        "min_cosine_to_uncapped": round(float(cosines.min()), 6),
        "uncapped_seconds": round(reference_s, 2), "capped_seconds": round(capped_s, 2),
    }
    for key, value in result.items():
        print(f"{key:<30}{value}")
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"\nwrote {args.results}")
    checks = ((f"device auto chose {auto!r}, not cuda", auto != "cuda"),
              ("no out-of-memory error happened under the cap", sizer.oom_events == 0),
              (f"{failed} row(s) failed", failed > 0),
              ("the size never grew back", not grew),
              ("a vector differs from the uncapped run", cosines.min() < 0.999))
    problems = [what for what, bad in checks if bad]
    if problems:
        sys.exit("gpu_oom: " + "; ".join(problems))


if __name__ == "__main__":
    main()
