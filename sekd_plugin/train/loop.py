"""The self-evolving schedule, checkpoints, resume and the command line.

A run is a sequence of rounds; each round runs the steps

    detect -> descriptor -> reliability -> detector -> validate

(``detect``/``reliability`` compute keypoint labels, ``descriptor``/``detector`` train for a
number of epochs). Progress ``(round, step, epoch)`` is saved atomically after every epoch and
every step in ``state.pth`` together with the model, the optimizer/scheduler and frozen copy of
the step in progress, RNG states and the history; ``model.pth`` is the latest model in the
format the SEKD extractor loads. ``--resume`` continues from the last completed epoch.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shlex
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, DistributedSampler

from ..models.checkpoint import CheckpointError, load_weights
from ..models.sekd import SEKDNet
from . import config as config_mod
from . import ddp, labels, steps, validate
from .data import NoImagesError, PairDataset, collate_pairs, derive_seed, scan_images
from .report import write_report

STEPS = ("detect", "descriptor", "reliability", "detector", "validate")
STATE_FORMAT = "sekd_plugin.train/1"


class RunError(RuntimeError):
    """A run cannot start or continue (the message is meant for the command line)."""


# --------------------------------------------------------------------------- persistence
def atomic_torch_save(obj, path: Path) -> None:
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def rng_state() -> dict:
    """Every RNG state as tensors / ints (loadable with ``weights_only=True``)."""
    np_state = np.random.get_state()
    py_state = random.getstate()
    out = {
        "torch": torch.get_rng_state(),
        "numpy_keys": torch.from_numpy(np_state[1].astype(np.int64)),
        "numpy_pos": int(np_state[2]),
        "python": torch.tensor(list(py_state[1]), dtype=torch.int64),
    }
    if torch.cuda.is_available():
        out["cuda"] = torch.cuda.get_rng_state_all()
    return out


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    keys = state["numpy_keys"].numpy().astype(np.uint32)
    np.random.set_state(("MT19937", keys, int(state["numpy_pos"]), 0, 0.0))
    random.setstate((3, tuple(int(v) for v in state["python"].tolist()), None))
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def _cpu(obj):
    """Move every tensor of a nested container to the CPU (portable checkpoints)."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: _cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_cpu(v) for v in obj)
    return obj


def images_fingerprint(keys: list[str]) -> str:
    return hashlib.sha256("\n".join(keys).encode()).hexdigest()[:16]


