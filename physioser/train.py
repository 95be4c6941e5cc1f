"""Training: AdamW, linear warm-up + cosine decay, early stopping on a speaker-disjoint validation
split, gradient clipping, class weighting, label smoothing, safetensors checkpoints, resume.

``fit`` trains any model that follows the training-path contract of :class:`physioser.model.PhysioSER`:
``model.forward_cached(batch) -> dict(logits [B, C], cpa (scalar, optional), aux (scalar), stats)``,
where ``batch`` is what :meth:`physioser.features.FeatureSet.collate` returns. Backbone features
come from the feature cache, VAP quartets from the quartet cache, so an epoch is seconds on a CPU.

``physioser train`` trains one fold of one corpus (or several corpora) from a YAML config.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
import typer
from tqdm.auto import tqdm

from physioser.model.checkpoint import load_state, load_train_state, save_model, save_train_state
from physioser.model.config import Config
from physioser.model.metrics import classification_metrics
from physioser.paths import corpora_root as default_corpora_root
from physioser.paths import noise_root as default_noise_root

__all__ = ["FitResult", "fit", "predict", "lr_factor", "register"]


def lr_factor(step: int, total: int, warmup: int) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine decay to 0 at ``total``."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(total - warmup, 1)
    return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


@dataclass
class FitResult:
    best_epoch: int
    best_val_ua: float
    epochs_run: int
    step: int
    seconds: float
    history: list[dict] = field(default_factory=list)


def _class_weights(labels: np.ndarray, num_classes: int) -> torch.Tensor:
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    weights = np.where(counts > 0, counts.sum() / (num_classes * np.maximum(counts, 1)), 0.0)
    return torch.tensor(weights, dtype=torch.float32)


def training_device(spec: str) -> torch.device:
    """``train.device``: ``auto`` is CUDA when available, else CPU; ``cuda`` without a GPU is an error."""
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(spec)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"train.device={spec} but torch sees no CUDA device")
    return device


def _to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


@torch.no_grad()
def predict(model: torch.nn.Module, data, indices: np.ndarray | None = None, batch_size: int = 64) -> dict[str, np.ndarray]:
    """Run the training-path model in eval mode: returns logits [N, C] and embeddings [N, E] (numpy)."""
    model.eval()
    device = next(model.parameters()).device
    indices = np.arange(len(data)) if indices is None else np.asarray(indices)
    logits, embeds = [], []
    for start in range(0, len(indices), batch_size):
        out = model.forward_cached(_to_device(data.collate(indices[start : start + batch_size]), device))
        logits.append(out["logits"].float().cpu())
        embeds.append(out["embedding"].float().cpu())
    return {"logits": torch.cat(logits).numpy(), "embedding": torch.cat(embeds).numpy()}


def _evaluate_ua(model, data, indices, class_names) -> float:
    pred = predict(model, data, indices)["logits"].argmax(1)
    return classification_metrics(data.labels[indices], pred, class_names)["ua"]


def _parameter_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """AdamW groups of the trainable parameters: weight decay on matrices only, and each parameter's
    learning-rate scale (``model.lr_scale(name)`` where the model has one, e.g. a fine-tuned encoder's
    pretrained layers; else 1)."""
    scale_of = getattr(model, "lr_scale", lambda name: 1.0)
    groups: dict[tuple[bool, float], list] = {}
    for name, p in model.named_parameters():
        if p.requires_grad:
            decays = not (p.ndim < 2 or "log_scale" in name)
            groups.setdefault((decays, float(scale_of(name))), []).append(p)
    return [{"params": ps, "weight_decay": weight_decay if decays else 0.0, "lr_scale": scale}
            for (decays, scale), ps in sorted(groups.items(), key=lambda kv: (not kv[0][0], -kv[0][1]))]


def fit(
    model: torch.nn.Module,
    data,
    train_idx: np.ndarray,
    val_idx: np.ndarray | None,
    cfg: Config,
    out_dir: str | Path,
    *,
    resume: bool = False,
    progress: bool = True,
    stop_after_epochs: int | None = None,
    save: bool = True,
) -> FitResult:
    """Train ``model`` on ``data[train_idx]``, early-stopping on the UA of ``data[val_idx]``.

    The best model (highest validation UA; the last one without a validation split) is written to
    ``out_dir/model.safetensors`` with ``out_dir/config.yaml``; training state after every epoch to
    ``out_dir/last.*``. ``resume=True`` continues from that state. ``stop_after_epochs`` ends the
    call early (as an interruption would), leaving a resumable state. The model ends holding the
    best weights. ``save=False`` (sweeps of many short runs) writes nothing: the best weights are
    kept in memory.
    """
    from physioser.distributed import current

    ctx = current()  # data-parallel context under torch.distributed (torchrun), else None
    is_main = ctx is None or ctx.is_main
    t = cfg.train
    out_dir = Path(out_dir)
    if save:
        out_dir.mkdir(parents=True, exist_ok=True)
    best_state: dict = {}
    class_names = list(cfg.class_names)
    train_idx = np.asarray(train_idx)
    torch.manual_seed(t.seed)
    generator = torch.Generator().manual_seed(t.seed)  # CPU: epoch orders and crops
    device = ctx.device if ctx else training_device(t.device)
    model.to(device)
    optimizer = torch.optim.AdamW(_parameter_groups(model, float(t.weight_decay)), lr=float(t.lr))
    batch_size = t.batch_size
    steps_per_epoch = max(1, math.ceil((ctx.num_samples(len(train_idx)) if ctx else len(train_idx)) / batch_size))
    total = steps_per_epoch * t.epochs
    warmup = int(round(t.warmup * total))
    weight = _class_weights(data.labels[train_idx], len(class_names)).to(device) if t.class_weighting else None
    crop_frames = 0
    if t.vap_crop_seconds and cfg.model.uses("vap"):
        vap = cfg.model.vap
        crop_frames = int(t.vap_crop_seconds * vap.sample_rate / vap.hop_length)
    mixup = float(t.mixup)
    rng = np.random.default_rng(t.seed)  # mixup weights and training speaker offsets
    position = np.full(len(data), -1)
    position[train_idx] = np.arange(len(train_idx))

    state = {"epoch": 0, "step": 0, "best_val_ua": -1.0, "best_epoch": 0, "bad_epochs": 0, "history": [], "seconds": 0.0}
    if resume:
        state.update(load_train_state(out_dir, model, optimizer, generator))
    started = time.perf_counter() - state["seconds"]
    bar = tqdm(total=total, initial=state["step"], disable=not progress or not is_main, desc=cfg.name, unit="step", leave=False)
    epochs_this_call = 0
    while state["epoch"] < t.epochs and state["bad_epochs"] < t.patience:
        model.train()
        order = train_idx[torch.randperm(len(train_idx), generator=generator).numpy()]
        if ctx:
            order = ctx.shard(order, state["epoch"])  # this rank's DistributedSampler share
        sums = {"loss": 0.0, "ce": 0.0, "cpa": 0.0, "aux": 0.0, "vap_ce": 0.0}
        seen_labels, seen_preds = [], []  # running training UA (dropout on), for learning curves
        offsets = None
        if cfg.adapt.train_prob:
            from physioser.model.adaptation import speaker_evidence, training_offsets

            evidence_rows = speaker_evidence(model, data, train_idx)
            offsets = torch.as_tensor(training_offsets(evidence_rows, data.speakers[train_idx], cfg.adapt, rng, model.class_offsets.shape[1],
                                                       float(model.speaker_balance)), dtype=torch.float32)
            model.train()
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            batch = data.collate(rows, crop_frames=crop_frames, generator=generator)
            if offsets is not None:
                batch["speaker_offset"] = offsets[position[rows]]
            lam = 1.0
            if mixup:
                lam = float(rng.beta(mixup, mixup))
                batch["mixup_perm"] = torch.as_tensor(rng.permutation(len(rows)))
                batch["mixup_lam"] = torch.tensor(lam)
            batch = _to_device(batch, device)
            out = ctx.forward(model, batch) if ctx else model.forward_cached(batch)  # DDP all-reduces gradients
            smoothing = float(t.label_smoothing)

            def mixed_ce(logits: torch.Tensor) -> torch.Tensor:
                ce = F.cross_entropy(logits, batch["labels"], weight=weight, label_smoothing=smoothing)
                if mixup:
                    ce = lam * ce + (1 - lam) * F.cross_entropy(logits, batch["labels"][batch["mixup_perm"]], weight=weight,
                                                                label_smoothing=smoothing)
                return ce

            ce = mixed_ce(out["logits"])
            loss = ce + t.aux_weight * out["aux"]
            if "cpa" in out:
                loss = loss + cfg.cpa.weight * out["cpa"]
            if t.vap_aux_weight > 0:
                vap_ce = mixed_ce(out["vap_logits"])
                loss = loss + t.vap_aux_weight * vap_ce
                sums["vap_ce"] += vap_ce.item()
            seen_labels.append(batch["labels"].cpu())
            seen_preds.append(out["logits"].detach().argmax(1).cpu())
            if not torch.isfinite(loss):
                raise FloatingPointError(f"training loss became {loss.item()} at step {state['step']} ({out_dir})")
            factor = lr_factor(state["step"], total, warmup)
            for group in optimizer.param_groups:
                group["lr"] = float(t.lr) * factor * group.get("lr_scale", 1.0)  # states saved before scales existed lack it
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if t.grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), float(t.grad_clip))
            optimizer.step()
            state["step"] += 1
            sums["loss"] += loss.item()
            sums["ce"] += ce.item()
            sums["cpa"] += out["cpa"].item() if "cpa" in out else 0.0
            sums["aux"] += out["aux"].item()
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}", val_ua=f"{max(state['best_val_ua'], 0):.3f}")
        state["epoch"] += 1
        record = {"epoch": state["epoch"], "step": state["step"]}
        record.update({k: v / steps_per_epoch for k, v in sums.items()})
        record["train_ua"] = classification_metrics(torch.cat(seen_labels).numpy(), torch.cat(seen_preds).numpy(), class_names)["ua"]
        if val_idx is not None and len(val_idx):
            record["val_ua"] = _evaluate_ua(model, data, val_idx, class_names)
            improved = record["val_ua"] > state["best_val_ua"]
        else:
            improved = True
        if improved:
            state["best_val_ua"] = record.get("val_ua", -1.0)
            state["best_epoch"] = state["epoch"]
            state["bad_epochs"] = 0
            if not save:
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            elif is_main:
                save_model(model, cfg, out_dir)
        else:
            state["bad_epochs"] += 1
        state["history"].append(record)
        bar.set_postfix(loss=f"{record['loss']:.3f}", val_ua=f"{record.get('val_ua', float('nan')):.3f}")
        state["seconds"] = time.perf_counter() - started
        if is_main and save:
            save_train_state(out_dir, model, optimizer, generator, state)
        epochs_this_call += 1
        if stop_after_epochs is not None and epochs_this_call >= stop_after_epochs:
            break
    bar.close()

    if ctx:
        ctx.barrier()  # rank 0 has written the best weights
    if save:
        load_state(model, out_dir / "model.safetensors")
    else:
        model.load_state_dict(best_state)
    return FitResult(
        best_epoch=state["best_epoch"],
        best_val_ua=state["best_val_ua"],
        epochs_run=state["epoch"],
        step=state["step"],
        seconds=state["seconds"],
        history=state["history"],
    )


def new_model(cfg: Config, data, train_idx: np.ndarray) -> torch.nn.Module:
    """A fresh PhysioSER for ``cfg`` (seeded), its backbone layer statistics set from the training rows."""
    from physioser.model.factory import build_model

    torch.manual_seed(cfg.train.seed)
    model = build_model(cfg)
    if model.use_backbone:
        idx = torch.as_tensor(np.asarray(train_idx))
        spread = data.backbone_spread[idx] if model.statistics else None
        model.set_layer_statistics(data.backbone_segments[idx], data.backbone_counts[idx], spread)
        if model.statistics:
            batch = {"backbone_segments": data.backbone_segments[idx], "backbone_counts": data.backbone_counts[idx],
                     "backbone_spread": spread}
            model.set_class_offsets(model.cached_features(batch), torch.as_tensor(data.labels[np.asarray(train_idx)]),
                                    data.speakers[np.asarray(train_idx)])
    return model


def register(app: typer.Typer) -> None:
    @app.command("train")
    def train_command(
        corpus: list[str] = typer.Option(..., "--corpus", "-c", help="training corpus (repeat to train on several)"),
        out: Path = typer.Option(..., "--out", help="output model directory (model.safetensors, config.yaml, "
                                  "speaker_reference.npz for speaker-adaptive models, last.*)"),
        config: Optional[Path] = typer.Option(None, "--config", help="experiment YAML (configs/*.yaml)"),
        override: list[str] = typer.Option([], "--set", "-o", help="dotted config override, e.g. train.lr=1e-3 (repeatable)"),
        fold: str = typer.Option("all", "--fold", help="fold id of the speaker-independent folds, or 'all' (every "
                                 "speaker; 15% of them held out for early stopping)"),
        resume: bool = typer.Option(False, "--resume", help="continue the run in --out from its last finished epoch"),
        corpora_root: Path = typer.Option(default_corpora_root(),
                                          "--corpora-root", help="folder holding the corpora"),
        noise_root: Path = typer.Option(default_noise_root(), "--noise-root",
                                        help="real noise recordings for train.augment (default: $PHYSIOSER_NOISE or ../shared/noise)"),
        quiet: bool = typer.Option(False, "--quiet", help="no progress bar"),
    ) -> None:
        """Train PhysioSER (or a baseline config) on cached features of one or more corpora."""
        from physioser.data.folds import fold_plan, speaker_split
        from physioser.model.config import load_config
        from physioser.features import add_augmented_copies, load_corpora

        cfg = load_config(config, override)
        cfg, data, spans = load_corpora(cfg, list(corpus), corpora_root, progress=not quiet)
        if fold == "all":
            tr, va = speaker_split(data.rows, np.arange(len(data)), 0.15, cfg.train.heldout_seed)
        else:
            plan = {p[0]: p for p in fold_plan(data, spans, list(corpus), seed=cfg.train.seed)}
            if not fold.isdigit() or int(fold) not in plan:
                raise typer.BadParameter(f"fold must be 'all' or one of {sorted(plan)}, got {fold!r}")
            _, tr, va, _ = plan[int(fold)]
        n_clips = len(tr)
        # train.augment: augmented copies of the training rows only (never of the held-out / validation speakers)
        data, tr = add_augmented_copies(data, tr, cfg, corpora_root, noise_root, progress=not quiet)
        model = new_model(cfg, data, tr)
        # train.early_stopping=false: the validation speakers are left out, unused (a held-out set)
        result = fit(model, data, tr, va if cfg.train.early_stopping else None, cfg, out, resume=resume, progress=not quiet)
        from physioser.distributed import current

        if (ctx := current()) is not None and not ctx.is_main:
            return  # torchrun: rank 0 reports
        from physioser.model.adaptation import write_speaker_reference

        write_speaker_reference(model, data, tr, out)
        augmented = f" + {len(tr) - n_clips} augmented copies" if len(tr) > n_clips else ""
        if cfg.train.early_stopping:
            how = f"(val {len(va)}): best val UA {result.best_val_ua:.3f} at epoch {result.best_epoch}/{result.epochs_run}"
        else:
            how = f"({len(va)} held-out utterances unused): fixed schedule of {result.epochs_run} epochs"
        typer.echo(f"trained {n_clips} utterances{augmented} {how}, {result.seconds:.0f} s; wrote {out / 'model.safetensors'}")
