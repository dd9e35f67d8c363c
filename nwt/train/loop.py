"""The training harness shared by the dVAE, prior and sync-expert trainers: process group, resume
fingerprint, checkpoints, dvclive, progress bar, parameter groups and the step loop.

A trainer keeps only what is its own (batches, losses, validation) and runs

    group = join_process_group(device)
    ckpt = Checkpoints(ckpt_dir, run_fingerprint(...), group)
    state = ckpt.resume()                 # None, or the matching last.pt (RNG states restored)
    loop = StepLoop(steps, start, checkpoint_every, group, save=..., stop_after=...)
    for step in loop:                     # step: index of the step being computed
        ...                               # after the body, the loop saves last.pt when due

Resume contract (docs/design.md): `last.pt` holds the full training state and a fingerprint of
the params (less the keys that do not change what a step computes), the inputs and the source of
the model and training code; a run resumes only from a matching one, else starts fresh and says
so. Batches and noise are seeded by (seed, step), so a resumed run computes the same steps as a
straight one.
"""
from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from tqdm import tqdm

from nwt.checkpoint import (
    files_fingerprint,
    fingerprint,
    load_for_resume,
    rng_state,
    save_checkpoint,
    set_rng_state,
    source_fingerprint,
)

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- process group
@dataclass
class ProcessGroup:
    """This process's place in a torchrun job (rank 0 of 1 outside one)."""

    rank: int
    world: int
    device: torch.device
    owns_group: bool = False  # initialised here, so destroyed by close()

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def average_grads(self, module: torch.nn.Module) -> None:
        """All-reduce a module's gradients by hand (for modules not wrapped in DDP)."""
        if self.world <= 1:
            return
        for p in module.parameters():
            if p.grad is not None:
                dist.all_reduce(p.grad)
                p.grad /= self.world

    def close(self) -> None:
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()


def join_process_group(device_hint: str | None = None, distributed: bool = True) -> ProcessGroup:
    """Rank, world size and device from torchrun's environment (WORLD_SIZE, LOCAL_RANK): gloo on
    CPU, nccl on CUDA. `device_hint` "cpu" keeps a CUDA machine's run on the CPU; `distributed`
    False runs one process whatever the environment says."""
    world = int(os.environ.get("WORLD_SIZE", "1")) if distributed else 1
    cuda = torch.cuda.is_available() and device_hint != "cpu"
    if world <= 1:
        return ProcessGroup(0, 1, torch.device(device_hint or ("cuda" if cuda else "cpu")))
    owns = not dist.is_initialized()
    if owns:
        dist.init_process_group("nccl" if cuda else "gloo")
    rank = dist.get_rank()
    if not cuda:
        return ProcessGroup(rank, world, torch.device("cpu"), owns)
    local = int(os.environ.get("LOCAL_RANK", rank))
    torch.cuda.set_device(local)
    return ProcessGroup(rank, world, torch.device("cuda", local), owns)


def wrap_ddp(model: torch.nn.Module, group: ProcessGroup, **kwargs: Any) -> torch.nn.Module:
    """The model wrapped in DistributedDataParallel under torchrun, else itself."""
    if group.world <= 1:
        return model
    device_ids = [group.device.index] if group.device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=device_ids, **kwargs)


# ----------------------------------------------------------------------------- resume
def run_fingerprint(kind: str, params: dict, input_files: Iterable[str | os.PathLike], code_modules: Iterable[str],
                    *inputs: Any, resume_neutral: Iterable[str] = ()) -> str:
    """Fingerprint of what shapes a checkpoint: the params section less `resume_neutral` keys
    (those that do not change what a step computes: a run with more steps resumes), other
    inputs (episode ids, timing), the input files' contents and the model and training code."""
    neutral = set(resume_neutral)
    kept = {k: v for k, v in sorted(params.items()) if k not in neutral}
    return fingerprint(kind, kept, *inputs, files_fingerprint(list(input_files)), source_fingerprint(*code_modules))


