"""DCGAN training: one CPU, one GPU, or data-parallel under torchrun.

Design notes
- The split is preprocessed once into a uint8 tensor held in memory (data.load_dataset), so
  a step costs only indexing; the data pipeline stays far under 10% of a step.
- The sample stream is a pure function of (seed, step): epoch e visits a permutation seeded
  by (seed, e), step s takes items [s*B, (s+1)*B) of the concatenated epochs, and rank r of
  W takes its contiguous 1/W slice. Latents and flips come from a generator seeded by
  (seed, step, rank). Resuming therefore continues exactly, with no RNG state to restore,
  and the ranks of a distributed run see disjoint shards whose union is the single-process
  batch (a distributed sampler by construction).
- Under torchrun both networks are wrapped in DistributedDataParallel; BatchNorm buffers
  are averaged across ranks before every checkpoint so that all ranks hold identical
  models. Only rank 0 writes files.
- Checkpoints (networks, optimisers, step, wall time) are written atomically with
  torch.save and read back with weights_only=True, so a checkpoint cannot run code.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import io
import json
import math
import platform
import shutil
import signal
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from codec import __version__, objectives
from codec.data import DEFAULTS, load_dataset
from codec.devices import pick_device
from codec.errors import DataError, TrainingError
from codec.fileio import load_torch_file, write_bytes
from codec.generator import ModelConfig
from codec.images import uint8_to_float
from codec.objectives import Objective
from codec.shard import Shard

#: The files objectives export into a run folder.
MODEL_FILES = tuple(dict.fromkeys(o.load().model_file for o in objectives.OBJECTIVES.values()))


@dataclass
class TrainConfig:
    """Settings of one training run (see `percodec train-generator --help`)."""

    dataset: str = "celeba"
    data_root: str | None = None
    framing_from: str = "celeba64"  # photos: the model whose framing the faces are framed on
    mix: tuple[tuple[str, str, float], ...] = ()  # more sources (dataset, root, share of the images drawn)
    out: str = "runs/celeba64"
    data_cache: str | None = None  # where the prepared images are cached [out/cache]
    split: str = "train"
    steps: int | None = None
    epochs: float | None = None
    batch_size: int = 128
    nz: int = 100
    ngf: int = 64
    ndf: int | None = None
    size: int | None = None
    lr: float = 2e-4
    lr_drop: int | None = None
    beta1: float = 0.5
    device: str = "auto"
    seed: int = 0
    flip: bool | None = None
    limit: int | None = None
    resume: bool = False
    force: bool = False  # start over in an --out that holds another run's files
    init_generator: str | None = None
    init_from: str | None = None
    dry_run: bool = False
    objective: str = "gan"
    distortion: str = "mse"
    target_bytes: float = 96.0
    adv_weight: float = 0.0
    step_range: tuple[float, float] = (0.5, 2.0)
    detail_lambdas: tuple[float, float] | None = None
    detail_context_width: int | None = None
    detail_identity: tuple[float, int] | None = None
    valid_every: int = 250
    valid_images: int = 256
    sample_every: int = 500
    checkpoint_every: int = 1000
    log_every: int = 50
    progress: bool = True
    command: str = field(default_factory=lambda: " ".join(["percodec", *sys.argv[1:]]))


@dataclass
class TrainResult:
    """Where training ended, this invocation's throughput, and the trained networks."""

    steps: int
    images_seen: int
    seconds: float
    images_per_second: float
    out: Path
    objective: Objective
    interrupted: bool = False

    @property
    def model_path(self) -> Path:
        return self.out / self.objective.model_file


#: Learning rates are multiplied by this from `--lr-drop` on (the usual end phase of
#: learned-compression training: the last few tenths of a dB come from small steps).
LR_DROP = 0.1


def set_lr_scale(optimizers: list[torch.optim.Optimizer], scale: float) -> None:
    """Every group's rate = its starting rate x scale. A function of the step alone, so a
    resumed run follows the same schedule (the starting rate travels in the checkpoint)."""
    for opt in optimizers:
        for group in opt.param_groups:
            group["lr"] = group.setdefault("base_lr", group["lr"]) * scale


