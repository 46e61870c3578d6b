"""``prescient fleet generate``: ``prescient data generate`` with one Ray task per run (map x seed).

Each task calls the single-machine generator of one run (:func:`prescient.models.sim_data.generate_run`
and :func:`~prescient.models.shards.write_shard`, reproducible bytes) into a temporary folder of
the node it runs on and returns the shard's bytes through Ray's object store; the driver writes
each shard into ``--out`` atomically and then the same ``index.json`` as ``data generate``. So
the same arguments give the same files, byte for byte, and ``--out`` need not be shared storage.
Resumable: a shard already in ``--out`` with the same run and settings is kept.
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prescient.bus.cli import fraction, non_negative_int, output_dir, positive_float, positive_int
from prescient.bus.errors import StartupError


def shard_bytes(run: Any, gen: Any) -> tuple[str, bytes]:
    """Generate one run's shard (in a temporary folder) and return its name and bytes (inside a Ray task)."""
    from prescient.models.shards import write_shard
    from prescient.models.sim_data import generate_run

    with tempfile.TemporaryDirectory(prefix="fleet_gen") as tmp:
        path = Path(tmp) / f"{run.name}.npz"
        write_shard(path, generate_run(run, gen))
        return path.name, path.read_bytes()


def fleet_generate(
    out_dir: Path, runs: list[Any], gen: Any, address: str | None, workers: int | None,
    night_fraction: float, on_done: Callable[[str], None] | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Generate ``runs`` as Ray tasks into ``out_dir``; returns the manifest (``index.json``).

    Mirrors :func:`prescient.models.sim_data.generate`: the same split check, the same shard
    names and bytes, the same index.

    Raises:
        SimDataError: held-out and training seeds together, or a shard made with other settings.
        StartupError: Ray cannot start or the cluster is unreachable.
    """
    from prescient.models.sim_data import _check_split, _shard_is_current, build_index
    from prescient.service.app.fleet.ray_session import ray_session
    from prescient.service.app.fleet.store import write_atomic

    _check_split([r.seed for r in runs], out_dir)
    todo = [r for r in runs if not _shard_is_current(out_dir / f"{r.name}.npz", r, gen)]
    if todo:
        with ray_session(address, workers) as ray:
            remote = ray.remote(num_cpus=1, max_retries=1)(shard_bytes)
            pending = [remote.remote(r, gen) for r in todo]
            while pending:
                ready, pending = ray.wait(pending, num_returns=1)
                name, data = ray.get(ready[0])
                write_atomic(out_dir / name, data)
                if on_done is not None:
                    on_done(name)
    config = {**gen.as_meta(), "night_fraction": night_fraction}
    if runs:
        config.update(
            duration_s=sorted({r.duration_s for r in runs}), n_agents=sorted({r.n_agents for r in runs})
        )
    return build_index(out_dir, config)


def _run(args: argparse.Namespace) -> int:
    from prescient.bus.cli import progress_bar
    from prescient.models.sim_branches import parse_branches
    from prescient.models.sim_data import GenConfig, SimDataError, parse_seeds, plan_runs
    from prescient.service.app.fleet.ray_session import check_reachable, import_ray, resolve_address

    import_ray()
    if args.duration <= 10.0:
        raise StartupError(f"--duration must exceed 10 s (2 s warm-up + 8 s future), got {args.duration}")
    maps = [name for value in args.maps for name in value.split(",") if name]
    address = resolve_address(args.address)
    if address is not None:
        check_reachable(address)
    try:
        runs = plan_runs(maps, parse_seeds(args.seeds), args.duration, args.agents, args.night_fraction)
        gen = GenConfig(stride_ticks=args.stride, use_lidar=not args.no_lidar,
                        branches=parse_branches(args.branches), branch_every=args.branch_every)  # fmt: skip
        args.out.mkdir(parents=True, exist_ok=True)
        with progress_bar("fleet generate", len(runs), "runs") as bar:
            index = fleet_generate(args.out, runs, gen, address, args.workers, args.night_fraction,
                                   on_done=lambda _n: bar.advance())  # fmt: skip
    except SimDataError as e:
        raise StartupError(str(e)) from e
    print(
        f"{args.out} ({index['split']}): {len(index['shards'])} shards, {index['samples']} samples; manifest index.json"
    )
    return 0


def register_generate(
    sub: argparse._SubParsersAction, add_cluster_args: Callable[[argparse.ArgumentParser], None]
) -> None:
    """Add ``fleet generate``: the arguments of ``data generate`` plus ``--address``/``--workers``."""
    g = sub.add_parser("generate", help="prescient data generate, one Ray task per run",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    g.add_argument("--out", type=output_dir, required=True, help="output folder of .npz shards")
    g.add_argument("--maps", "--scenarios", dest="maps", nargs="+", default=["intersection,t_junction,arterial,roundabout"],
                   help="maps, comma- or space-separated")  # fmt: skip
    g.add_argument("--seeds", default="0-29", help="e.g. 0-29 or 1,4,7; 100 and above are held out")
    g.add_argument("--duration", type=positive_float, default=60.0, help="simulated seconds per run (> 10)")
    g.add_argument("--night-fraction", type=fraction, default=0.3)
    g.add_argument("--agents", type=non_negative_int, default=40)
    g.add_argument("--stride", type=positive_int, default=10, help="keep every Nth 100 ms tick")
    g.add_argument("--no-lidar", action="store_true", help="do not splat LiDAR (onboard default: on)")
    g.add_argument("--branches", default="keep,slow,stop,route", help="counterfactual ego plans per sample")
    g.add_argument("--branch-every", type=positive_int, default=1, help="branch every Nth sample")
    add_cluster_args(g)
    g.set_defaults(func=_run)