# --------------------------------------------------------------------------- trainer
class Trainer:
    """Runs (or resumes) the self-evolving schedule into ``output``."""

    def __init__(self, conf, output: str | Path, resume: bool = False, dist: ddp.DistInfo | None = None, progress: bool = True):
        self.conf = conf
        self.out = Path(output)
        self.dist = dist or ddp.DistInfo(device=ddp.resolve_device(conf.device))
        self.device = self.dist.device
        self.main = self.dist.is_main
        self.bars = progress and self.main
        self.resume = resume
        self.progress = {"round": 0, "step": "detect", "epoch": 0}
        self.step_state: dict | None = None
        state_path = self.out / "state.pth"
        if not resume and state_path.exists():
            raise RunError(f"{self.out} already holds a run; add --resume to continue it or choose another --output")
        if resume and not state_path.exists():
            raise RunError(f"nothing to resume: {state_path} not found")

        torch.manual_seed(conf.seed)
        self.net = SEKDNet().to(self.device)
        if conf.init_weights:
            load_weights(self.net, conf.init_weights, map_location=self.device)

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            self.images = scan_images(
                list(conf.images),
                conf.seed,
                conf.data.val_images,
                conf.data.max_images,
                conf.data.max_side,
                conf.data.cache,
                progress=self.bars,
            )
        if self.main:
            for w in caught[:20]:
                print(f"warning: {w.message}", file=sys.stderr)
            if len(caught) > 20:
                print(f"warning: ... and {len(caught) - 20} more unreadable images", file=sys.stderr)
        self.history = {
            "status": "running",
            "device": str(self.device),
            "world_size": self.dist.world,
            "data": {
                "train_images": len(self.images.keys),
                "val_images": len(self.images.val_keys),
                "skipped_unreadable": len(self.images.skipped),
                "skipped_files": self.images.skipped[:50],
            },
            "validation": [],
            "rounds": [],
        }
        if resume:
            self._load_state(state_path)
        self.val_pairs = None
        if self.main and self.images.val_keys:
            imgs = [self.images.val_image(i) for i in range(len(self.images.val_keys))]
            self.val_pairs = validate.make_pairs(imgs, conf.val)

    # ------------------------------------------------------------------ state
    def _load_state(self, path: Path) -> None:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - any unreadable state is fatal
            raise RunError(f"cannot read {path}: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
        if state.get("format") != STATE_FORMAT:
            raise RunError(f"{path}: not a state file of this trainer (format {state.get('format')!r})")
        if state.get("images") != images_fingerprint(self.images.keys):
            raise RunError(
                f"the training images differ from the ones of the run in {self.out} "
                "(files added, removed or now unreadable); resume needs the same image set"
            )
        self.net.load_state_dict(state["model"])
        self.progress = {k: (int(v) if k != "step" else str(v)) for k, v in state["progress"].items()}
        self.step_state = state.get("step_state")
        hist = json.loads(state["history"])
        hist["data"] = self.history["data"]
        hist["device"], hist["world_size"] = self.history["device"], self.history["world_size"]
        self.history = hist
        set_rng_state(state["rng"])

    def save(self, report: bool = True, plots: bool = False) -> None:
        """Write ``state.pth``, then ``model.pth`` and the report (rank 0; atomic).

        The PNG curves (slow to draw) are redrawn only when ``plots`` is set (end of a round).
        """
        if not self.main:
            return
        self.out.mkdir(parents=True, exist_ok=True)
        yaml = config_mod.to_yaml(self.conf)
        model = _cpu(self.net.state_dict())
        state = {
            "format": STATE_FORMAT,
            "progress": dict(self.progress),
            "model": model,
            "step_state": _cpu(self.step_state) if self.step_state is not None else None,
            "rng": rng_state(),
            "history": json.dumps(self.history, default=str),
            "images": images_fingerprint(self.images.keys),
            "config": yaml,
        }
        atomic_torch_save(state, self.out / "state.pth")
        atomic_torch_save(
            {
                "state_dict": model,
                "format": STATE_FORMAT,
                "round": int(self.progress["round"]),
                "step": str(self.progress["step"]),
                "epoch": int(self.progress["epoch"]),
                "config": yaml,
            },
            self.out / "model.pth",
        )
        if report:
            write_report(self.out, self.history, plots=plots)

    def _advance(self, round_idx: int, step: str, epoch: int = 0) -> None:
        self.progress = {"round": round_idx, "step": step, "epoch": epoch}

    def _next_step(self, r: int, step: str) -> None:
        i = STEPS.index(step)
        if i + 1 < len(STEPS):
            self._advance(r, STEPS[i + 1])
        else:
            self._advance(r + 1, STEPS[0])

    def _round(self, r: int) -> dict:
        rounds = self.history["rounds"]
        while len(rounds) <= r:
            rounds.append({"round": len(rounds), "steps": {}})
        return rounds[r]

    def log(self, msg: str) -> None:
        if self.main:
            from tqdm import tqdm

            tqdm.write(msg)

    # ------------------------------------------------------------------ schedule
    def run(self) -> dict:
        conf = self.conf
        if self.main:
            self.out.mkdir(parents=True, exist_ok=True)
            conf_path = self.out / "config.yaml"
            if not conf_path.exists():
                conf_path.write_text(config_mod.to_yaml(conf))
        ddp.barrier(self.dist)
        d = self.history["data"]
        self.log(
            f"[sekd-train] {d['train_images']} training images, {d['val_images']} validation images, "
            f"{d['skipped_unreadable']} unreadable skipped; device {self.device}, {self.dist.world} process(es)"
        )
        if not self.resume and not self.history["validation"]:
            self._validate(-1, "init")
            self.save(plots=True)
        elif self.resume:
            p = self.progress
            self.log(f"[sekd-train] resuming at round {p['round']}, step {p['step']}, epoch {p['epoch']}")
        while self.progress["round"] < conf.schedule.rounds:
            r, step = self.progress["round"], self.progress["step"]
            rnd = self._round(r)
            rnd["images"] = len(self.images.round_indices(r, conf.data.sub_set))
            if step in ("detect", "reliability"):
                self._label_step(r, step)
            elif step in ("descriptor", "detector"):
                self._train_step(r, step)
            else:
                self._validate(r, f"round {r}")
                rnd["time_s"] = sum(s.get("time_s", 0.0) for s in rnd["steps"].values())
                self._next_step(r, step)
                self.save(plots=True)
        self.history["status"] = "complete"
        self.save(plots=True)
        self.log(f"[sekd-train] done: {self.out / 'model.pth'}")
        return self.history

    def _first_round_mode(self) -> str:
        mode = self.conf.schedule.first_round
        if mode == "auto":
            return "detect" if self.conf.init_weights else "random"
        return {"detector": "detect"}.get(mode, mode)

    def _label_step(self, r: int, step: str) -> None:
        conf = self.conf
        rnd = self._round(r)
        kind = step
        if step == "detect" and r == 0:
            kind = self._first_round_mode()
            if kind == "skip":
                rnd["steps"]["detect"] = {"skipped": True, "time_s": 0.0}
                rnd["steps"]["descriptor"] = {"skipped": True, "time_s": 0.0}
                self.log("[sekd-train] round 0: steps 1-2 skipped (schedule.first_round=skip)")
                self._advance(r, "reliability")
                self.save()
                return
        t0 = time.time()
        indices = self.images.round_indices(r, conf.data.sub_set)
        mine = ddp.shard(indices, self.dist)
        what = {"random": "random keypoints", "detect": "step 1 detector keypoints", "reliability": "step 3 reliability keypoints"}[kind]
        lab, sizes = labels.compute_labels(
            kind, self.net, self.images, mine, conf, conf.seed, r, self.device, progress=self.bars, desc=f"round {r} {what}"
        )
        lab = ddp.gather_dicts(lab, self.dist)
        sizes = ddp.gather_dicts(sizes, self.dist)
        stats = labels.label_stats(lab, sizes)
        name = "detector" if step == "detect" else "reliability"
        if self.main:
            labels.write_labels(self.label_path(r, step), lab, sizes, round=r, step=name, kind=kind)
        ddp.barrier(self.dist)
        stats.update(mode=kind, time_s=time.time() - t0, file=str(self.label_path(r, step).name))
        rnd["steps"][step] = stats
        self.log(f"[sekd-train] round {r} {what}: {stats['keypoints_per_image']:.1f} per image ({stats['time_s']:.1f} s)")
        self._next_step(r, step)
        self.save()

    def label_path(self, r: int, step: str) -> Path:
        name = "detector" if step in ("detect", "descriptor") else "reliability"
        return self.out / "labels" / f"round{r}_{name}.h5"

    def _train_step(self, r: int, step: str) -> None:
        conf = self.conf
        rnd = self._round(r)
        epochs = conf.schedule.epochs_descriptor if step == "descriptor" else conf.schedule.epochs_detector
        path = self.label_path(r, step)
        if not path.exists():
            raise RunError(f"label file {path} is missing; it is needed to continue round {r}")
        lab, sizes, _ = labels.read_labels_with_sizes(path)
        stats = labels.label_stats(lab, sizes)
        step_id = labels.STEP_IDS[step]
        indices = self.images.round_indices(r, conf.data.sub_set)
        ds = PairDataset(self.images, indices, {k: v[0] for k, v in lab.items()}, conf, conf.seed)
        sampler = DistributedSampler(
            ds,
            num_replicas=self.dist.world,
            rank=self.dist.rank,
            shuffle=True,
            seed=derive_seed(conf.seed, r, step_id) % (2**31),
        )
        loader = DataLoader(
            ds, batch_size=conf.optim.batch_size, sampler=sampler, collate_fn=collate_pairs, num_workers=conf.data.num_workers
        )
        model = steps.FeatureNet(self.net)
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel

            model = DistributedDataParallel(model, device_ids=[self.device] if self.device.type == "cuda" else None)
        frozen = steps.frozen_copy(self.net)
        optimizer = torch.optim.Adam(self.net.parameters(), lr=conf.optim.lr, weight_decay=conf.optim.weight_decay)
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, patience=conf.optim.patience)
        start = int(self.progress["epoch"])
        if start > 0:
            if not self.step_state:
                raise RunError(f"state.pth lacks the optimizer of round {r} step {step}; cannot resume mid-step")
            frozen.load_state_dict(self.step_state["frozen"])
            optimizer.load_state_dict(self.step_state["optimizer"])
            scheduler.load_state_dict(self.step_state["scheduler"])
        info = rnd["steps"].setdefault(step, {"epochs": [], "time_s": 0.0})
        info["keypoints_per_image"] = stats["keypoints_per_image"]
        info["mode"] = "labels " + path.name
        preserve = conf.loss.detector_preserve
        if r == 0 and not conf.init_weights:
            preserve = conf.loss.detector_preserve_first_round
        class_weights = (stats["negative_weight"], 1.0)
        if step == "detector":
            info["negative_weight"] = stats["negative_weight"]
        for e in range(start, epochs):
            sampler.set_epoch(e)
            ds.set_epoch_key(r, step_id, e)
            res = steps.train_epoch(
                step,
                model,
                frozen,
                loader,
                optimizer,
                conf,
                self.device,
                preserve_weight=preserve,
                class_weights=class_weights,
                max_batches=conf.schedule.max_batches_per_epoch,
                progress=self.bars,
                desc=f"round {r} step {step_id} {step} epoch {e + 1}/{epochs}",
                reduce=lambda v: ddp.reduce_mean(v, self.dist),
            )
            scheduler.step(res["loss"])
            res["epoch"] = e
            info["epochs"].append(res)
            info["time_s"] = info.get("time_s", 0.0) + res["time_s"]
            terms = ", ".join(f"{k} {v:.4f}" for k, v in res.items() if k not in ("epoch", "batches", "time_s", "lr", "loss"))
            self.log(
                f"[sekd-train] round {r} {step} epoch {e + 1}/{epochs}: loss {res['loss']:.4f} ({terms}), "
                f"lr {res['lr']:.2e}, {res['time_s']:.1f} s"
            )
            self._advance(r, step, e + 1)
            self.step_state = {
                "frozen": frozen.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
            }
            self.save(report=False)
        self.step_state = None
        self._next_step(r, step)
        self.save()

    def _validate(self, r: int, after: str) -> None:
        if self.main and self.val_pairs:
            t0 = time.time()
            m = validate.evaluate(self.net, self.val_pairs, self.conf.val, self.device)
            row = {"round": r, "after": after, **m, "time_s": time.time() - t0}
            self.history["validation"] = [v for v in self.history["validation"] if v.get("round") != r] + [row]
            self.log(
                "[sekd-train] validation after {}: ".format(after)
                + ", ".join(f"{k} {v:.3f}" for k, v in m.items() if isinstance(v, float))
            )
        ddp.barrier(self.dist)

    def interrupted(self) -> None:
        """Record the interruption in the report; the last saved state stays the resume point."""
        if self.main and (self.out / "state.pth").exists():
            self.history["status"] = (
                f"interrupted at round {self.progress['round']}, step {self.progress['step']}, "
                f"epoch {self.progress['epoch']} (resumable)"
            )
            try:
                write_report(self.out, self.history, plots=False)
            except Exception:  # noqa: BLE001 - best effort while shutting down
                pass


