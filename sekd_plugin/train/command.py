"""The train command's library half: the command line, config resolution and :func:`main`.

A run folder holds one run (``<run>/.lock``, :class:`~sekd_plugin.common.locks.ProcessLock`); ``--resume`` continues from the last completed
epoch, or inside a label step from the first unfinished image (``--resume auto``: when there
is a run). The DEV benchmark of ``val.dev_datasets`` is a callback the caller passes in
(``dev_eval``): ``python -m sekd_plugin.train`` (:mod:`sekd_plugin.training`) passes the
package's HPatches benchmark, so that nothing in ``train/`` imports the benchmarks.
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import shutil
import sys
from pathlib import Path
from typing import Any

from ..common import run_cli, write_atomic
from ..common.errors import UserError
from ..common.locks import ProcessLock
from ..common.text import first_line
from . import config as config_mod
from . import ddp
from .evaluation import DevEval
from .state import RunError, StateFileError, load_state
from .trainer import Trainer

logger = logging.getLogger("sekd_plugin.train")

# what a run writes into its folder: replaced together when a run without a finished round is restarted
RUN_FILES = ("state.pth", "model.pth", "best.pth", "config.yaml", "report.md", "metrics.json", "losses.png",
             "keypoints.png", "validation.png", "dev.png")
RUN_FOLDERS = ("labels", "dev")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m sekd_plugin.train",
        description="Train SEKD by self-evolving keypoint detection and description on unlabeled images.",
        epilog=(
            "Overrides are key=value pairs over the config (e.g. schedule.rounds=2 optim.lr=3e-4 "
            "data.crop_size=256); see benchmark_configs/train/paper.yaml for every key. "
            "Under torchrun (WORLD_SIZE > 1) the run is distributed with DDP."
        ),
    )
    p.add_argument("--images", nargs="+", metavar="DIR", help="folders of training images (searched recursively)")
    p.add_argument("--output", required=True, metavar="runs/NAME", help="run folder (checkpoints, labels, report)")
    p.add_argument("--config", metavar="FILE.yaml", help="config file (default: the paper's schedule)")
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --output from its last completed epoch; '--resume auto' resumes when "
        "there is a run and starts one otherwise (for torchrun's elastic restarts)",
    )
    p.add_argument("--resume-auto", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--init-weights", metavar="PATH|NAME",
                   help="initialise the network from a checkpoint file or a weights name, e.g. 'sekd' (the official "
                        "model: python -m sekd_plugin.weights fetch sekd), 'sekd_evolved' or 'sekd_selftrained' (shipped; default: random)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")
    return p


def resolve_config(output: str | Path, *, resume: bool, images=None, config=None, overrides=(), init_weights=None):
    """The run config: a saved one (``resume``) or defaults < ``config`` < ``overrides``."""
    out = Path(output)
    overrides = list(overrides or [])
    if resume:
        saved = out / "config.yaml"
        if not saved.is_file():
            raise RunError(f"nothing to resume: {saved} not found")
        try:
            text = saved.read_text()
        except (OSError, UnicodeDecodeError) as e:
            raise config_mod.TrainConfigError(f"{saved}: unreadable ({first_line(e)})") from None
        base = config_mod.from_yaml(text, source=str(saved))
        conf = config_mod.load_config(config, overrides, base=base)
        if images:
            conf.images = [str(Path(d).resolve()) for d in images]
        if init_weights:
            # like with like: the run stored the resolved path of a name ("sekd") or a file
            conf.init_weights = _resolved_like(init_weights, base.init_weights)
        changed = [k for k in config_mod.diff(base, conf) if k not in config_mod.RESUME_MUTABLE]
        if changed:
            raise RunError(
                f"--resume keeps the run's config; these keys differ from {saved}: {changed} "
                f"(only {sorted(config_mod.RESUME_MUTABLE)} may change)"
            )
        return conf
    if not images:
        raise RunError("--images DIR [DIR ...] is required (except with --resume)")
    conf = config_mod.load_config(config, overrides)
    conf.images = [str(Path(d).resolve()) for d in images]
    if init_weights:
        conf.init_weights = str(resolve_init_weights(init_weights))
    return conf


def _resolved_like(value: str, saved: str | None) -> str:
    """``--init-weights`` given on resume, resolved as at the start of the run (a weights name
    to its file); the saved value when both name the same file (the weights are not read on
    resume: the state holds the model)."""
    try:
        path = resolve_init_weights(value)
    except RunError:
        return str(Path(value).expanduser().resolve())
    if saved and Path(saved).exists() and Path(saved).resolve().samefile(path):
        return saved
    return str(path)


def resolve_init_weights(value: str) -> Path:
    """``--init-weights``: a checkpoint file, or an asset name resolved like extractor
    checkpoints (``sekd``, ``sekd_selftrained``, ...: ``$SEKD_PLUGIN_WEIGHTS_DIR``, the cache,
    the copies shipped with the package). A missing asset is the same one line as for extractors."""
    from ..infra import assets

    p = Path(value).expanduser()
    if p.is_file():
        return p.resolve()
    if p.exists():
        raise RunError(f"--init-weights {value}: not a file")
    try:
        located = assets.locate(value)
    except assets.UnknownAssetError:
        raise RunError(f"--init-weights {value}: no such file, and not a known weights name "
                       f"({', '.join(a.name for a in assets.list_assets('weights'))})") from None
    if not located.found:
        raise RunError(f"--init-weights {value}: {located.reason}")
    return located.path.resolve()


def finished_rounds(out: Path) -> int | None:
    """Rounds the run in ``out`` has finished (``None``: no run, or a state that cannot be read)."""
    try:
        return int(load_state(out / "state.pth")["progress"]["round"])
    except (StateFileError, OSError, KeyError, TypeError, ValueError):
        return None


def replace_unfinished(out: Path) -> None:
    """Remove a run that finished no round (only the files a run writes; anything else stays)."""
    logger.warning("[sekd-train] %s holds a run that finished no round: replaced by this one", out)
    for name in RUN_FILES:
        (out / name).unlink(missing_ok=True)
    for name in RUN_FOLDERS:
        shutil.rmtree(out / name, ignore_errors=True)


def _config(out: Path, resume: bool | str, **kw):
    """``(config, resume)``: ``--resume auto`` resumes the run in ``out`` when it has one, and
    starts anew over a run that finished no round when the command differs from it."""
    if resume != "auto":
        return resolve_config(out, resume=bool(resume), **kw), bool(resume)
    if not (out / "state.pth").exists():
        return resolve_config(out, resume=False, **kw), False
    try:
        return resolve_config(out, resume=True, **kw), True
    except UserError:
        if finished_rounds(out) != 0:
            raise
        return resolve_config(out, resume=False, **kw), False


def main(
    *,
    output: str | Path,
    images: list[str] | None = None,
    config: str | None = None,
    resume: bool | str = False,
    init_weights: str | None = None,
    overrides: list[str] | tuple = (),
    progress: bool = True,
    dev_eval: DevEval | None = None,
    _session: dict | None = None,
) -> dict:
    """Train (or resume) a run into ``output``; returns its history. Raises user errors.

    ``resume``: ``True`` continues the run in ``output``; ``"auto"`` continues it when
    ``output/state.pth`` exists and starts one otherwise. ``dev_eval``: the DEV benchmark of
    ``val.dev_datasets`` (:data:`.evaluation.DevEval`; required with them). The config is
    checked completely before anything is written; a run in ``output`` that finished no round
    is replaced by a new one.
    """
    out = Path(output)
    session = _session if _session is not None else {}
    conf, resume = _config(out, resume, images=images, config=config, overrides=overrides, init_weights=init_weights)
    ctx, device = ddp.setup(conf.device)
    session["ctx"] = ctx
    lock = ProcessLock(out / ".lock", str(out), "one run folder holds one run: wait for it or choose another --output",
                       error=RunError, wait=False) if ctx.is_main else None
    try:
        if lock is not None:
            lock.acquire()
            if not resume and (out / "state.pth").exists():
                if finished_rounds(out) != 0:
                    raise RunError(f"{out} already holds a run; add --resume to continue it or choose another --output")
                replace_unfinished(out)
        ctx.barrier()
        given = config_mod.to_yaml(conf)  # as given: the trainer adapts a few values to the photos (crop size)
        trainer = Trainer(conf, out, resume=resume, ctx=ctx, device=device, progress=progress,
                          dev_eval=dev_eval if ctx.is_main else None)
        session["trainer"] = trainer
        if lock is not None and not resume:
            # the config of this run, written at start (a stale one from a run killed
            # before its first checkpoint must not survive); --resume compares a command with it
            write_atomic(out / "config.yaml", given)
        try:
            return trainer.run()
        except KeyboardInterrupt as interrupt:
            from ..common import Terminated

            trainer.interrupted("terminated" if isinstance(interrupt, Terminated) else "interrupted")
            raise
    finally:
        if lock is not None:
            lock.release()
        ctx.close()


def cli(argv: list[str] | None = None, dev_eval: DevEval | None = None) -> int:
    """The command line of :func:`main` under :func:`sekd_plugin.common.run_cli` (``dev_eval``:
    the DEV benchmark; ``python -m sekd_plugin.train`` passes the package's)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    for i in range(len(argv) - 1):  # "--resume auto" (a flag cannot take an optional value safely)
        if argv[i] == "--resume" and argv[i + 1] == "auto":
            argv[i : i + 2] = ["--resume-auto"]
            break
    args = build_parser().parse_args(argv)
    session: dict[str, Any] = {}
    kwargs = dict(
        output=args.output,
        images=args.images,
        config=args.config,
        resume="auto" if args.resume_auto else bool(args.resume),
        init_weights=args.init_weights,
        overrides=args.overrides,
        progress=not args.no_progress,
        dev_eval=dev_eval,
        _session=session,
    )

    def hint() -> str:
        trainer = session.get("trainer")
        cmd = f"python -m sekd_plugin.train --output {shlex.quote(str(args.output))} --resume"
        if trainer is not None and (Path(args.output) / "state.pth").exists():
            p = trainer.progress
            if trainer.labels_kept is not None:  # inside a label step: finished images are kept
                kept, total = trainer.labels_kept
                return (f"round {p['round']}, step {p['step']}: labels of {kept}/{total} images kept; --resume "
                        f"continues there. Resume with:\n  {cmd}")
            return f"the last completed point (round {p['round']}, step {p['step']}, epoch {p['epoch']}) is saved. Resume with:\n  {cmd}"
        return "nothing was saved yet; nothing to resume"

    if int(os.environ.get("RANK", "0")) > 0:  # other ranks: the same exit status, rank 0 says why
        try:
            main(**kwargs)
            return 0
        except UserError:
            return 2
        except KeyboardInterrupt:
            return 130
    return run_cli(main, resume_hint=hint, **kwargs)
