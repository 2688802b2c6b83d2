"""The stream worker against the local NATS JetStream server: latency, throughput, and exactly
once under SIGKILL.

For each rate (20 and 50 events/s) a fresh stream gets events published at that rate for
`--seconds` seconds (2% malformed: half not JSON, half failing the declared `isin`), each with a
unique key, while one `jammi stream` worker process (the real console script, model loaded once,
runless materializations to a temporary Dagster instance) takes them. Once every event has been
taken the worker gets SIGTERM and must exit 0. Reported per rate:

- p50/p95/p99 latency: publish (the server's timestamp) to searchable (the batch's commit and
  catalog publish), as the worker measured them over every event (its status file);
- events_per_s: events taken / (last taken - first published);
- lost: good events whose key is not in the table; duplicated: table rows beyond one per key,
  plus rows added beyond one per key over all versions, plus dead letters beyond one per event;
- dead_lettered (distinct events on the dead-letter subject) against malformed.

Then the kill run: events at 20/s while the worker is SIGKILLed `--kills` times, each at a random
moment 0-3 s after its replacement committed its first batch, and restarted at once; after the
last kill a final worker drains the stream. Same counts.

Prints a table and writes bench/results/stream.json:
{"rates": {"20": {p50_s, p95_s, p99_s, events_per_s, lost, duplicated, dead_lettered, malformed}, "50":
{...}}, "kills": {trials, lost, duplicated, dead_lettered, malformed, events}}

    flock /tmp/jammi-bench.lock python bench/stream.py [--seconds 120] [--kills 10] [--seed 7]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import nats
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from jammi.app.facade import Jammi  # noqa: E402
from jammi.app.stream.metrics import status_path  # noqa: E402
from jammi.spec.project import load_project  # noqa: E402
from jammi.tables.catalog import Catalog  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "stream.json"
NATS_URL = "nats://127.0.0.1:4222"
MALFORMED_SHARE = 0.02
TOPICS = ["world", "sport", "tech", "science"]
PIPELINE = "news_titles"


class Run:
    """One fresh stream, its dead-letter stream and a project reading it, in a temp folder."""

    def __init__(self, root: Path, label: str, seed: int):
        token = uuid.uuid4().hex[:8]
        self.root = root / label
        self.root.mkdir(parents=True)
        self.stream, self.subject = f"BENCH{token}", f"bench{token}.news"
        self.dead_stream, self.dead_subject = f"BENCH{token}_DEAD", f"bench{token}.dead"
        self.rng = random.Random(seed)
        doc = {"artifact_dir": "artifacts", "sources": {"news": {
            "kind": "nats", "key": "id",
            "columns": {"id": {"type": "int", "nullable": False}, "title": {"type": "str", "nullable": False},
                        "topic": {"type": "str", "isin": TOPICS}},
            "nats": {"servers": NATS_URL, "subject": self.subject, "stream": self.stream,
                     "durable": f"jammi{token}", "dead_letter_subject": self.dead_subject,
                     "ack_wait_s": 5}}},
            "pipelines": {PIPELINE: {"source": "news", "text_columns": ["title"]}}}
        (self.root / "jammi.yaml").write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
        self.project = load_project(self.root / "jammi.yaml")
        self.published = 0
        self.malformed: set[int] = set()
        self.first_publish = None

    async def create(self) -> None:
        nc = await nats.connect(NATS_URL)
        js = nc.jetstream()
        await js.add_stream(name=self.stream, subjects=[self.subject])
        await js.add_stream(name=self.dead_stream, subjects=[self.dead_subject], duplicate_window=600)
        await nc.close()

    async def delete(self) -> None:
        nc = await nats.connect(NATS_URL)
        js = nc.jetstream()
        for name in (self.stream, self.dead_stream):
            try:
                await js.delete_stream(name)
            except Exception:  # already gone
                pass
        await nc.close()

    def payload(self, i: int) -> bytes:
        if self.rng.random() < MALFORMED_SHARE:
            self.malformed.add(i)
            if i % 2:
                return b'{"id": ' + str(i).encode() + b', "title": "truncated'
            return json.dumps({"id": i, "title": f"event {i}", "topic": "gossip"}).encode()
        topic = TOPICS[i % len(TOPICS)]
        words = self.rng.sample(["market", "vote", "storm", "match", "launch", "study", "merger", "record",
                                 "strike", "summit", "outage", "rally"], 3)
        return json.dumps({"id": i, "title": f"{topic} news {i}: {' '.join(words)} today",
                           "topic": topic}).encode()

    async def publish(self, rate: float, seconds: float, stop: asyncio.Event | None = None) -> None:
        nc = await nats.connect(NATS_URL)
        js = nc.jetstream()
        t0 = time.monotonic()
        self.first_publish = self.first_publish or time.time()
        n = int(rate * seconds)
        for k in range(n):
            if stop is not None and stop.is_set():
                break
            delay = t0 + k / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            await js.publish(self.subject, self.payload(self.published))
            self.published += 1
        await nc.close()

    def worker(self, log_name: str) -> subprocess.Popen:
        env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1",
               "DAGSTER_HOME": str(self.root / "dagster_home")}
        (self.root / "dagster_home").mkdir(exist_ok=True)
        log = open(self.root / log_name, "w")  # noqa: SIM115 - the process holds it
        command = [sys.executable, "-m", "jammi_assets.cli", "--project", str(self.root / "jammi.yaml"),
                   "stream", PIPELINE, "--status-every", "0.5"]
        return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=self.root)

    def status(self) -> dict:
        try:
            return json.loads(status_path(self.project.artifact_dir, PIPELINE).read_text())
        except (OSError, ValueError):
            return {}

    def version(self) -> int:
        catalog = Catalog(self.project.artifact_dir)
        rec = catalog.active(pipeline=PIPELINE) if catalog.exists() else None
        return -1 if rec is None else catalog.current_version(rec).version

    async def dead_letters(self) -> list[int]:
        nc = await nats.connect(NATS_URL)
        js = nc.jetstream()
        info = await js.stream_info(self.dead_stream)
        seqs = []
        if info.state.messages:
            for seq in range(info.state.first_seq, info.state.last_seq + 1):
                msg = await js.get_msg(self.dead_stream, seq)
                seqs.append(json.loads(msg.headers["Jammi-Stream-Seq"]))
        await nc.close()
        return seqs

    def table_rows(self) -> set[str]:
        frame = Jammi(self.project).sql(f"SELECT _row_id FROM jammi.{PIPELINE}_embeddings")
        return set(frame["_row_id"])

    async def counts(self) -> dict:
        jammi = Jammi(self.project)
        rows = jammi.sql("SELECT count(*) AS n, count(DISTINCT _row_id) AS d "
                         f"FROM jammi.{PIPELINE}_embeddings")
        n, d = int(rows["n"][0]), int(rows["d"][0])
        added = int(jammi.sql("SELECT coalesce(sum(added), 0) AS a FROM jammi.table_versions")["a"][0])
        dead = await self.dead_letters()
        good = {str(i) for i in range(self.published) if i not in self.malformed}
        present = self.table_rows()
        duplicated = (n - d) + max(0, added - d) + (len(dead) - len(set(dead)))
        return {"lost": len(good - present), "duplicated": duplicated,
                "dead_lettered": len(set(dead)), "malformed": len(self.malformed), "events": self.published,
                "unexpected_rows": len(present - good)}

    def wait_taken(self, proc: subprocess.Popen, timeout: float) -> dict:
        """Until the worker has taken every published event (its status counts them)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            snap = self.status()
            if snap.get("events", 0) >= self.published and self.published:
                return snap
            if proc.poll() is not None:
                raise SystemExit(f"the worker exited ({proc.returncode}); see {self.root}")
            time.sleep(0.2)
        raise SystemExit(f"the worker did not take every event within {timeout:.0f}s; see {self.root}")


