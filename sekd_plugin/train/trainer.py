"""The self-evolving schedule: a run is a sequence of rounds; each round runs the steps

    detect -> descriptor -> reliability -> detector -> validate

(``detect``/``reliability`` compute keypoint labels, ``descriptor``/``detector`` train for a
number of epochs). Progress ``(round, step, epoch)`` is saved atomically after every epoch and
every step in ``state.pth`` (:mod:`.state`) together with the model, the optimizer/scheduler
and frozen copy of the step in progress, RNG states and the history; ``model.pth`` is the
latest model and ``best.pth`` the best one by validation, both in the format the SEKD
extractor loads. The DEV benchmark per round is a callback (``dev_eval``) given by the caller:
the trainer does not know the benchmarks.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Callable

import torch
from torch.utils.data import DataLoader, DistributedSampler

from ..distributed import Context
from ..common.errors import CheckpointError
from ..common.text import first_line
from ..models.checkpoint import load_weights
from ..models.sekd import SEKDNet
from . import config as config_mod
from . import labels, steps, validate
from .data import PairDataset, collate_pairs, context_size, derive_seed, fit_crop_to_photos, min_image_side, scan_images
from .lr_schedule import make_scheduler
from .report import write_report
from .state import (STATE_FORMAT, STEPS, RunError, StateFileError, atomic_torch_save, images_fingerprint, load_state,
                    rng_state, set_rng_state, to_cpu)

logger = logging.getLogger("sekd_plugin.train")

# ``dev_eval(weights, output folder, label, device) -> {"mma@3", "homography_accuracy@3", ...}``
# or ``{"skipped": reason}``
DevEval = Callable[[str, Path, str, torch.device], dict]


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
            raise RunError("val.dev_datasets is set but no DEV evaluator was given (sekd_plugin.train.command.load_dev_evaluator)")
        self.dev_eval = dev_eval
        self.ctx = ctx or Context()
        self.device = device or self.ctx.device(conf.device)
        self.main = self.ctx.is_main
        self.bars = progress and self.main
        self.resume = resume
        self.progress = {"round": 0, "step": "detect", "epoch": 0}
        self.step_state: dict | None = None
        self.label_cache: dict[tuple[int, str], tuple[dict, dict]] = {}
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
        atomic_torch_save(self._model_file(model, yaml), self.out / "model.pth")
        if report:
            write_report(self.out, self.history, plots=plots)

    def _model_file(self, model: dict, yaml: str) -> dict:
        return {
            "state_dict": model,
            "format": STATE_FORMAT,
            "round": int(self.progress["round"]),
            "step": str(self.progress["step"]),
            "epoch": int(self.progress["epoch"]),
            "config": yaml,
        }

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
            self._official()
            self._validate(-1, "init")
            if conf.init_weights:  # the starting model: the DEV veto's reference
                self._dev(-1)
            self._select_best(-1)
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
                self._dev(r)
                self._select_best(r)
                rnd["time_s"] = sum(s.get("time_s", 0.0) for s in rnd["steps"].values())
                self._next_step(r, step)
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
        # labels that no epoch would train on are not computed (e.g. a descriptor-only schedule)
        train_step = "descriptor" if step == "detect" else "detector"
        if getattr(conf.schedule, f"epochs_{train_step}") == 0:
            rnd["steps"][step] = {"skipped": True, "time_s": 0.0}
            rnd["steps"][train_step] = {"skipped": True, "time_s": 0.0}
            self.log(f"[sekd-train] round {r}: {step} labels and the {train_step} update skipped (schedule.epochs_{train_step}=0)")
            self._advance(r, STEPS[STEPS.index(train_step) + 1])
            self.save()
            return
        t0 = time.time()
        indices = self.images.round_indices(r, conf.data.sub_set)
        mine = self.ctx.shard(indices)
        what = {"random": "random keypoints", "detect": "step 1 detect keypoints", "reliability": "step 3 reliability keypoints"}[kind]
        lab, sizes, nms = labels.compute_labels(
            kind, self.net, self.images, mine, conf, conf.seed, r, self.device, progress=self.bars, desc=f"round {r} {what}"
        )
        lab = self.ctx.gather_dict(lab)
        sizes = self.ctx.gather_dict(sizes)
        nms = self.ctx.gather_list(nms)
        stats = labels.label_stats(lab, sizes)
        stats.update(labels.maxima_stats(nms))
        path = self.label_path(r, step)
        if self.main:
            labels.write_labels(path, lab, sizes, round=r, step=step, kind=kind)
        # every rank keeps the gathered labels: the training step does not re-read the file
        self.label_cache[(r, step)] = (lab, sizes)
        self.ctx.barrier()
        stats.update(mode=kind, time_s=time.time() - t0, file=path.name)
        rnd["steps"][step] = stats
        extra = ""
        if "nms_maxima_median" in stats:
            extra = (
                f"; NMS maxima {stats['nms_maxima_per_image']:.0f}/image, scores p10/p50/p90 "
                f"{stats['nms_maxima_p10']:.3f}/{stats['nms_maxima_median']:.3f}/{stats['nms_maxima_p90']:.3f}"
            )
        self.log(f"[sekd-train] round {r} {what}: {stats['keypoints_per_image']:.1f} per image{extra} ({stats['time_s']:.1f} s)")
        self._next_step(r, step)
        self.save()

    def label_path(self, r: int, step: str) -> Path:
        """Labels are named by the step that wrote them: ``round{r}_detect.h5`` / ``round{r}_reliability.h5``."""
        name = "detect" if step in ("detect", "descriptor") else "reliability"
        return self.out / "labels" / f"round{r}_{name}.h5"

    def _labels_for(self, r: int, step: str) -> tuple[dict, dict]:
        source = "detect" if step == "descriptor" else "reliability"
        if (r, source) in self.label_cache:
            return self.label_cache[(r, source)]
        path = self.label_path(r, step)  # resumed mid-round: read what the label step wrote
        if not path.exists():
            raise RunError(f"label file {path} is missing; it is needed to continue round {r}")
        lab, sizes, _ = labels.read_labels_with_sizes(path)
        return lab, sizes

    def _wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        conf = self.conf
        if self.device.type == "cuda" and conf.optim.channels_last:
            model = model.to(memory_format=torch.channels_last)
        if self.ctx.active:
            from torch.nn.parallel import DistributedDataParallel

            model = DistributedDataParallel(model, device_ids=[self.device] if self.device.type == "cuda" else None)
        if conf.optim.compile:
            model = torch.compile(model)
        return model

    def _train_step(self, r: int, step: str) -> None:
        conf = self.conf
        rnd = self._round(r)
        epochs = conf.schedule.epochs_descriptor if step == "descriptor" else conf.schedule.epochs_detector
        lab, sizes = self._labels_for(r, step)
        stats = labels.label_stats(lab, sizes)
        step_id = labels.STEP_IDS[step]
        indices = self.images.round_indices(r, conf.data.sub_set)
        ds = PairDataset(self.images, indices, {k: v[0] for k, v in lab.items()}, conf, conf.seed)
        sampler = DistributedSampler(
            ds,
            num_replicas=self.ctx.world,
            rank=self.ctx.rank,
            shuffle=True,
            seed=derive_seed(conf.seed, r, step_id) % (2**31),
        )
        workers = int(conf.data.num_workers)
        loader = DataLoader(
            ds,
            batch_size=conf.optim.batch_size,
            sampler=sampler,
            collate_fn=collate_pairs,
            num_workers=workers,
            pin_memory=bool(conf.data.pin_memory) and self.device.type == "cuda",
            persistent_workers=workers > 0,
            prefetch_factor=4 if workers > 0 else None,
        )
        if conf.dist.sync_batchnorm and self.ctx.active:
            self.net = torch.nn.SyncBatchNorm.convert_sync_batchnorm(self.net)
        model = self._wrap(steps.FeatureNet(self.net))
        frozen = steps.frozen_copy(self.net, conf.loss.frozen_bn)
        fused = bool(conf.optim.fused) and self.device.type == "cuda"
        optimizer = torch.optim.Adam(self.net.parameters(), lr=conf.optim.lr, weight_decay=conf.optim.weight_decay, fused=fused or None)
        per_epoch = len(loader) if conf.schedule.max_batches_per_epoch is None else min(len(loader), conf.schedule.max_batches_per_epoch)
        scheduler, per_step = make_scheduler(optimizer, conf, per_epoch * epochs)
        start = int(self.progress["epoch"])
        if start > 0:
            if not self.step_state or not {"frozen", "optimizer", "scheduler"} <= set(self.step_state):
                raise StateFileError(f"{self.out / 'state.pth'} lacks the optimizer of round {r} step {step}; cannot resume mid-step")
            frozen.load_state_dict(self.step_state["frozen"])
            optimizer.load_state_dict(self.step_state["optimizer"])
            scheduler.load_state_dict(self.step_state["scheduler"])
        info = rnd["steps"].setdefault(step, {"epochs": [], "time_s": 0.0})
        info["keypoints_per_image"] = stats["keypoints_per_image"]
        info["mode"] = "labels " + self.label_path(r, step).name
        preserve = conf.loss.detector_preserve
        if r == 0 and not conf.init_weights:
            preserve = conf.loss.detector_preserve_first_round
        class_weights = (stats["negative_weight"], 1.0)
        if step == "detector":
            info["negative_weight"] = stats["negative_weight"]
        for e in range(start, epochs):
            sampler.set_epoch(e)
            ds.set_epoch_key(r, step_id, e)
            try:
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
                    reduce=lambda v: self.ctx.reduce_mean(v, self.device),
                    scheduler=scheduler if per_step else None,
                    # under DDP a rank must not stop alone mid-epoch (the others would wait in
                    # the gradient all-reduce): the epoch-end reduction stops all of them together
                    check_every=0 if self.ctx.active else 50,
                )
            except steps.NonFiniteLoss as err:
                raise RunError(
                    f"training diverged in round {r}, {step} epoch {e + 1}: {err}; the last good state "
                    f"(round {r}, {step}, epoch {e}) is saved -- lower optim.lr and --resume"
                ) from None
            if not per_step:
                scheduler.step(res["loss"])
            res["epoch"] = e
            info["epochs"].append(res)
            info["time_s"] = info.get("time_s", 0.0) + res["time_s"]
            skip = ("epoch", "batches", "time_s", "lr", "loss")
            terms = ", ".join(f"{k} {v:.4f}" for k, v in res.items() if k not in skip)
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

    def _official(self) -> None:
        """Score the official checkpoint once, by the same validation (and DEV benchmark), for the report."""
        path = self.conf.val.official_weights
        if not (self.main and path and self.val_groups):
            return
        net = SEKDNet().to(self.device)
        load_weights(net, path, map_location=self.device)
        row = {"weights": str(path), **validate.evaluate(net, self.val_groups, self.conf.val, self.device)}
        if self.conf.val.dev_datasets:
            row["dev"] = self.dev_eval(str(path), self.out / "dev" / "official", "official", self.device)
        self.history["official"] = row
        dev = row.get("dev", {})
        self.log(
            f"[sekd-train] official checkpoint {path}: validation MMA@3 {row.get('mma@3', float('nan')):.3f}"
            + (f", DEV MMA@3 {dev.get('mma@3', float('nan')):.3f}, H@3 {dev.get('homography_accuracy@3', float('nan')):.3f}" if dev else "")
        )

    def _validate(self, r: int, after: str) -> None:
        if self.main and self.val_groups:
            t0 = time.time()
            m = validate.evaluate(self.net, self.val_groups, self.conf.val, self.device)
            row = {"round": r, "after": after, **m, "time_s": time.time() - t0}
            self.history["validation"] = [v for v in self.history["validation"] if v.get("round") != r] + [row]
            groups = ", ".join(
                f"{g} {v['top500'].get('mma@3', 0):.3f}/{v['deploy'].get('mma@3', 0):.3f}" for g, v in m.get("groups", {}).items()
            )
            self.log(f"[sekd-train] validation after {after}: MMA@3 (top-500/deploy) {groups} ({row['time_s']:.1f} s)")
        self.ctx.barrier()

    def _select_best(self, r: int) -> None:
        """Make round ``r``'s model (``-1``: the starting model) ``best.pth`` if it is eligible and better.

        Eligible: at least ``val.min_keypoints`` keypoints per image above the deploy threshold
        and, when DEV sequences are benchmarked, not worse than the starting model on DEV MMA@3
        or H@3. Better: a higher ``val.select_metric`` (mean over the validation groups).
        """
        if not self.main:
            self.ctx.barrier()
            return
        vc = self.conf.val
        row = next((v for v in self.history["validation"] if v.get("round") == r), None)
        if row is None or vc.select_metric not in row:
            self.ctx.barrier()
            return
        score = float(row[vc.select_metric])
        why = []
        kp = float(row.get("deploy_keypoints", 0.0))
        if kp < vc.min_keypoints:
            why.append(f"{kp:.0f} keypoints per image above {vc.deploy_threshold} (< {vc.min_keypoints:g})")
        devs = {d.get("round"): d for d in self.history.get("dev", [])}
        if r >= 0 and -1 in devs and r in devs:
            for k, name in (("mma@3", "MMA@3"), ("homography_accuracy@3", "H@3")):
                a, b = devs[r].get(k), devs[-1].get(k)
                if a is not None and b is not None and a < b:
                    why.append(f"DEV {name} {a:.3f} < starting model's {b:.3f}")
        row["eligible"] = not why
        if why:
            row["not_eligible"] = "; ".join(why)
        best = self.history.get("best")
        if not why and (best is None or score > best["score"]):
            self.history["best"] = {"round": r, "metric": vc.select_metric, "score": score,
                                    "starting_model": r < 0}
            f = self._model_file(to_cpu(self.net.state_dict()), config_mod.to_yaml(self.conf))
            f.update(round=r, step="validate", epoch=0, selected_by=f"{vc.select_metric} {score:.4f}")
            atomic_torch_save(f, self.out / "best.pth")
            self.log(f"[sekd-train] best.pth <- {'the starting model' if r < 0 else f'round {r}'} ({vc.select_metric} {score:.4f})")
        elif why:
            self.log(f"[sekd-train] {'starting model' if r < 0 else f'round {r}'} not eligible as best: {'; '.join(why)}")
        self.ctx.barrier()

    def _dev(self, r: int) -> None:
        if not (self.main and self.conf.val.dev_datasets):
            self.ctx.barrier()
            return
        tmp = self.out / "dev" / f"round{r}.pth"
        atomic_torch_save(self._model_file(to_cpu(self.net.state_dict()), config_mod.to_yaml(self.conf)), tmp)
        row = {"round": r, **self.dev_eval(str(tmp), self.out / "dev" / f"round{r}", f"round{r}", self.device)}
        tmp.unlink(missing_ok=True)
        self.history["dev"] = [v for v in self.history.get("dev", []) if v.get("round") != r] + [row]
        self.log(f"[sekd-train] DEV sequences after round {r}: MMA@3 {row.get('mma@3', float('nan')):.3f}, H@3 {row.get('homography_accuracy@3', float('nan')):.3f}")
        self.ctx.barrier()

    def interrupted(self, what: str = "interrupted") -> None:
        """Record the interruption in the report; the last saved state stays the resume point."""
        if self.main and (self.out / "state.pth").exists():
            self.history["status"] = (
                f"{what} at round {self.progress['round']}, step {self.progress['step']}, "
                f"epoch {self.progress['epoch']} (resumable)"
            )
            try:
                write_report(self.out, self.history, plots=False)
            except Exception:  # noqa: BLE001 - best effort while shutting down
                pass


# --------------------------------------------------------------------------- CLI