# --------------------------------------------------------------------------- CLI
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
    p.add_argument("--resume", action="store_true", help="continue the run in --output from its last completed epoch")
    p.add_argument("--init-weights", metavar="PATH", help="initialise the network from a checkpoint (default: random)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")
    return p


def _resolve_config(args) -> object:
    out = Path(args.output)
    if args.resume:
        saved = out / "config.yaml"
        if not saved.is_file():
            raise RunError(f"nothing to resume: {saved} not found")
        base = config_mod.from_yaml(saved.read_text())
        conf = config_mod.load_config(args.config, args.overrides, base=base)
        if args.images:
            conf.images = [str(Path(d).resolve()) for d in args.images]
        if args.init_weights:
            conf.init_weights = str(Path(args.init_weights).resolve())
        changed = [k for k in config_mod.diff(base, conf) if k not in config_mod.RESUME_MUTABLE]
        if changed:
            raise RunError(
                f"--resume keeps the run's config; these keys differ from {saved}: {changed} "
                f"(only {sorted(config_mod.RESUME_MUTABLE)} may change)"
            )
        return conf
    if not args.images:
        raise RunError("--images DIR [DIR ...] is required (except with --resume)")
    conf = config_mod.load_config(args.config, args.overrides)
    conf.images = [str(Path(d).resolve()) for d in args.images]
    if args.init_weights:
        if not Path(args.init_weights).is_file():
            raise RunError(f"--init-weights: file not found: {args.init_weights}")
        conf.init_weights = str(Path(args.init_weights).resolve())
    return conf


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    trainer = None
    dist = None
    try:
        conf = _resolve_config(args)
        dist = ddp.setup(conf.device)
        trainer = Trainer(conf, args.output, resume=args.resume, dist=dist, progress=not args.no_progress)
        trainer.run()
        return 0
    except (config_mod.TrainConfigError, NoImagesError, RunError, CheckpointError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if trainer is not None:
            trainer.interrupted()
        if dist is None or dist.is_main:
            cmd = f"python -m sekd_plugin.train --output {shlex.quote(str(args.output))} --resume"
            if trainer is not None and (Path(args.output) / "state.pth").exists():
                p = trainer.progress
                print(
                    f"\ninterrupted; the last completed point (round {p['round']}, step {p['step']}, "
                    f"epoch {p['epoch']}) is saved. Resume with:\n  {cmd}",
                    file=sys.stderr,
                )
            else:
                print("\ninterrupted before anything was saved; nothing to resume", file=sys.stderr)
        return 130
    finally:
        if dist is not None:
            ddp.cleanup(dist)