def wait_for(predicate, timeout: float, what: str, proc: subprocess.Popen | None = None) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        if proc is not None and proc.poll() is not None:
            raise SystemExit(f"the worker exited ({proc.returncode}) before {what}")
        time.sleep(0.1)
    raise SystemExit(f"timed out waiting for {what}")


def stop(proc: subprocess.Popen) -> int:
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
        return -9


def rate_run(root: Path, rate: int, seconds: float, seed: int) -> dict:
    run = Run(root, f"rate{rate}", seed)
    asyncio.run(run.create())
    proc = run.worker("worker.log")
    try:
        wait_for(lambda: "reading" in (run.root / "worker.log").read_text(), 300, "the worker to start", proc)
        asyncio.run(run.publish(rate, seconds))
        snap = run.wait_taken(proc, 600)
        code = stop(proc)
        counts = asyncio.run(run.counts())
    finally:
        if proc.poll() is None:
            proc.kill()
        asyncio.run(run.delete())
    taken_s = snap["updated_at"] - run.first_publish
    return {"p50_s": snap["p50_s"], "p95_s": snap["p95_s"], "p99_s": snap["p99_s"],
            "events_per_s": round(run.published / taken_s, 2), "lost": counts["lost"],
            "duplicated": counts["duplicated"], "dead_lettered": counts["dead_lettered"],
            "malformed": counts["malformed"], "events": run.published, "sigterm_exit": code,
            "batches": snap["batches"], "unexpected_rows": counts["unexpected_rows"]}