def _check_out(out: Path, resume: bool, force: bool) -> None:
    """Never replace another run's work unasked: a checkpoint needs --resume (or --force to
    start over); a model file without a checkpoint to continue needs --force."""
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"--out {out} is a file, not a run folder")
    ckpt = out / "checkpoint.pt"
    for path in (ckpt, out / "train.log.jsonl", *(out / name for name in MODEL_FILES)):
        if path.exists() and not path.is_file():  # a folder or pipe here failed at the first checkpoint
            raise FileExistsError(f"{path}: not a regular file (a folder, device or pipe): remove it, or another --out")
    for path in (out / "samples", out / "cache"):
        if path.exists() and not path.is_dir():
            raise FileExistsError(f"{path}: not a folder: remove it or use another --out")
    models = [out / name for name in MODEL_FILES if (out / name).is_file()]
    if force:
        return
    if ckpt.is_file() and not resume:
        raise FileExistsError(f"{ckpt} exists: pass --resume to continue it, --force to start over, or another --out")
    if models and not ckpt.is_file():
        raise FileExistsError(
            f"{models[0]} exists and there is no checkpoint to continue: pass --force to replace it, or another --out"
        )


class SampleStream:
    """Indices of the step-s batch for one rank: a deterministic, resumable, sharded sampler."""

    def __init__(
        self, n: int, batch: int, seed: int, rank: int = 0, world: int = 1, drawn: np.ndarray | None = None
    ) -> None:
        """`drawn`: what position i of an epoch's n stands for (a --mix epoch), else image i."""
        if batch % world:
            raise ValueError(f"batch size {batch} is not divisible by {world} processes")
        self.n, self.batch, self.seed, self.rank, self.world = n, batch, seed, rank, world
        self.drawn = drawn
        self._perms: dict[int, np.ndarray] = {}

    def _perm(self, epoch: int) -> np.ndarray:
        if epoch not in self._perms:
            self._perms = {epoch: np.random.default_rng((self.seed, epoch)).permutation(self.n)}
        return self._perms[epoch]

    def indices(self, step: int) -> np.ndarray:
        per = self.batch // self.world
        start = step * self.batch + self.rank * per
        out = np.empty(per, dtype=np.int64)
        got = 0
        while got < per:
            epoch, pos = divmod(start + got, self.n)
            take = min(per - got, self.n - pos)
            out[got : got + take] = self._perm(epoch)[pos : pos + take]
            got += take
        return out if self.drawn is None else self.drawn[out]


def make_batch(
    images: torch.Tensor, stream: SampleStream, step: int, seed: int, rank: int, flip: bool, device: torch.device
) -> tuple[torch.Tensor, torch.Generator]:
    """This rank's real images (float, [-1, 1], flipped at random) for `step`, and the
    step's random generator, which the objective draws its own randomness from."""
    gen = _step_generator(seed, step, rank)
    x = uint8_to_float(images[torch.from_numpy(stream.indices(step))])
    if flip:
        mask = torch.rand(len(x), generator=gen) < 0.5
        x[mask] = x[mask].flip(-1)
    return x.to(device, non_blocking=True), gen


def _step_generator(seed: int, step: int, rank: int) -> torch.Generator:
    return torch.Generator().manual_seed((seed * 1_000_003 + step) * 4099 + rank)


def _sync_buffers(*modules: nn.Module) -> None:
    """Average BatchNorm running statistics across ranks (no-op when not distributed)."""
    if not (dist.is_available() and dist.is_initialized()):
        return
    w = dist.get_world_size()
    for m in modules:
        for b in m.buffers():
            if b.is_floating_point():
                dist.all_reduce(b)
                b.div_(w)


class StopRequest:
    """SIGINT/SIGTERM set a flag instead of killing the process, so the loop can finish its
    step and write a checkpoint; a second signal falls back to the default behaviour.
    Under torchrun the ranks agree (an all-reduce) so that all stop at the same step."""

    def __init__(self) -> None:
        self.requested = False
        self._old: dict[int, object] = {}

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: object) -> None:
        self.requested = True
        signal.signal(signum, self._old.get(signum, signal.SIG_DFL))  # a second signal stops hard

    def __exit__(self, *exc: object) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)

    def agreed(self, device: torch.device) -> bool:
        if not (dist.is_available() and dist.is_initialized()):
            return self.requested
        flag = torch.tensor([float(self.requested)], device=device)
        dist.all_reduce(flag)
        return bool(flag.item() > 0)


