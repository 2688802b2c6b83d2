"""Which runs `jammi materialize` makes of a selection, and over which partitions.

A Dagster run covers one partition of one partitions definition (or none), so a selection that
mixes a partitioned source with unpartitioned assets becomes a few batches, run in order: each
batch is the assets of one *group* (a partitioned source, or None for everything unpartitioned)
and no asset runs before what it depends on. Levels: an asset's level is the highest level of
what it depends on, plus one where that is in another group; assets are then pushed as late as
their dependents allow, so a partitioned source's raw_ and validate steps share one batch."""

from __future__ import annotations

from dataclasses import dataclass

import dagster as dg

from jammi import keys
from jammi.errors import JammiError
from jammi.spec.project import Project
from jammi_assets.jobs import ALL_ASSETS_JOB, AssetGraph, job_assets, source_job_name


@dataclass
class Batch:
    group: str | None  # the partitioned source whose partitions this batch runs; None: unpartitioned
    assets: list[str]


def plan_batches(chosen: list[str], upstream: dict[str, set[str]],
                 group_of: dict[str, str | None], step_of: dict[str, str] | None = None) -> list[Batch]:
    """`chosen` in batches, in an order that runs every asset after the chosen assets upstream
    of it (directly or through assets that are not chosen). Assets of one step (`step_of`:
    asset -> step, for steps that cannot be split) stay in one batch."""
    step_of = step_of or {}
    selected = set(chosen)
    node = {a: step_of.get(a, a) for a in chosen}
    members: dict[str, list[str]] = {}
    for a in chosen:
        members.setdefault(node[a], []).append(a)
    ups = {n: {node[u] for a in assets for u in _chosen_ancestors(a, upstream, selected)} - {n}
           for n, assets in members.items()}
    group = {n: group_of[assets[0]] for n, assets in members.items()}
    order = _topological(list(members), ups)
    level: dict[str, int] = {}
    for n in order:
        level[n] = max((level[u] + (group[u] != group[n]) for u in ups[n]), default=0)
    downs: dict[str, set[str]] = {n: set() for n in members}
    for n in members:
        for u in ups[n]:
            downs[u].add(n)
    for n in reversed(order):
        if downs[n]:
            level[n] = min(level[d] - (group[d] != group[n]) for d in downs[n])
    batches: dict[tuple[int, str | None], list[str]] = {}
    for a in chosen:
        batches.setdefault((level[node[a]], group[node[a]]), []).append(a)
    ordered = sorted(batches, key=lambda k: (k[0], k[1] is not None, k[1] or ""))
    return [Batch(g, batches[(lvl, g)]) for lvl, g in ordered]


def _chosen_ancestors(asset: str, upstream: dict[str, set[str]], selected: set[str]) -> set[str]:
    """The chosen assets `asset` depends on, looking through assets that are not chosen."""
    found, todo, seen = set(), list(upstream.get(asset, ())), set()
    while todo:
        u = todo.pop()
        if u in seen:
            continue
        seen.add(u)
        if u in selected:
            found.add(u)
        else:
            todo.extend(upstream.get(u, ()))
    return found


def _topological(chosen: list[str], ups: dict[str, set[str]]) -> list[str]:
    done: list[str] = []
    placed: set[str] = set()

    def visit(a: str) -> None:
        if a in placed:
            return
        placed.add(a)
        for u in sorted(ups[a]):
            visit(u)
        done.append(a)

    for a in chosen:
        visit(a)
    return done


def parse_partitions(text: str) -> tuple[str, str | None]:
    """`KEY` -> (KEY, None); `A...B` -> (A, B), an inclusive range."""
    start, sep, end = text.partition("...")
    if not sep:
        return text.strip(), None
    if not start.strip() or not end.strip():
        raise ValueError(f"--partition {text!r}: a range is FIRST...LAST (both ends, inclusive)")
    return start.strip(), end.strip()


@dataclass
class PlannedRun:
    """One batch of the plan: `assets` of `job`, over `keys` (None: unpartitioned)."""

    job: str
    assets: list[str]
    source: str | None  # the `jammi/source` tag: the one source the batch belongs to
    partitioned: str | None  # the partitioned source whose partitions `keys` are
    keys: list[str | None]


def _groups(project: Project, graph: AssetGraph, jobs: dict[str, list[str]]) -> dict[str, str | None]:
    """Asset -> the partitioned source whose job runs its partitions (None: unpartitioned)."""
    groups: dict[str, str | None] = dict.fromkeys(graph.partitions)
    for source in project.sources:
        for name in jobs[source_job_name(source)]:
            if graph.partitions.get(name) is not None and groups[name] is None:
                groups[name] = source
    return groups


def _owner(project: Project, graph: AssetGraph, jobs: dict[str, list[str]],
           batch: Batch) -> tuple[str, str | None]:
    """(job, jammi/source) of a batch: its partitioned source's job; else the job of the one
    unpartitioned source it lies in; else jammi_all."""
    if batch.group is not None:
        return source_job_name(batch.group), batch.group
    for source in project.sources:
        if (graph.partitions.get(keys.raw(source)) is None
                and set(batch.assets) <= set(jobs[source_job_name(source)])):
            return source_job_name(source), source
    return ALL_ASSETS_JOB, None


def partition_keys(project: Project, source: str, partitions: dg.PartitionsDefinition,
                   text: str | None, instance: dg.DagsterInstance) -> list[str]:
    """The keys `--partition` names. Without it: every partition of a source partitioned by a
    timestamp column; every partition with files of one partitioned by its `{date}` path; every
    file of a `dynamic: files` one. A landed file with no dynamic partition yet gets one."""
    from jammi.ingest.landing import landed_files

    spec = project.sources[source].partitions
    known = list(partitions.get_partition_keys(dynamic_partitions_store=instance))
    landed = list(landed_files(project, source)) if spec.by_path or spec.dynamic else []
    if isinstance(partitions, dg.DynamicPartitionsDefinition):
        new = [k for k in landed if k not in known and (text is None or k == text)]
        if new:
            instance.add_dynamic_partitions(partitions.name, new)
            known += new
    if text is None:
        return [k for k in known if k in landed] if spec.by_path else known
    try:
        first, last = parse_partitions(text)
    except ValueError as err:
        raise JammiError(str(err)) from None
    for key in (first, last):
        if key is not None and key not in known:
            span = f"{known[0]} ... {known[-1]}, {len(known)} keys" if known else "none yet"
            raise JammiError(f"--partition {key!r} is not a partition of source {source!r} "
                             f"({span})")
    if last is None:
        return [first]
    i, j = known.index(first), known.index(last)
    if j < i:
        raise JammiError(f"--partition {text!r}: {last!r} comes before {first!r}")
    return known[i:j + 1]


def plan_runs(project: Project, graph: AssetGraph, chosen: list[str], partition: str | None,
              instance: dg.DagsterInstance) -> list[PlannedRun]:
    jobs = job_assets(project, graph)
    batches = plan_batches(chosen, graph.upstream, _groups(project, graph, jobs), graph.steps)
    if partition is not None and all(b.group is None for b in batches):
        raise JammiError("--partition: nothing selected is partitioned")
    planned = []
    for batch in batches:
        job, source = _owner(project, graph, jobs, batch)
        run_keys: list[str | None] = [None]
        if batch.group is not None:
            run_keys = partition_keys(project, batch.group, graph.partitions[batch.assets[0]],
                                      partition, instance)
        planned.append(PlannedRun(job, batch.assets, source, batch.group, run_keys))
    return planned