def kill_run(root: Path, kills: int, rate: int, seed: int) -> dict:
    run = Run(root, "kills", seed)
    rng = random.Random(seed + 1)
    asyncio.run(run.create())
    procs: list[subprocess.Popen] = []

    async def publish_while_killing() -> None:
        halt = asyncio.Event()
        publisher = asyncio.create_task(run.publish(rate, 3600, halt))
        for trial in range(kills):
            proc = run.worker(f"worker{trial}.log")
            procs.append(proc)
            before = run.version()
            while run.version() <= before:  # the replacement has committed a batch
                if proc.poll() is not None:
                    raise SystemExit(f"worker {trial} exited ({proc.returncode})")
                await asyncio.sleep(0.1)
            await asyncio.sleep(rng.uniform(0.0, 3.0))
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            print(f"  kill {trial + 1}/{kills}: {run.published} events published, table v{run.version()}",
                  flush=True)
        halt.set()
        await publisher

    try:
        asyncio.run(publish_while_killing())
        final = run.worker("worker_final.log")
        procs.append(final)
        good = {str(i) for i in range(run.published) if i not in run.malformed}
        wait_for(lambda: run.version() >= 0 and run.table_rows() >= good, 600,
                 "every good event in the table", final)
        wait_for(lambda: len(set(asyncio.run(run.dead_letters()))) >= len(run.malformed), 120,
                 "the dead letters", final)
        code = stop(final)
        counts = asyncio.run(run.counts())
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
        asyncio.run(run.delete())
    return {"trials": kills, "lost": counts["lost"], "duplicated": counts["duplicated"],
            "dead_lettered": counts["dead_lettered"], "malformed": counts["malformed"],
            "events": counts["events"], "unexpected_rows": counts["unexpected_rows"], "sigterm_exit": code}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=120.0, help="publishing time per rate")
    ap.add_argument("--rates", default="20,50")
    ap.add_argument("--kills", type=int, default=10)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--keep", action="store_true", help="keep the temporary projects")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="jammi-bench-stream-"))
    rates = {}
    for rate in [int(r) for r in args.rates.split(",") if r]:
        print(f"rate {rate} events/s for {args.seconds:.0f}s ...", flush=True)
        rates[str(rate)] = rate_run(root, rate, args.seconds, args.seed + rate)
    print(f"{args.kills} SIGKILLs at 20 events/s ...", flush=True)
    kills = kill_run(root, args.kills, 20, args.seed) if args.kills else {}
    head = f"{'rate':>6} {'events':>7} {'p50 s':>7} {'p95 s':>7} {'p99 s':>7} {'ev/s':>7} {'lost':>5} " \
           f"{'dup':>5} {'dead':>5} {'malformed':>9} {'exit':>5}"
    print("\n" + head)
    for rate, r in rates.items():
        print(f"{rate:>6} {r['events']:>7} {r['p50_s']:>7.3f} {r['p95_s']:>7.3f} {r['p99_s']:>7.3f} "
              f"{r['events_per_s']:>7.2f} {r['lost']:>5} {r['duplicated']:>5} {r['dead_lettered']:>5} "
              f"{r['malformed']:>9} {r['sigterm_exit']:>5}")
    if kills:
        print(f"\nkills: {kills['trials']} SIGKILLs over {kills['events']} events: lost {kills['lost']}, "
              f"duplicated {kills['duplicated']}, dead-lettered {kills['dead_lettered']} of "
              f"{kills['malformed']} malformed, final SIGTERM exit {kills['sigterm_exit']}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"rates": rates, "kills": kills, "seconds": args.seconds,
                                   "cpus": os.cpu_count()}, indent=2) + "\n", encoding="utf-8")
    print(f"\nwrote {RESULTS.relative_to(ROOT)}")
    if not args.keep:
        import shutil

        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
