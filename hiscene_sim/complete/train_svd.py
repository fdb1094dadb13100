"""Fine-tune SVD into the amodal completion model (paper B.3).

Defaults are B.3's: 512x512, 8-frame Algorithm-2 videos, fp16 mixed precision (on CUDA), AdamW at
lr 1e-5 with a 500-step linear warm-up, every UNet parameter trained, VAE and CLIP image encoder
frozen; the UNet starts from SVD's weights with conv_in widened 8 -> 9 (zero-initialised mask
channel). The paper trains with batch 8 on 8 GPUs; this script is single-device (batch 8 there =
``--batch-size 1`` per GPU; use ``--grad-accum 8`` on one GPU for the same effective batch).

Objective: the paper writes Eq. 2 as DDPM noise prediction, but SVD is an EDM model (continuous
sigmas, v-prediction preconditioning; its scheduler and sampler assume that), so fine-tuning keeps
SVD's own objective, written out in :func:`edm_loss`:

    sigma ~ LogNormal(p_mean, p_std)                              per video
    x_noisy = x_0 + sigma * eps                                   x_0 = VAE latents of all F frames
    D(x_noisy) = c_skip * x_noisy + c_out * UNet(c_in * x_noisy | cond, c_noise)
    c_in = 1/sqrt(sigma^2+1), c_skip = 1/(sigma^2+1), c_out = -sigma/sqrt(sigma^2+1), c_noise = log(sigma)/4
    loss = mean( (sigma^2+1)/sigma^2 * (D(x_noisy) - x_0)^2 )

which is, up to the weighting, the paper's epsilon-MSE (predicting D is predicting eps).

Data: a directory of ``.npz`` pairs (``algorithm2_transitions.save_pair``) or an in-memory list of
``AmodalPair`` / ``AmodalSample``. Checkpoints are full SVD-layout directories (loadable by
``SvdCompleter(weights=...)``), written to a temporary directory and renamed into place.

    python -m hiscene_sim.complete.train_svd --weights SVD_DIR --data PAIRS_DIR --output OUT
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hiscene_sim.complete.algorithm2_transitions import AmodalPair, AmodalSample, load_pair, make_sample
from hiscene_sim.complete.svd import SvdConditioning, SvdModules, added_time_ids, clip_image_embeddings, encode_condition

if TYPE_CHECKING:  # pragma: no cover
    import torch


@dataclass
class TrainConfig:
    """Training settings; defaults follow B.3 where the paper gives them (marked), else SVD fine-tuning practice."""

    weights: Path | None = None  # pretrained SVD directory (8- or 9-channel UNet)
    data: Path | None = None  # directory of .npz pairs
    output: Path = Path("svd-amodal")
    resolution: int = 512  # B.3
    num_frames: int = 8  # B.3
    batch_size: int = 1  # B.3: 8 over 8 GPUs
    grad_accum: int = 1
    lr: float = 1e-5  # B.3
    warmup_steps: int = 500  # B.3
    max_steps: int = 20000  # not in the paper (3 days on 8 H20)
    weight_decay: float = 1e-2
    max_grad_norm: float = 1.0
    mixed_precision: str = "auto"  # B.3 fp16; "auto" = fp16 on CUDA, fp32 on CPU; or "fp16" / "no"
    cond_dropout: float = 0.1  # drop CLIP + concatenated conditioning together, for CFG
    p_mean: float = 0.7  # log-normal sigma sampling (SVD fine-tuning)
    p_std: float = 1.6
    conditioning: SvdConditioning = field(default_factory=SvdConditioning)
    gradient_checkpointing: bool = False
    checkpoint_every: int = 1000
    log_every: int = 10
    num_workers: int = 2
    seed: int = 0
    device: str | None = None


# ---------------------------------------------------------------------------------------------
# data


class AmodalVideoDataset:
    """Map-style dataset of Algorithm-2 samples: items are dicts with ``video`` (F, 3, R, R) in
    [-1, 1] and ``visible_mask`` (1, R, R) in [0, 1] (float32 tensors); pairs become videos on access.

    Args:
        source: a directory of ``.npz`` pairs, or a sequence of ``AmodalPair`` / ``AmodalSample``.
    """

    def __init__(self, source: str | Path | Sequence[AmodalPair | AmodalSample], num_frames: int = 8, resolution: int = 512):
        if isinstance(source, (str, Path)):
            self.items: list[Any] = sorted(Path(source).glob("*.npz"))
            if not self.items:
                raise FileNotFoundError(f"no .npz amodal pairs in {source}")
        else:
            self.items = list(source)
        self.num_frames = num_frames
        self.size = (resolution, resolution)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        item = self.items[index]
        if isinstance(item, Path):
            item = load_pair(item)
        if isinstance(item, AmodalPair):
            item = make_sample(item, self.num_frames, self.size)
        if tuple(item.video.shape) != (self.num_frames, 3, *self.size):
            raise ValueError(f"sample {index}: video {tuple(item.video.shape)}, expected {(self.num_frames, 3, *self.size)}")
        return {"video": item.video.float(), "visible_mask": item.visible_mask.float()}


# ---------------------------------------------------------------------------------------------
# objective


def edm_loss(
    modules: SvdModules,
    batch: dict[str, torch.Tensor],
    generator: torch.Generator | None = None,
    cond_dropout: float = 0.0,
    p_mean: float = 0.7,
    p_std: float = 1.6,
    conditioning: SvdConditioning | None = None,
    autocast_dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """SVD's EDM training loss on one batch (see the module docstring); returns a scalar.

    Args:
        batch: ``video`` (B, F, 3, H, W) in [-1, 1] with frame 0 the occluded observation,
            ``visible_mask`` (B, 1, H, W) in [0, 1].
        generator: a CPU generator for sigma, the noise, the noise augmentation, the VAE posterior
            sample and the dropout draw (fix it to compare losses).
        cond_dropout: probability of dropping a video's conditioning (CLIP context, observation
            latent and mask together: the unconditional branch of guidance).
        autocast_dtype: run the UNet under CUDA autocast in this dtype (mixed precision).
    """
    import torch
    from diffusers.utils.torch_utils import randn_tensor

    cond_ids = conditioning or SvdConditioning()
    device = modules.device
    video = batch["video"].to(device)
    mask = batch["visible_mask"].to(device)
    b, f = video.shape[:2]

    with torch.no_grad():  # frozen VAE and image encoder
        vae = modules.vae
        posterior = vae.encode(video.flatten(0, 1).to(vae.dtype)).latent_dist
        x0 = (posterior.sample(generator) * vae.config.scaling_factor).float()
        x0 = x0.reshape(b, f, *x0.shape[1:])  # (B, F, 4, h, w)
        first = video[:, 0]
        cond = encode_condition(modules, first, mask, f, cond_ids.noise_aug_strength, generator).float()
        context = clip_image_embeddings(modules, first).float()
        if cond_dropout > 0.0:
            keep = (torch.rand(b, generator=generator) >= cond_dropout).float().to(device)
            cond = cond * keep.view(b, 1, 1, 1, 1)
            context = context * keep.view(b, 1, 1)
        time_ids = added_time_ids(modules, b, cond_ids).float()

    sigma = torch.exp(p_mean + p_std * torch.randn(b, generator=generator)).to(device)
    noise = randn_tensor(x0.shape, generator=generator, device=device, dtype=x0.dtype)
    s = sigma.view(b, 1, 1, 1, 1)
    noisy = x0 + s * noise
    c_in, c_skip, c_out = 1.0 / (s**2 + 1).sqrt(), 1.0 / (s**2 + 1), -s / (s**2 + 1).sqrt()
    c_noise = 0.25 * sigma.log()

    unet = modules.unet
    with torch.autocast("cuda", dtype=autocast_dtype or torch.float16, enabled=autocast_dtype is not None):
        x = torch.cat([c_in * noisy, cond], dim=2).to(unet.dtype)
        out = unet(x, c_noise, encoder_hidden_states=context.to(unet.dtype), added_time_ids=time_ids.to(unet.dtype)).sample
    denoised = c_skip * noisy + c_out * out.float()
    weight = (s**2 + 1) / s**2
    return (weight * (denoised - x0) ** 2).mean()


# ---------------------------------------------------------------------------------------------
# checkpoints


def save_checkpoint(modules: SvdModules, path: str | Path, state: dict | None = None) -> Path:
    """Write ``modules`` (SVD repo layout) to ``path`` atomically (:func:`hiscene_sim.atomic.atomic_directory`:
    a temp dir beside it, then renamed; an existing ``path`` is replaced as a whole)."""
    from hiscene_sim.atomic import atomic_directory

    path = Path(path)
    with atomic_directory(path) as tmp:
        modules.save_pretrained(tmp)
        if state is not None:
            (tmp / "trainer_state.json").write_text(json.dumps(state, indent=2, default=str))
    return path


# ---------------------------------------------------------------------------------------------
# training loop


@dataclass
class TrainResult:
    steps: int
    losses: list[float]  # one per optimizer step
    checkpoints: list[Path]


def prepare_for_training(modules: SvdModules, config: TrainConfig) -> SvdModules:
    """Freeze VAE and image encoder, train all UNet parameters in float32 (master weights)."""
    import torch

    modules.vae.requires_grad_(False).eval()
    modules.image_encoder.requires_grad_(False).eval()
    if modules.unet.dtype != torch.float32:
        modules.unet.to(torch.float32)
    modules.unet.requires_grad_(True).train()
    if config.gradient_checkpointing:
        modules.unet.enable_gradient_checkpointing()
    return modules


def train(
    config: TrainConfig,
    modules: SvdModules | None = None,
    samples: Sequence[AmodalPair | AmodalSample] | None = None,
) -> TrainResult:
    """Fine-tune; data from ``samples`` if given, else ``config.data``; weights from ``modules``
    if given, else ``config.weights`` (loaded with :func:`load_svd_modules`; a stock 8-channel
    UNet gets its zero-initialised mask channel here, the only place that widens one)."""
    import torch

    from hiscene_sim.complete.svd import AMODAL_IN_CHANNELS, load_svd_modules, widen_conv_in

    device = torch.device(config.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if modules is None:
        if config.weights is None:
            raise ValueError("train needs modules or config.weights")
        modules = load_svd_modules(config.weights, device=device, dtype=torch.float32, allow_stock_unet=True)
        if modules.unet.config.in_channels != AMODAL_IN_CHANNELS:
            widen_conv_in(modules.unet)  # B.3: fine-tuning starts from stock SVD with a zero mask channel
            print(f"widened the stock UNet of {config.weights} to {AMODAL_IN_CHANNELS} input channels (mask channel zero)")
    for m in (modules.unet, modules.vae, modules.image_encoder):
        m.to(device)
    prepare_for_training(modules, config)
    fp16 = config.mixed_precision == "fp16" or (config.mixed_precision == "auto" and device.type == "cuda")
    if fp16 and device.type != "cuda":
        raise ValueError("fp16 mixed precision needs CUDA")

    if samples is None and config.data is None:
        raise ValueError("train needs samples or config.data")
    dataset = AmodalVideoDataset(samples if samples is not None else config.data, config.num_frames, config.resolution)
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=config.batch_size,
        shuffle=True,
        drop_last=len(dataset) >= config.batch_size,
        num_workers=config.num_workers,
        generator=torch.Generator().manual_seed(config.seed),
    )
    params = [p for p in modules.unet.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    warmup = max(config.warmup_steps, 1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / warmup))
    scaler = torch.amp.GradScaler("cuda", enabled=fp16)
    generator = torch.Generator().manual_seed(config.seed)

    losses: list[float] = []
    checkpoints: list[Path] = []
    step, micro, running = 0, 0, 0.0
    state = {"config": asdict(config)}
    while step < config.max_steps:
        for batch in loader:
            loss = edm_loss(
                modules,
                batch,
                generator,
                cond_dropout=config.cond_dropout,
                p_mean=config.p_mean,
                p_std=config.p_std,
                conditioning=config.conditioning,
                autocast_dtype=torch.float16 if fp16 else None,
            )
            scaler.scale(loss / config.grad_accum).backward()
            running += loss.item() / config.grad_accum
            micro += 1
            if micro % config.grad_accum:
                continue
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
            scheduler.step()
            step += 1
            losses.append(running)
            running = 0.0
            if not math.isfinite(losses[-1]):
                raise FloatingPointError(f"loss is {losses[-1]} at step {step}")
            if config.log_every and step % config.log_every == 0:
                print(f"step {step}/{config.max_steps} loss {losses[-1]:.4f} lr {scheduler.get_last_lr()[0]:.2e}", flush=True)
            if config.checkpoint_every and (step % config.checkpoint_every == 0 or step == config.max_steps):
                ckpt = config.output / f"checkpoint-{step:06d}"
                checkpoints.append(save_checkpoint(modules, ckpt, {**state, "step": step, "loss": losses[-1]}))
            if step >= config.max_steps:
                break
    return TrainResult(steps=step, losses=losses, checkpoints=checkpoints)


def parse_args(argv: Sequence[str] | None = None) -> TrainConfig:
    d = TrainConfig()
    p = argparse.ArgumentParser(prog="python -m hiscene_sim.complete.train_svd", description=__doc__.split("\n\n")[0])
    p.add_argument("--weights", type=Path, required=True, help="local SVD directory (unet/ vae/ image_encoder/ feature_extractor/ scheduler/)")
    p.add_argument("--data", type=Path, required=True, help="directory of .npz amodal pairs (algorithm2_transitions.save_pair)")
    p.add_argument("--output", type=Path, required=True, help="checkpoint directory")
    p.add_argument("--resolution", type=int, default=d.resolution)
    p.add_argument("--num-frames", type=int, default=d.num_frames)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--grad-accum", type=int, default=d.grad_accum)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--warmup-steps", type=int, default=d.warmup_steps)
    p.add_argument("--max-steps", type=int, default=d.max_steps)
    p.add_argument("--weight-decay", type=float, default=d.weight_decay)
    p.add_argument("--max-grad-norm", type=float, default=d.max_grad_norm)
    p.add_argument("--mixed-precision", choices=("auto", "fp16", "no"), default=d.mixed_precision)
    p.add_argument("--cond-dropout", type=float, default=d.cond_dropout)
    p.add_argument("--p-mean", type=float, default=d.p_mean)
    p.add_argument("--p-std", type=float, default=d.p_std)
    p.add_argument("--fps", type=int, default=d.conditioning.fps)
    p.add_argument("--motion-bucket-id", type=int, default=d.conditioning.motion_bucket_id)
    p.add_argument("--noise-aug-strength", type=float, default=d.conditioning.noise_aug_strength)
    p.add_argument("--gradient-checkpointing", action="store_true")
    p.add_argument("--checkpoint-every", type=int, default=d.checkpoint_every)
    p.add_argument("--log-every", type=int, default=d.log_every)
    p.add_argument("--num-workers", type=int, default=d.num_workers)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--device", default=None)
    a = p.parse_args(argv)
    return TrainConfig(
        weights=a.weights,
        data=a.data,
        output=a.output,
        resolution=a.resolution,
        num_frames=a.num_frames,
        batch_size=a.batch_size,
        grad_accum=a.grad_accum,
        lr=a.lr,
        warmup_steps=a.warmup_steps,
        max_steps=a.max_steps,
        weight_decay=a.weight_decay,
        max_grad_norm=a.max_grad_norm,
        mixed_precision=a.mixed_precision,
        cond_dropout=a.cond_dropout,
        p_mean=a.p_mean,
        p_std=a.p_std,
        conditioning=SvdConditioning(a.fps, a.motion_bucket_id, a.noise_aug_strength),
        gradient_checkpointing=a.gradient_checkpointing,
        checkpoint_every=a.checkpoint_every,
        log_every=a.log_every,
        num_workers=a.num_workers,
        seed=a.seed,
        device=a.device,
    )


def main(argv: Sequence[str] | None = None) -> int:
    config = parse_args(argv)
    result = train(config)
    print(f"trained {result.steps} steps; last checkpoint {result.checkpoints[-1] if result.checkpoints else 'none'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