def _ddp(module: nn.Module) -> nn.Module:
    # Buffers are not synced on every forward: that in-place copy breaks the GAN's repeated
    # forwards through D before backward. `_sync_buffers` averages them at checkpoints.
    params = inspect.signature(nn.parallel.DistributedDataParallel).parameters
    key = "forward_sync_buffers" if "forward_sync_buffers" in params else "broadcast_buffers"
    return nn.parallel.DistributedDataParallel(module, **{key: False})


def _unwrap(objective: object) -> None:
    """Drop the DDP wrappers the objective trained through, so the process group can go."""
    for name, value in vars(objective).items():
        if isinstance(value, nn.parallel.DistributedDataParallel):
            setattr(objective, name, value.module)


def _atomic_save(obj: object, path: Path) -> None:
    buf = io.BytesIO()
    torch.save(obj, buf)
    write_bytes(path, buf.getvalue(), force=True)


def _code_version() -> str:
    try:
        import subprocess

        root = Path(__file__).resolve().parent.parent
        rev = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5
        ).stdout.strip()
        return f"{__version__}+{rev}" if rev else __version__
    except Exception:
        return __version__


def _load_images(
    cfg: TrainConfig, split: str, size: int, limit: int | None, main: bool, source: tuple[str, str] | None = None
) -> tuple[np.ndarray, int]:
    """A split of the run's dataset, or of `source` (dataset, root): one of --mix's."""
    progress = cfg.progress and main
    dataset, root = source or (cfg.dataset, cfg.data_root)
    info = DEFAULTS[dataset]
    if cfg.dry_run:
        g = torch.Generator().manual_seed(cfg.seed + (split != cfg.split) + 7 * (source is not None))
        return torch.randint(0, 256, (256, info.nc, size, size), generator=g, dtype=torch.uint8).numpy(), 0
    if root is None:
        raise ValueError("--data-root is required (or use --dry-run for fake data)")

    def skipped(why: str) -> None:  # every rank meets them; rank 0 says so
        if main:
            print(f"percodec: skipped: {why}", file=sys.stderr)

    framing = None
    if dataset == "photos":
        from codec.ladder import framing_of

        framing = framing_of(cfg.framing_from)
        if framing is None:
            raise ValueError(f"--framing-from {cfg.framing_from} has no framing to frame the photos' faces on")
    data = load_dataset(dataset, root, split, size=size, limit=limit, cache_dir=data_cache(cfg),
                        progress=progress, on_skip=skipped, framing=framing)  # fmt: skip
    return data.images, data.skipped


def data_cache(cfg: TrainConfig) -> Path:
    """Where a run's prepared images (decoded, framed) are cached: --data-cache, which runs on
    the same data can share (framing a photo folder's faces takes minutes per thousand), or
    else the run folder's cache/."""
    return Path(cfg.data_cache).expanduser() if cfg.data_cache else Path(cfg.out) / "cache"


def _check_options(cfg: TrainConfig) -> None:
    """A known objective, and no option set (away from its default) that only other
    objectives take: it would be silently ignored."""
    objectives.of_name(cfg.objective)
    fields = TrainConfig.__dataclass_fields__
    given = [f for f in fields if f != "command" and getattr(cfg, f) != _default(fields[f])]
    objectives.refuse_others(cfg.objective, given)


def _make_objective(cfg: TrainConfig, mcfg: ModelConfig, device: torch.device, wrap, main: bool, resuming: bool):
    kind = objectives.of_name(cfg.objective)

    def valid() -> torch.Tensor:
        split = "all" if cfg.dataset == "folder" else "valid"
        images, _ = _load_images(cfg, split, mcfg.size, cfg.valid_images, main)
        return torch.from_numpy(np.ascontiguousarray(images))

    return kind.load().from_config(cfg, mcfg, device, wrap, valid, resuming)


def _default(f: Any) -> Any:
    """A dataclass field's default value."""
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default


@dataclass
class _Process:
    """This process's place in a (torchrun) run."""

    world: int
    rank: int
    device: torch.device
    owns_group: bool  # it started the process group, so it ends it

    @property
    def main(self) -> bool:
        return self.rank == 0

    @staticmethod
    def start(device_name: str) -> _Process:
        shard = Shard.from_env()
        world, rank = shard.world, shard.rank
        device = pick_device(device_name, shard.local_rank)
        owns_group = world > 1 and not dist.is_initialized()
        if owns_group:
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        if device.type == "cuda":
            torch.cuda.set_device(device)
            torch.backends.cudnn.benchmark = True
        return _Process(world, rank, device, owns_group)

    def end(self, objective: object) -> None:
        _unwrap(objective)
        if self.owns_group:  # a group left to interpreter exit can abort there (gloo's threads)
            import gc

            gc.collect()  # the DDP reducers go before their group
            dist.destroy_process_group()


