"""Everything a training run needs to stop and go on to the same weights.

``last.pt`` holds the model and optimiser state, the step, the sample order and the position in
it, the numpy and torch random states, and the best validation so far; plus the settings that
shape the weights (config, training runs), so a resume with other settings is refused rather than
silently mixed. Written atomically (a temporary file, then renamed) and read with
``torch.load(weights_only=True)``: tensors and plain values only, nothing is unpickled.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch


class TrainStateError(ValueError):
    """``last.pt`` is unreadable, or belongs to another configuration or data."""


@dataclass
class TrainState:
    """Position of a run in its schedule (see the module docstring).

    Attributes:
        step: optimiser steps done. perm: (n,) int64 sample order of the current pass; cursor:
        the next position in it. rng: the numpy generator of sample order and plan choice.
        best / best_step: best validation metrics so far and their step (None, -1 before any).
    """

    step: int
    perm: np.ndarray
    cursor: int
    rng: np.random.Generator
    best: dict[str, float] | None = None
    best_step: int = -1

    @classmethod
    def start(cls, seed: int, order: Callable[[np.random.Generator], np.ndarray]) -> TrainState:
        """A run at step 0; ``order(rng)`` gives each pass's sample order (a permutation)."""
        rng = np.random.default_rng(seed)
        return cls(step=0, perm=order(rng), cursor=0, rng=rng)

    def next_items(self, batch_size: int, order: Callable[[np.random.Generator], np.ndarray]) -> list[int]:
        """The next batch of sample indices (a new seeded ``order(rng)`` when a pass ends)."""
        if self.cursor + batch_size > len(self.perm):
            self.perm, self.cursor = order(self.rng), 0
        items = [int(v) for v in self.perm[self.cursor : self.cursor + batch_size]]
        self.cursor += batch_size
        return items

    def save(self, path: Path, model: torch.nn.Module, opt: torch.optim.Optimizer, identity: dict) -> None:
        """Write the state to ``path`` atomically (``identity``: what must match on resume)."""
        blob = {
            "model": model.state_dict(),
            "opt": opt.state_dict(),
            "step": self.step,
            "perm": torch.from_numpy(np.asarray(self.perm, np.int64)),
            "cursor": self.cursor,
            "rng": json.dumps(self.rng.bit_generator.state),
            "torch_rng": torch.get_rng_state(),
            "best": json.dumps(self.best),
            "best_step": self.best_step,
            "identity": json.dumps(_identity_of(identity), sort_keys=True),
        }
        tmp = path.with_name(path.name + ".tmp")
        torch.save(blob, tmp)
        os.replace(tmp, path)

    @classmethod
    def load(
        cls, path: Path, model: torch.nn.Module, opt: torch.optim.Optimizer, identity: dict
    ) -> TrainState:
        """Read ``path`` into ``model`` and ``opt``; returns the state to continue from.

        Raises:
            TrainStateError: unreadable, or saved with another config or other training runs.
        """
        try:
            blob = torch.load(path, map_location="cpu", weights_only=True)
            saved = json.loads(blob["identity"])
        except (OSError, RuntimeError, KeyError, ValueError, TypeError) as e:
            raise TrainStateError(f"{path}: not a training state ({type(e).__name__}: {e})") from e
        want = json.loads(json.dumps(_identity_of(identity), sort_keys=True))
        if saved != want:
            diff = sorted(k for k in set(saved) | set(want) if saved.get(k) != want.get(k))
            raise TrainStateError(
                f"{path} was saved by a run with other {', '.join(diff)}: start in another --out folder"
            )
        model.load_state_dict(blob["model"])
        opt.load_state_dict(blob["opt"])
        torch.set_rng_state(blob["torch_rng"])
        rng = np.random.default_rng()
        rng.bit_generator.state = json.loads(blob["rng"])
        return cls(
            step=int(blob["step"]),
            perm=blob["perm"].numpy().copy(),
            cursor=int(blob["cursor"]),
            rng=rng,
            best=json.loads(blob["best"]),
            best_step=int(blob["best_step"]),
        )


def _identity_of(identity: dict) -> dict:
    """The keys of ``identity`` that must match between a run and its resume."""
    return {k: identity[k] for k in ("train_config", "train_runs") if k in identity}


def trim_metrics(path: Path, step: int) -> None:
    """Keep the rows of a ``metrics.jsonl`` logged at or before ``step`` (the state resumed from).

    Rows a killed run wrote after its last save would otherwise appear twice.
    """
    if not path.is_file():
        return
    keep = [
        line for line in path.read_text().splitlines() if line and json.loads(line).get("step", 0) <= step
    ]
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(line + "\n" for line in keep))
    os.replace(tmp, path)
