"""The self-evolving schedule: a run is a sequence of rounds; each round runs the steps

    detect -> descriptor -> reliability -> detector -> validate

(``detect``/``reliability`` compute keypoint labels, ``descriptor``/``detector`` train for a
number of epochs). Progress ``(round, step, epoch)`` is saved atomically after every epoch and
every step in ``state.pth`` (:mod:`.state`) together with the model, the optimizer/scheduler
and frozen copy of the step in progress, RNG states and the history; ``model.pth`` is the
latest model and ``best.pth`` the best one by validation, both in the format the SEKD
extractor loads. The DEV benchmark per round is a callback (``dev_eval``) given by the caller:
the trainer does not know the benchmarks.

This module holds the schedule and the run's files; the steps are :mod:`.label_step` (1, 3)
and :mod:`.train_step` (2, 4), the judging of models :mod:`.evaluation`.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch

from ..infra.distributed import Context
from ..common.errors import CheckpointError
from ..common.text import first_line
from ..models.checkpoint import load_weights
from ..models.sekd import SEKDNet
from . import config as config_mod
from . import evaluation, validate
from .data import context_size, fit_crop_to_photos, min_image_side, scan_images
from .evaluation import DevEval
from .label_step import label_path, run_label_step
from .report import write_report
from .state import (STATE_FORMAT, STEPS, RunError, StateFileError, atomic_torch_save, images_fingerprint, load_state,
                    rng_state, set_rng_state, to_cpu)
from .train_step import run_train_step

logger = logging.getLogger("sekd_plugin.train")
__all__ = ["DevEval", "Trainer", "label_path"]


class Trainer:
    """Runs (or resumes) the self-evolving schedule into ``output``."""

    def __init__(self, conf, output: str | Path, resume: bool = False, ctx: Context | None = None,
                 device: torch.device | None = None, progress: bool = True, dev_eval: DevEval | None = None):
        """``ctx``: this process's place under torchrun (default: one process) and ``device`` its
        device (default: ``conf.device``); ``dev_eval``: the DEV benchmark of a checkpoint, run on
        the starting model and after every round (``val.dev_datasets`` without it is a
        :class:`RunError`)."""
        self.conf = conf
        self.out = Path(output)
        if conf.val.dev_datasets and dev_eval is None and (ctx is None or ctx.is_main):
            raise RunError("val.dev_datasets is set but no DEV evaluator was given (the train command passes the "
                           "package's HPatches benchmark: python -m sekd_plugin.train)")
        self.dev_eval = dev_eval
        self.ctx = ctx or Context()
        self.device = device or self.ctx.device(conf.device)
        self.main = self.ctx.is_main
        self.bars = progress and self.main
        self.resume = resume
        self.progress = {"round": 0, "step": "detect", "epoch": 0}
        self.step_state: dict | None = None
        self.label_cache: dict[tuple[int, str], tuple[dict, dict]] = {}
        self.labels_kept: tuple[int, int] | None = None  # (kept, total) images while a label step runs
        state_path = self.out / "state.pth"
        if not resume and state_path.exists():
            raise RunError(f"{self.out} already holds a run; add --resume to continue it or choose another --output")
        if resume and not state_path.exists():
            raise RunError(f"nothing to resume: {state_path} not found")
        state = load_state(state_path) if resume else None

        torch.manual_seed(conf.seed)
        self.net = SEKDNet().to(self.device)
        if conf.init_weights and state is None:
            try:  # load_weights says every failure as one CheckpointError line naming the file
                load_weights(self.net, conf.init_weights, map_location=self.device)
            except CheckpointError as e:
                raise CheckpointError(f"--init-weights {conf.init_weights}: not a loadable SEKD checkpoint ({e})") from None

        self.images = scan_images(
            list(conf.images),
            conf.seed,
            conf.data.val_images,
            conf.data.max_images,
            conf.data.max_side,
            conf.data.cache,
            progress=self.bars,
            min_side=min_image_side(conf),
        )
        self.crop_note = None
        crop, upscaled = fit_crop_to_photos(int(conf.data.crop_size), float(conf.data.context), self.images.short_sides)
        if crop != int(conf.data.crop_size):
            self.crop_note = (
                f"data.crop_size={conf.data.crop_size} with data.context={conf.data.context} needs "
                f"{context_size(int(conf.data.crop_size), float(conf.data.context))} px windows, larger than the short side "
                f"of over 10 % of the photos; rather than upscale those crops, data.crop_size is {crop} for this run"
                + (f" ({upscaled} photos are still smaller and are resized up)" if upscaled else "")
            )
            if self.main:
                logger.warning("[sekd-train] %s", self.crop_note)
            conf.data.crop_size = crop
        self.history = {
            "status": "running",
            "device": str(self.device),
            "world_size": self.ctx.world,
            "data": {
                "train_images": len(self.images.keys),
                "val_images": len(self.images.val_keys),
                "skipped_unreadable": len(self.images.skipped),
                "skipped_too_small": len(self.images.too_small),
                "skipped_files": (self.images.skipped + self.images.too_small)[:50],
            },
            "crop": {"crop_size": int(conf.data.crop_size), "note": self.crop_note},
            "validation": [],
            "dev": [],
            "official": None,
            "best": None,
            "rounds": [],
        }
        if state is not None:
            self._load_state(state, state_path)
        self.val_groups = None
        if self.main and self.images.val_keys:
            imgs = [self.images.val_image(i) for i in range(len(self.images.val_keys))]
            self.val_groups = validate.make_groups(imgs, conf.val)

    # ------------------------------------------------------------------ state
    def _load_state(self, state: dict, path: Path) -> None:
        if state.get("images") != images_fingerprint(self.images.keys):
            raise RunError(
                f"the training images differ from the ones of the run in {self.out} "
                "(files added, removed or now unreadable); resume needs the same image set"
            )
        try:
            self.net.load_state_dict(state["model"])
        except (RuntimeError, KeyError, TypeError) as e:
            raise StateFileError(f"{path}: the model in the state file does not fit SEKD ({first_line(e)})") from None
        self.progress = {k: (int(v) if k != "step" else str(v)) for k, v in state["progress"].items()}
        self.step_state = state.get("step_state")
        hist = json.loads(state["history"])
        hist["data"] = self.history["data"]
        old_world = int(state.get("world_size", hist.get("world_size", 1)))
        if old_world != self.ctx.world:
            logger.warning(
                "[sekd-train] the run was saved with %d process(es) and resumes with %d: the batches of "
                "an epoch are split differently, so the result will not equal an uninterrupted run",
                old_world, self.ctx.world,
            )
            hist.setdefault("world_size_changes", []).append({"from": old_world, "to": self.ctx.world, "at": dict(self.progress)})
        hist["device"], hist["world_size"] = self.history["device"], self.ctx.world
        for k in ("dev", "official", "best"):
            hist.setdefault(k, self.history[k])
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
        model = to_cpu(self.net.state_dict())
        state = {
            "format": STATE_FORMAT,
            "progress": dict(self.progress),
            "model": model,
            "step_state": to_cpu(self.step_state) if self.step_state is not None else None,
            "rng": rng_state(),
            "history": json.dumps(self.history, default=str),
            "images": images_fingerprint(self.images.keys),
            "config": yaml,
            "world_size": self.ctx.world,
        }
        atomic_torch_save(state, self.out / "state.pth")
        atomic_torch_save(self.model_file(model, yaml), self.out / "model.pth")
        if report:
            write_report(self.out, self.history, plots=plots)

    def model_file(self, model: dict, yaml: str) -> dict:
        """A checkpoint the SEKD extractor loads, stamped with the run's progress and config."""
        return {
            "state_dict": model,
            "format": STATE_FORMAT,
            "round": int(self.progress["round"]),
            "step": str(self.progress["step"]),
            "epoch": int(self.progress["epoch"]),
            "config": yaml,
        }

    def advance(self, round_idx: int, step: str, epoch: int = 0) -> None:
        self.progress = {"round": round_idx, "step": step, "epoch": epoch}

    def next_step(self, r: int, step: str) -> None:
        i = STEPS.index(step)
        if i + 1 < len(STEPS):
            self.advance(r, STEPS[i + 1])
        else:
            self.advance(r + 1, STEPS[0])

    def round_info(self, r: int) -> dict:
        """Round ``r``'s entry of the history (created on first use)."""
        rounds = self.history["rounds"]
        while len(rounds) <= r:
            rounds.append({"round": len(rounds), "steps": {}})
        return rounds[r]

    def log(self, msg: str) -> None:
        if self.main:
            logger.info(msg)

    # ------------------------------------------------------------------ schedule
    def run(self) -> dict:
        conf = self.conf
        self.ctx.barrier()
        d = self.history["data"]
        self.log(
            f"[sekd-train] {d['train_images']} training images, {d['val_images']} validation images, "
            f"{d['skipped_unreadable']} unreadable and {d['skipped_too_small']} too small skipped; "
            f"device {self.device}, {self.ctx.world} process(es)"
        )
        if not self.resume and not self.history["validation"]:
            evaluation.official(self)
            evaluation.validate_round(self, -1, "init")
            if conf.init_weights:  # the starting model: the DEV veto's reference
                evaluation.dev_round(self, -1)
            evaluation.select_best(self, -1)
            self.save(plots=True)
        elif self.resume:
            p = self.progress
            self.log(f"[sekd-train] resuming at round {p['round']}, step {p['step']}, epoch {p['epoch']}")
        while self.progress["round"] < conf.schedule.rounds:
            r, step = self.progress["round"], self.progress["step"]
            rnd = self.round_info(r)
            rnd["images"] = len(self.images.round_indices(r, conf.data.sub_set))
            if step in ("detect", "reliability"):
                run_label_step(self, r, step)
            elif step in ("descriptor", "detector"):
                run_train_step(self, r, step)
            else:
                evaluation.validate_round(self, r, f"round {r}")
                evaluation.dev_round(self, r)
                evaluation.select_best(self, r)
                rnd["time_s"] = sum(s.get("time_s", 0.0) for s in rnd["steps"].values())
                self.next_step(r, step)
                self.save(plots=True)
        self.history["status"] = "complete"
        self.save(plots=True)
        best = self.history.get("best")
        if best is None:
            which = "no best.pth: no validation images or no eligible checkpoint"
        elif best["round"] < 0:
            which = f"best.pth is the starting model: no round improved on it ({best['metric']} {best['score']:.4f})"
        else:
            which = f"best.pth from round {best['round']} ({best['metric']} {best['score']:.4f})"
        self.log(f"[sekd-train] done: {self.out / 'model.pth'}; {which}")
        return self.history

    def first_round_mode(self) -> str:
        """What round 0's step 1 does: "random", "detect" or "skip" (``schedule.first_round``)."""
        mode = self.conf.schedule.first_round
        if mode == "auto":
            return "detect" if self.conf.init_weights else "random"
        return {"detector": "detect"}.get(mode, mode)

    def interrupted(self, what: str = "interrupted") -> None:
        """Record the interruption in the report; the last saved state stays the resume point."""
        if self.main and (self.out / "state.pth").exists():
            kept = self.labels_kept
            self.history["status"] = (
                f"{what} at round {self.progress['round']}, step {self.progress['step']}, "
                f"epoch {self.progress['epoch']}"
                + (f", labels of {kept[0]}/{kept[1]} images kept" if kept else "") + " (resumable)"
            )
            try:
                write_report(self.out, self.history, plots=False)
            except Exception:  # noqa: BLE001 - best effort while shutting down
                pass