@dataclass
class _Run:
    """What a training run works on, once set up: data, schedule, networks and their state."""

    images: torch.Tensor  # uint8 (N, C, H, W)
    skipped: int  # unreadable images left out
    total_steps: int
    flip: bool
    mcfg: ModelConfig
    objective: Objective
    step: int = 0
    elapsed_before: float = 0.0  # training seconds of earlier invocations
    drawn: np.ndarray | None = None  # --mix: the images an epoch draws (indices into images), each source its share

    @property
    def n(self) -> int:
        return len(self.images)

    @property
    def per_epoch(self) -> int:
        """Images an epoch draws: every image once, or --mix's draws."""
        return self.n if self.drawn is None else len(self.drawn)


def train(cfg: TrainConfig) -> TrainResult:
    """Train (or resume) a model per `cfg` with its objective (gan or rd); returns this
    invocation's throughput and the trained objective."""
    _check_options(cfg)
    proc = _Process.start(cfg.device)
    out = Path(cfg.out)
    fresh = not out.exists()
    with _claimed(out, proc.main, fresh):
        _check_out(out, cfg.resume, cfg.force)
        cache = data_cache(cfg)
        if cache.exists() and not cache.is_dir():
            raise FileExistsError(f"--data-cache {cfg.data_cache}: not a folder")
        with _removed_on_failure(out, proc.main, fresh):  # a failed start leaves no run folder (or cache) behind
            run = _prepare(cfg, proc)
        if proc.main:
            (out / "samples").mkdir(parents=True, exist_ok=True)
        start_step = run.step
        try:
            seconds = _loop(cfg, run, proc, out)
        except BaseException:
            if proc.main:
                _tidy_failed_start(out)
            raise
    proc.end(run.objective)
    done = run.step - start_step
    return TrainResult(
        run.step,
        run.step * cfg.batch_size,
        seconds,
        done * cfg.batch_size / max(seconds, 1e-9),
        out,
        run.objective,
        interrupted=run.step < run.total_steps,
    )


@contextlib.contextmanager
def _claimed(out: Path, main: bool, fresh: bool) -> Iterator[None]:
    """Hold `out` for this run (rank 0): a second run into the same folder at once is
    refused before it reads anything, where both used to finish and the later model
    silently replaced the other's. An advisory lock on out/.lock, which the system lets go
    when the process ends, however it ends."""
    try:
        import fcntl
    except ImportError:  # no advisory locks on this system: unguarded, as before
        fcntl = None
    if not main or fcntl is None:
        yield
        return
    try:
        out.mkdir(parents=True, exist_ok=True)
        lock = open(out / ".lock", "a")  # noqa: SIM115 - held for the whole run
    except OSError as exc:
        raise TrainingError(f"--out {out}: cannot be used as a run folder ({exc.strerror})") from None
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        raise TrainingError(
            f"--out {out} is in use by another train-generator run: wait for it or use another --out"
        ) from None
    try:
        yield
    except BaseException:
        if fresh:  # nothing of a failed fresh start stays (_removed_on_failure took the rest)
            (out / ".lock").unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                out.rmdir()
        raise
    finally:
        lock.close()


def _tidy_failed_start(out: Path) -> None:
    """After a run failed before its first checkpoint (a full disk, NaN at step 2): nothing
    empty left behind (an empty log, no samples); the data cache stays for the next try."""
    if (out / "checkpoint.pt").exists():
        return
    log = out / "train.log.jsonl"
    with contextlib.suppress(OSError):
        if log.is_file() and log.stat().st_size == 0:
            log.unlink()
        (out / "samples").rmdir()  # only if empty


@contextlib.contextmanager
def _removed_on_failure(out: Path, main: bool, fresh: bool) -> Iterator[None]:
    """Remove `out` if the block fails and it did not exist before."""
    try:
        yield
    except BaseException:
        if fresh and main:
            shutil.rmtree(out, ignore_errors=True)
        raise