class Checkpoints:
    """`last.pt` (resumable state) and the exported model file of one training run."""

    def __init__(self, directory: str | os.PathLike, fingerprint_: str, group: ProcessGroup, name: str):
        self.directory, self.fingerprint, self.group, self.name = Path(directory), fingerprint_, group, name
        self.last_path = self.directory / "last.pt"

    def resume(self) -> dict | None:
        """The matching last.pt with the RNG states restored, or None (and why, in the log)."""
        ckpt = load_for_resume(self.last_path, self.fingerprint)
        if ckpt is None:
            if self.group.is_main:
                why = "no checkpoint" if not self.last_path.exists() else "checkpoint fingerprint differs"
                log.info("%s: starting fresh (%s at %s; fingerprint %s)", self.name, why, self.last_path,
                         self.fingerprint)
            return None
        set_rng_state(ckpt["rng"])
        if self.group.is_main:
            log.info("%s: resuming from %s at step %d", self.name, self.last_path, int(ckpt["step"]))
        return ckpt

    def save_last(self, step: int, train_wall_s: float, state: dict) -> None:
        """Rank 0 writes last.pt atomically: `state` + step, wall time, RNG states, fingerprint."""
        if self.group.is_main:
            save_checkpoint(self.last_path, {**state, "step": step, "train_wall_s": train_wall_s, "rng": rng_state(),
                                             "fingerprint": self.fingerprint})

    def export(self, filename: str, payload: dict) -> Path:
        """Rank 0 writes the exported model file (weights_only-loadable: plain containers, tensors)."""
        path = self.directory / filename
        if self.group.is_main:
            save_checkpoint(path, {**payload, "fingerprint": self.fingerprint})
        return path


# ----------------------------------------------------------------------------- logging
def open_live(report_dir: str | os.PathLike, group: ProcessGroup, resume: bool):
    """dvclive on rank 0 (curves under report_dir/plots; a resumed run appends), else None."""
    if not group.is_main:
        return None
    from dvclive import Live

    Path(report_dir).mkdir(parents=True, exist_ok=True)
    return Live(str(report_dir), dvcyaml=False, save_dvc_exp=False, resume=resume)


def log_metrics(live, step: int, metrics: dict[str, float], plot: bool = True) -> None:
    """One dvclive point per metric at `step` (no-op off rank 0)."""
    if live is None:
        return
    live.step = step
    for key, value in metrics.items():
        live.log_metric(key, value, plot=plot)


# ----------------------------------------------------------------------------- optimiser
def decay_groups(named_parameters: Iterable[tuple[str, torch.nn.Parameter]], weight_decay: float,
                 decays: Callable[[str, torch.nn.Parameter], bool]) -> list[dict]:
    """Two AdamW parameter groups: those `decays(name, p)` picks get `weight_decay`, the rest none."""
    named = list(named_parameters)
    return [dict(params=[p for n, p in named if decays(n, p)], weight_decay=weight_decay),
            dict(params=[p for n, p in named if not decays(n, p)], weight_decay=0.0)]


# ----------------------------------------------------------------------------- the loop
class StepLoop:
    """Iterates the step indices still to run; after each step's body it advances the counter,
    the progress bar and the wall clock, writes last.pt every `checkpoint_every` steps and at the
    end (`save(step, train_wall_s)`), and stops early after `stop_after` (tests simulate an
    interruption with it: `interrupted` is then True and nothing is exported)."""

    def __init__(self, steps: int, start: int, checkpoint_every: int, group: ProcessGroup, desc: str,
                 save: Callable[[int, float], None], stop_after: int | None = None, wall_before: float = 0.0):
        self.steps, self.step, self.group = int(steps), int(start), group
        self.start = self.step
        self.checkpoint_every = max(1, int(checkpoint_every))
        self.save, self.stop_after, self.wall_before = save, stop_after, wall_before
        self.interrupted = False
        self.t_loop = time.time()
        self.bar = tqdm(total=self.steps, initial=self.step, desc=desc, disable=not group.is_main,
                        dynamic_ncols=True)

    @property
    def train_wall_s(self) -> float:
        return self.wall_before + time.time() - self.t_loop

    @property
    def loop_s(self) -> float:
        """Seconds spent in this process's steps (not counting a resumed run's earlier part)."""
        return time.time() - self.t_loop

    def due(self, every: int) -> bool:
        """Inside a step's body: whether the count of steps done after it is a multiple of `every`
        (0: never) or the last."""
        done = self.step + 1
        return (every > 0 and done % every == 0) or done == self.steps

    def __iter__(self) -> Iterator[int]:
        while self.step < self.steps:
            yield self.step
            self.step += 1
            self.bar.update(1)
            if self.step % self.checkpoint_every == 0 or self.step == self.steps:
                self.save(self.step, self.train_wall_s)
                self.group.barrier()
            if self.stop_after is not None and self.stop_after <= self.step < self.steps:
                self.interrupted = True
                log.info("%s: stopping early at step %d (stop_after)", self.bar.desc, self.step)
                break
        self.bar.close()
