"""Steps 2 and 4 of a round: epochs of the descriptor / detector update on the round's labels.

After every epoch the model, the optimizer, the scheduler and the frozen copy are saved
(``state.pth``), so that an interruption resumes at the next epoch.
"""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, DistributedSampler

from . import labels, steps
from .data import PairDataset, collate_pairs, derive_seed
from .label_step import label_path, labels_for
from .lr_schedule import make_scheduler
from .state import RunError, StateFileError


def wrap(t, model: torch.nn.Module) -> torch.nn.Module:
    """Channels-last, DDP and ``torch.compile`` as configured."""
    conf = t.conf
    if t.device.type == "cuda" and conf.optim.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if t.ctx.active:
        from torch.nn.parallel import DistributedDataParallel

        model = DistributedDataParallel(model, device_ids=[t.device] if t.device.type == "cuda" else None)
    if conf.optim.compile:
        model = torch.compile(model)
    return model


def _loader(t, ds, r: int, step_id: int) -> tuple[DataLoader, DistributedSampler]:
    conf = t.conf
    sampler = DistributedSampler(ds, num_replicas=t.ctx.world, rank=t.ctx.rank, shuffle=True,
                                 seed=derive_seed(conf.seed, r, step_id) % (2**31))
    workers = int(conf.data.num_workers)
    loader = DataLoader(
        ds,
        batch_size=conf.optim.batch_size,
        sampler=sampler,
        collate_fn=collate_pairs,
        num_workers=workers,
        pin_memory=bool(conf.data.pin_memory) and t.device.type == "cuda",
        persistent_workers=workers > 0,
        prefetch_factor=4 if workers > 0 else None,
    )
    return loader, sampler


def run_train_step(t, r: int, step: str) -> None:
    """Train ``step`` ("descriptor" or "detector") of round ``r`` on trainer ``t``, from its saved epoch."""
    conf = t.conf
    rnd = t.round_info(r)
    epochs = conf.schedule.epochs_descriptor if step == "descriptor" else conf.schedule.epochs_detector
    lab, sizes = labels_for(t, r, step)
    stats = labels.label_stats(lab, sizes)
    step_id = labels.STEP_IDS[step]
    indices = t.images.round_indices(r, conf.data.sub_set)
    ds = PairDataset(t.images, indices, {k: v[0] for k, v in lab.items()}, conf, conf.seed)
    loader, sampler = _loader(t, ds, r, step_id)
    if conf.dist.sync_batchnorm and t.ctx.active:
        t.net = torch.nn.SyncBatchNorm.convert_sync_batchnorm(t.net)
    model = wrap(t, steps.FeatureNet(t.net))
    frozen = steps.frozen_copy(t.net, conf.loss.frozen_bn)
    fused = bool(conf.optim.fused) and t.device.type == "cuda"
    optimizer = torch.optim.Adam(t.net.parameters(), lr=conf.optim.lr, weight_decay=conf.optim.weight_decay, fused=fused or None)
    per_epoch = len(loader) if conf.schedule.max_batches_per_epoch is None else min(len(loader), conf.schedule.max_batches_per_epoch)
    scheduler, per_step = make_scheduler(optimizer, conf, per_epoch * epochs)
    start = int(t.progress["epoch"])
    if start > 0:
        if not t.step_state or not {"frozen", "optimizer", "scheduler"} <= set(t.step_state):
            raise StateFileError(f"{t.out / 'state.pth'} lacks the optimizer of round {r} step {step}; cannot resume mid-step")
        frozen.load_state_dict(t.step_state["frozen"])
        optimizer.load_state_dict(t.step_state["optimizer"])
        scheduler.load_state_dict(t.step_state["scheduler"])
    info = rnd["steps"].setdefault(step, {"epochs": [], "time_s": 0.0})
    info["keypoints_per_image"] = stats["keypoints_per_image"]
    info["mode"] = "labels " + label_path(t.out, r, step).name
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
                t.device,
                preserve_weight=preserve,
                class_weights=class_weights,
                max_batches=conf.schedule.max_batches_per_epoch,
                progress=t.bars,
                desc=f"round {r} step {step_id} {step} epoch {e + 1}/{epochs}",
                reduce=lambda v: t.ctx.reduce_mean(v, t.device),
                scheduler=scheduler if per_step else None,
                # under DDP a rank must not stop alone mid-epoch (the others would wait in
                # the gradient all-reduce): the epoch-end reduction stops all of them together
                check_every=0 if t.ctx.active else 50,
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
        t.log(
            f"[sekd-train] round {r} {step} epoch {e + 1}/{epochs}: loss {res['loss']:.4f} ({terms}), "
            f"lr {res['lr']:.2e}, {res['time_s']:.1f} s"
        )
        t.advance(r, step, e + 1)
        t.step_state = {"frozen": frozen.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}
        t.save(report=False)
    t.step_state = None
    t.next_step(r, step)
    t.save()