def _prepare(cfg: TrainConfig, proc: _Process) -> _Run:
    """Load the data, plan the steps, build the objective, and resume its checkpoint."""
    info = DEFAULTS[cfg.dataset]
    size = cfg.size or info.size
    mcfg = ModelConfig(nz=cfg.nz, ngf=cfg.ngf, ndf=cfg.ndf or cfg.ngf, nc=info.nc, size=size, crop=info.crop)
    _check_memory(cfg, mcfg, proc.device, proc.world)
    images, skipped = _load_images(cfg, cfg.split, size, cfg.limit, proc.main)
    drawn = None
    if cfg.mix:
        images, skipped, drawn = _mixed(cfg, images, skipped, size, proc.main)
    n = len(images) if drawn is None else len(drawn)
    if n < cfg.batch_size:
        raise ValueError(f"only {n} training images, fewer than one batch of {cfg.batch_size}")
    if cfg.steps is None:
        epochs = cfg.epochs if cfg.epochs is not None else (0.05 if cfg.dry_run else 5)
        total_steps = max(1, math.ceil(epochs * n / cfg.batch_size))
    else:
        total_steps = cfg.steps
    flip = cfg.flip if cfg.flip is not None else cfg.dataset != "mnist"
    torch.manual_seed(cfg.seed)  # weight init identical on every rank
    ckpt_path = Path(cfg.out) / "checkpoint.pt"
    resuming = cfg.resume and ckpt_path.is_file()
    wrap = _ddp if proc.world > 1 else (lambda m: m)
    objective = _make_objective(cfg, mcfg, proc.device, wrap, proc.main, resuming)
    run = _Run(torch.from_numpy(np.ascontiguousarray(images)), skipped, total_steps, flip, mcfg, objective,
               drawn=drawn)  # fmt: skip
    if resuming:
        _resume(run, cfg, ckpt_path, proc.device)
    elif cfg.resume and proc.main:
        print(f"no checkpoint in {cfg.out}; starting from scratch", file=sys.stderr)
    return run


def _mixed(
    cfg: TrainConfig, images: np.ndarray, skipped: int, size: int, main: bool
) -> tuple[np.ndarray, int, np.ndarray]:
    """The run's images and every --mix source's training images, one array, and the
    indices an epoch draws: each source its share (the run's dataset the rest), a source
    with fewer images than its share repeating them, one with more seen over epochs."""
    parts, shares = [images], [1.0 - sum(w for _, _, w in cfg.mix)]
    for dataset, root, weight in cfg.mix:
        if DEFAULTS[dataset].nc != DEFAULTS[cfg.dataset].nc:
            raise ValueError(f"--mix {dataset}: its images have {DEFAULTS[dataset].nc} channel(s), the run's "
                             f"{DEFAULTS[cfg.dataset].nc}")  # fmt: skip
        more, lost = _load_images(cfg, "all" if dataset == "folder" else "train", size, None, main, (dataset, root))
        parts.append(more)
        shares.append(weight)
        skipped += lost
    return np.concatenate(parts), skipped, mix_draws([len(p) for p in parts], shares)


def mix_draws(counts: list[int], shares: list[float]) -> np.ndarray:
    """Indices into the concatenated sources for one epoch: source i takes shares[i] of it,
    its images in turn (repeated where it has fewer than its share); the epoch is as long
    as needed for every image of every source to appear at least once."""
    length = max(math.ceil(n / s) for n, s in zip(counts, shares, strict=True))
    offsets = np.cumsum([0, *counts[:-1]])
    draws = [o + np.arange(round(s * length)) % n for o, n, s in zip(offsets, counts, shares, strict=True)]
    return np.concatenate(draws)


def _check_memory(cfg: TrainConfig, mcfg: ModelConfig, device: torch.device, world: int) -> None:
    """Refuse a run whose networks cannot fit, before any is built: they are built on the
    meta device (nothing allocated) to count their parameters and one image's activations.
    A floor, not a forecast: 16 bytes a parameter (weights, gradients, Adam's two moments)
    and 8 an activation (kept for the backward pass, and its gradient), the images held in
    memory (at least a batch); losses add more."""
    from codec.encoder import Encoder
    from codec.generator import Discriminator, Generator

    with torch.device("meta"):
        g = Generator(mcfg)
        nets: list[tuple[nn.Module, torch.Tensor]] = [(g, torch.zeros(1, mcfg.nz))]
        image = torch.zeros(1, mcfg.nc, mcfg.size, mcfg.size)
        if cfg.objective == "gan" or cfg.adv_weight:
            nets.append((Discriminator(mcfg), image))
        if cfg.objective != "gan":
            nets.append((Encoder(mcfg), image))
        params = sum(p.numel() for net, _ in nets for p in net.parameters())
        acts = sum(_activations(net.eval(), x) for net, x in nets)
    batch = max(1, cfg.batch_size // world)
    held = (cfg.limit or (256 if cfg.dry_run else cfg.batch_size)) * mcfg.nc * mcfg.size**2  # uint8 images, at least
    need = 16 * params + 8 * batch * acts + held
    avail = _available_memory(device)
    if avail is not None and need > avail:
        raise TrainingError(
            f"this run needs at least {need / 2**30:.1f} GiB ({params / 1e6:.1f}M parameters with their optimiser "
            f"state, activations for {batch} image(s) a step), more than the {avail / 2**30:.1f} GiB available: "
            "lower --width, --nz, --size or --batch-size"
        )


def _activations(net: nn.Module, x: torch.Tensor) -> int:
    """How many values the leaf layers of `net` produce for the input `x`."""
    total = 0

    def count(_module: nn.Module, _inputs: object, out: object) -> None:
        nonlocal total
        total += out.numel() if isinstance(out, torch.Tensor) else 0

    hooks = [m.register_forward_hook(count) for m in net.modules() if not any(m.children())]
    try:
        net(x)
    finally:
        for h in hooks:
            h.remove()
    return total


def _available_memory(device: torch.device) -> int | None:
    """Bytes free for a run on `device` (None where the system does not say)."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo") as f:
            info = dict(line.split(":", 1) for line in f)
        return int(info["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return None


def _resume(run: _Run, cfg: TrainConfig, ckpt_path: Path, device: torch.device) -> None:
    ck = load_torch_file(ckpt_path, "checkpoint", map_location=device)
    if not isinstance(ck, dict) or "model_config" not in ck:
        raise DataError(f"{ckpt_path}: not a percodec training checkpoint")
    saved = ModelConfig.from_json(ck["model_config"])
    if saved != run.mcfg or ck.get("objective", "gan") != cfg.objective:
        raise ValueError(
            f"checkpoint {ckpt_path} was made with {saved}, objective {ck.get('objective', 'gan')}; "
            f"not {run.mcfg}, objective {cfg.objective}: pass the same settings"
        )
    run.objective.load_state_dict(ck)
    run.step, run.elapsed_before = int(ck["step"]), float(ck["elapsed"])


def _require_finite(metrics: dict[str, torch.Tensor], step: int) -> None:
    """Stop the run at the first step whose loss terms are not all finite. One check per
    step (a sync on a GPU, as the progress bar's is); every rank stops: a NaN on one rank
    reaches the others through the averaged gradients by the next step."""
    values = torch.stack([v.detach().float().reshape(()) for v in metrics.values()])
    if not bool(torch.isfinite(values).all()):
        bad = ", ".join(f"{k}={v.item():g}" for k, v in metrics.items() if not torch.isfinite(v).all())
        raise TrainingError(
            f"training stopped at step {step}: {bad}; nothing from this step on was saved (the last checkpoint "
            "and model are as they were): a lower --lr usually helps"
        )


def _nonfinite_weights(modules: dict[str, nn.Module]) -> list[str]:
    return [f"{name}.{k}" for name, m in modules.items() for k, t in m.state_dict().items()
            if t.is_floating_point() and not bool(torch.isfinite(t).all())]  # fmt: skip


def _checkpoint(cfg: TrainConfig, run: _Run, proc: _Process, out: Path, elapsed: float) -> None:
    """Write the checkpoint and export the model with its card (rank 0; every rank syncs),
    unless a weight is NaN or infinite: then the run stops and the last ones stay."""
    _sync_buffers(*run.objective.modules().values())
    bad = _nonfinite_weights(run.objective.modules())
    if bad:
        raise TrainingError(
            f"training stopped at step {run.step}: weights became NaN or infinite ({', '.join(bad[:3])}"
            f"{' ...' if len(bad) > 3 else ''}); nothing from this step on was saved: a lower --lr usually helps"
        )
    if not proc.main:
        return
    state = run.objective.state_dict()
    state.update(step=run.step, elapsed=elapsed, model_config=run.mcfg.to_json(), objective=cfg.objective)
    state["train_config"] = json.dumps(asdict(cfg))
    _atomic_save(state, out / "checkpoint.pt")
    card = {
        "dataset": cfg.dataset,
        "split": cfg.split if not cfg.dry_run else "fake (dry run)",
        "train_images": str(run.n),
        "skipped_images": str(run.skipped),
        "steps": str(run.step),
        "batch_size": str(cfg.batch_size),
        "images_seen": str(run.step * cfg.batch_size),
        "seed": str(cfg.seed),
        "command": cfg.command,
        "code_version": _code_version(),
        "hardware": _hardware(proc.device, proc.world),
        "wall_seconds": f"{elapsed:.0f}",
        "date": time.strftime("%Y-%m-%d"),
    }
    if cfg.dataset == "photos" or any(d == "photos" for d, _, _ in cfg.mix):  # the framing it must ship with
        card["framing_from"] = cfg.framing_from
    if cfg.mix:
        share = 1.0 - sum(w for _, _, w in cfg.mix)
        card["mix"] = ", ".join([f"{cfg.dataset} {share:.2f}", *(f"{d}:{r} {w:.2f}" for d, r, w in cfg.mix)])
    run.objective.export(out / run.objective.model_file, card)


def _loop(cfg: TrainConfig, run: _Run, proc: _Process, out: Path) -> float:
    """Train from run.step to run.total_steps (or a stop request); this invocation's seconds."""
    stream = SampleStream(run.per_epoch, cfg.batch_size, cfg.seed, proc.rank, proc.world, run.drawn)
    start_step, t0 = run.step, time.perf_counter()
    bar = None
    if proc.main and cfg.progress:
        from tqdm import tqdm

        bar = tqdm(total=run.total_steps, initial=run.step, unit="step", desc="training", dynamic_ncols=True,
                   disable=None)  # fmt: skip
    # A fresh run (step 0) starts a fresh log, a resumed one continues its own.
    log = _Log(out / "train.log.jsonl", append=run.step > 0) if proc.main else None
    with StopRequest() as stop:
        try:
            while run.step < run.total_steps and not stop.agreed(proc.device):
                x, gen = make_batch(run.images, stream, run.step, cfg.seed, proc.rank, run.flip, proc.device)
                dropped = cfg.lr_drop is not None and run.step >= cfg.lr_drop
                set_lr_scale(run.objective.optimizers(), LR_DROP if dropped else 1.0)
                metrics = run.objective.step(x, gen)
                run.step += 1
                step = run.step
                _require_finite(metrics, step)
                rate = (step - start_step) * cfg.batch_size / max(time.perf_counter() - t0, 1e-9)
                if bar is not None:
                    bar.update(1)
                    if step % 10 == 0 or step == run.total_steps:
                        bar.set_postfix({k: f"{v.item():.3g}" for k, v in metrics.items()} | {"img_s": f"{rate:.0f}"})
                if log and step % cfg.log_every == 0:
                    log.write({"step": step, **{k: v.item() for k, v in metrics.items()}, "img_s": rate})
                if proc.main and step % cfg.valid_every == 0 and (val := run.objective.validate()):
                    log.write({"step": step, **val})
                if proc.main and step % cfg.sample_every == 0:
                    run.objective.save_samples(out / "samples" / f"step_{step:07d}.png")
                if step % cfg.checkpoint_every == 0 and step < run.total_steps:
                    _checkpoint(cfg, run, proc, out, run.elapsed_before + time.perf_counter() - t0)
            seconds = time.perf_counter() - t0
            _checkpoint(cfg, run, proc, out, run.elapsed_before + seconds)
            if proc.main:
                run.objective.save_samples(out / "samples" / f"step_{run.step:07d}.png")
        finally:
            if bar is not None:
                bar.close()
            if log:
                log.close()
    return seconds


class _Log:
    """train.log.jsonl: one JSON record per line, flushed as written."""

    def __init__(self, path: Path, append: bool) -> None:
        self.f = open(path, "a" if append else "w")  # noqa: SIM115 - closed by close()

    def write(self, rec: dict[str, float]) -> None:
        self.f.write(json.dumps(rec) + "\n")
        self.f.flush()

    def close(self) -> None:
        self.f.close()


def _hardware(device: torch.device, world: int) -> str:
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads"
    return f"{world} x {name}" if world > 1 else name
