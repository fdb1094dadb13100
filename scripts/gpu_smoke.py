#!/usr/bin/env python3
"""GPU smoke test of the tiny-model paths on CUDA, and gsplat against the CPU Gaussian renderer.

Parts (each timed; one ``PASS`` / ``FAIL`` / ``SKIP`` line each, then a JSON summary):

  flux         tiny FLUX (upstream diffusers classes, random weights; tests/test_generate_adapters.py's
               builder) through hiscene_sim.generate.flux.FluxTextToImage, bfloat16 and float32
  svd          tiny SVD amodal completion (tests/test_amodal_svd.py's builders) through
               SvdCompleter.from_modules, float16 and float32 (UNet outputs checked finite)
  shape_prior  Algorithm 3 (algorithm3_shape_prior.regenerate_structure) through TRELLIS's wrappers
               (TrellisStructureCodec / TrellisVelocityModel) over tiny conv3d models, compared with the
               same models on the CPU; and IdentityCodec + AnalyticVelocity (exact field) on the device
  gsplat       render_gaussians_gsplat vs the CPU reference render_gaussians (colour max / mean abs diff,
               alpha, silhouette IoU), skipped unless CUDA is there and ``import gsplat`` works

On CUDA, every part also reports how far the device's float32 result is from the CPU's (TF32 off).
Exit status: 0 when no part failed (``--strict``: and none was skipped), 1 otherwise, 2 on bad usage.
``$OUT/gpu_smoke.json`` (or ``--json PATH``) gets the summary.

Dry run here (CPU, no gsplat)::

    /work/venv/bin/python scripts/gpu_smoke.py --cpu

On the lent GPU machine (device tool ``run``; python3 there is /opt/torch/.venv with torch 2.11+cu130,
transformers, tokenizers, scipy, pillow, scikit-image, pytest, ninja, nvcc, but NOT diffusers, trimesh or
gsplat, and nothing can be downloaded there). Once, here, in the repo root, fetch the missing wheels
into an ignored folder that travels with ``carry``::

    echo /.whl/ >> .git/info/exclude
    python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \\
        --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 -d .whl \\
        gsplat==1.5.3 diffusers==0.42.1 importlib_metadata trimesh==5.2.0

then run (``carry: [".whl"]``, timeout_s about 420: gsplat builds its CUDA extension on first use, about
64 s with these settings; see /work/shared/reference/upstream-facts.md, gsplat section)::

    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \\
      && export PYTHONPATH=/tmp/site || exit; export TORCH_CUDA_ARCH_LIST=9.0 MAX_JOBS=16 PYTHONUNBUFFERED=1; \\
      nvidia-smi -L; python3 scripts/gpu_smoke.py 2>&1 | tee $OUT/gpu_smoke.log

(with network access instead: ``pip install gsplat==1.5.3 diffusers trimesh`` and the same environment
variables). ``--parts flux,svd`` runs a subset; ``--strict`` makes a skipped part fail.
"""

from __future__ import annotations

import argparse
import copy
import importlib
import json
import os
import platform
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # hiscene_sim and the tests' builders, without installing the project

PARTS = ("flux", "svd", "shape_prior", "gsplat")
PROMPT = "isometric view of a desk."


class Skip(Exception):
    """A part that cannot run here (missing package, no CUDA): SKIP, not FAIL."""


class Check:
    """Collects named boolean checks of one part; ``failed`` lists those that did not hold."""

    def __init__(self) -> None:
        self.results: dict[str, bool] = {}

    def __call__(self, name: str, ok: Any) -> bool:
        self.results[name] = bool(ok)
        return bool(ok)

    @property
    def failed(self) -> list[str]:
        return [k for k, v in self.results.items() if not v]


# ----------------------------------------------------------------------------- helpers
def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _timed(device: str, fn: Callable[[], Any]) -> tuple[Any, float]:
    _sync(device)
    t0 = time.perf_counter()
    out = fn()
    _sync(device)
    return out, time.perf_counter() - t0


def _test_builders(module: str, names: list[str]) -> list[Any]:
    """The tiny-model builders of a test module (they need pytest and the module's own imports; importing
    sets torch to one thread, which is undone here)."""
    import torch

    threads = torch.get_num_threads()
    try:
        mod = importlib.import_module(module)
    except BaseException as exc:  # pytest.importorskip raises Skipped, a BaseException
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise
        raise Skip(f"cannot import the builders of {module}: {type(exc).__name__}: {exc}") from None
    finally:
        torch.set_num_threads(threads)
    return [getattr(mod, n) for n in names]


def _no_tf32():
    """TF32 off (so float32 on the GPU is comparable with the CPU); returns a restore function."""
    import torch

    old = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False

    def restore() -> None:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old

    return restore


def _mean_abs(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean(np.abs(a.astype(np.float64) - b.astype(np.float64))))


def _max_abs(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64))))


# ----------------------------------------------------------------------------- (i) FLUX
def part_flux(device: str, tmp: Path) -> dict[str, Any]:
    try:
        import diffusers  # noqa: F401
    except ImportError as exc:
        raise Skip(f"diffusers is not installed: {exc}") from None
    (build,) = _test_builders("tests.test_generate_adapters", ["_tiny_flux_components"])
    from hiscene_sim.generate.flux import FluxTextToImage

    settings = dict(height=32, width=32, num_inference_steps=2, max_sequence_length=16)
    check, runs, images = Check(), {}, {}
    restore = _no_tf32()
    try:
        for dtype in ("bfloat16", "float32"):
            t2i = FluxTextToImage(components=build(tmp / f"flux_{dtype}"), device=device, dtype=dtype, **settings)
            param = next(t2i.pipeline.transformer.parameters())
            first, t_first = _timed(device, lambda: t2i.generate(PROMPT, [0, 1]))
            again, t_warm = _timed(device, lambda: t2i.generate(PROMPT, [0]))
            img = first[0].image
            check(f"{dtype}: on {device}", param.device.type == device.split(":")[0])
            check(f"{dtype}: dtype", str(param.dtype) == f"torch.{dtype}")
            check(f"{dtype}: (32, 32, 3) uint8", img.shape == (32, 32, 3) and img.dtype == np.uint8)
            check(f"{dtype}: same seed, same image", np.array_equal(img, again[0].image))
            check(f"{dtype}: seeds differ", not np.array_equal(img, first[1].image))
            images[dtype] = img
            runs[dtype] = {"first_call_s (2 seeds)": round(t_first, 3), "warm_call_s (1 seed)": round(t_warm, 3),
                           "image_mean": float(img.mean()), "image_std": float(img.std())}
        details: dict[str, Any] = {"runs": runs, "bf16_vs_fp32_mean_abs_u8": _mean_abs(images["bfloat16"], images["float32"])}
        if device != "cpu":
            ref = FluxTextToImage(components=build(tmp / "flux_cpu"), device="cpu", dtype="float32", **settings)
            cpu = ref.generate(PROMPT, [0])[0].image
            details["fp32_device_vs_cpu_mean_abs_u8"] = _mean_abs(images["float32"], cpu)
            details["fp32_device_vs_cpu_max_abs_u8"] = _max_abs(images["float32"], cpu)
            check("fp32 device ~ CPU (mean abs < 2 levels)", details["fp32_device_vs_cpu_mean_abs_u8"] < 2.0)
    finally:
        restore()
    return {"checks": check, **details}


# ----------------------------------------------------------------------------- (ii) SVD
def _place_svd(modules: Any, device: str, dtype: Any) -> Any:
    """As load_svd_modules: UNet and image encoder in ``dtype``; the VAE in float32 when it asks for upcasting."""
    import torch

    modules.unet.to(device=device, dtype=dtype)
    modules.image_encoder.to(device=device, dtype=dtype)
    vae_dtype = torch.float32 if getattr(modules.vae.config, "force_upcast", False) else dtype
    modules.vae.to(device=device, dtype=vae_dtype)
    return modules


def part_svd(device: str, tmp: Path) -> dict[str, Any]:
    import torch

    try:
        import diffusers  # noqa: F401
    except ImportError as exc:
        raise Skip(f"diffusers is not installed: {exc}") from None
    tiny_modules, toy_pair, request_from, frames = _test_builders(
        "tests.test_amodal_svd", ["tiny_modules", "toy_pair", "request_from", "FRAMES"])
    from hiscene_sim.complete.svd import SvdCompleter

    req = request_from(toy_pair(30, 36))
    kw = dict(num_inference_steps=2, num_frames=frames, resolution=32, max_guidance_scale=2.5, seed=7)
    check, runs, outs = Check(), {}, {}
    restore = _no_tf32()
    try:
        for dtype in (torch.float16, torch.float32):
            name = str(dtype).removeprefix("torch.")
            modules = _place_svd(tiny_modules(), device, dtype)
            finite: list[bool] = []

            def hook(_module, _inputs, output, finite=finite):
                sample = output.sample if hasattr(output, "sample") else output[0]
                finite.append(bool(torch.isfinite(sample).all()))

            handle = modules.unet.register_forward_hook(hook)
            completer = SvdCompleter.from_modules(modules, **kw)
            first, t_first = _timed(device, lambda: completer.complete_video(req))
            again, t_warm = _timed(device, lambda: completer.complete_video(req))
            handle.remove()
            check(f"{name}: UNet on {device} in {name}", modules.unet.device.type == device.split(":")[0] and modules.unet.dtype == dtype)
            check(f"{name}: UNet outputs finite ({len(finite)} calls)", finite and all(finite))
            check(f"{name}: frames ({frames}, 30, 36, 3) uint8", first.frames.shape == (frames, 30, 36, 3) and first.frames.dtype == np.uint8)
            check(f"{name}: deterministic", np.array_equal(first.frames, again.frames))
            check(f"{name}: not constant", first.frames.std() > 0)
            outs[name] = first.frames
            runs[name] = {"first_call_s": round(t_first, 3), "warm_call_s": round(t_warm, 3),
                          "amodal_mask_pixels": int(first.amodal_mask.sum())}
        details: dict[str, Any] = {"runs": runs, "fp16_vs_fp32_mean_abs_u8": _mean_abs(outs["float16"], outs["float32"])}
        if device != "cpu":
            cpu = SvdCompleter.from_modules(_place_svd(tiny_modules(), "cpu", torch.float32), **kw).complete_video(req).frames
            details["fp32_device_vs_cpu_mean_abs_u8"] = _mean_abs(outs["float32"], cpu)
            details["fp32_device_vs_cpu_max_abs_u8"] = _max_abs(outs["float32"], cpu)
            check("fp32 device ~ CPU (mean abs < 2 levels)", details["fp32_device_vs_cpu_mean_abs_u8"] < 2.0)
    finally:
        restore()
    return {"checks": check, **details}


# ----------------------------------------------------------------------------- (iii) shape prior
def _tiny_trellis_modules(seed: int = 0):
    """SparseStructureEncoder / Decoder / FlowModel call signatures at TRELLIS's shapes (64^3 <-> 8 x 16^3)."""
    import torch

    class Encoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv3d(1, 16, 4, stride=4)

        def forward(self, x, sample_posterior=False):
            return self.conv(x).chunk(2, dim=1)[0]

    class Decoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.ConvTranspose3d(8, 1, 4, stride=4)

        def forward(self, z):
            return self.conv(z)

    class Flow(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv3d(8, 8, 3, padding=1)
            self.proj = torch.nn.Linear(32, 8)

        def forward(self, x, t, cond):
            bias = self.proj(cond.mean(dim=1))[:, :, None, None, None]
            return self.conv(x) + (t / 1000.0)[:, None, None, None, None] * bias

    torch.manual_seed(seed)
    return Encoder().eval(), Decoder().eval(), Flow().eval()


def part_shape_prior(device: str, tmp: Path) -> dict[str, Any]:
    import torch
    import trimesh

    from hiscene_sim.generate.algorithm3_shape_prior import ShapePriorConfig, regenerate_structure, voxelize_prior
    from hiscene_sim.generate.trellis import TrellisStructureCodec, TrellisVelocityModel
    from hiscene_sim.testing.flow_doubles import AnalyticVelocity, IdentityCodec

    check, details = Check(), {}
    sphere = trimesh.creation.icosphere(subdivisions=3, radius=0.4)
    occupancy, _ = voxelize_prior(sphere, 64)
    cond = torch.randn(1, 6, 32, generator=torch.Generator().manual_seed(3))
    config = ShapePriorConfig(t=0.3, steps=25, guidance=3.0, guidance_interval=(0.0, 1.0), seed=1)
    restore = _no_tf32()
    try:
        # (a) TRELLIS's wrappers over tiny conv3d models, on the device and on the CPU
        base = _tiny_trellis_modules()
        results = {}
        for dev in dict.fromkeys([device, "cpu"]):
            enc, dec, flow = (copy.deepcopy(m).to(dev) for m in base)
            codec, velocity = TrellisStructureCodec(enc, dec), TrellisVelocityModel(flow)
            c = cond.to(dev)
            out, seconds = _timed(dev, lambda: regenerate_structure(codec, velocity, occupancy, c, config, neg_cond=torch.zeros_like(c)))
            results[dev] = out
            details[f"trellis_wrappers_{dev}_s"] = round(seconds, 4)
        out = results[device]
        check("latent on the device", out.latent.device.type == device.split(":")[0])
        check("latent finite", torch.isfinite(out.latent).all().item())
        check("steps = INT(N t) = 7", out.steps == 7)
        details["active_voxels"] = int(out.coords.shape[0])
        if device != "cpu":
            ref = results["cpu"]
            diff = float((out.latent.cpu() - ref.latent).abs().max())
            agree = float((out.occupancy.cpu() == ref.occupancy).float().mean())
            details["latent_device_vs_cpu_max_abs"] = diff
            details["occupancy_device_vs_cpu_agreement"] = agree
            check("latent device ~ CPU (max abs < 1e-3)", diff < 1e-3)
            check("occupancy device ~ CPU (> 99.9% cells agree)", agree > 0.999)
        # (b) IdentityCodec + the exact field towards a box: Euler on the device lands on the box
        codec = IdentityCodec(64, 16, channels=8)
        box = torch.zeros(1, 1, 64, 64, 64)
        box[0, 0, 8:40, 20:60, 4:30] = 1.0
        target = codec.encode(box.to(device))[0]
        exact, seconds = _timed(device, lambda: regenerate_structure(codec, AnalyticVelocity(target), occupancy.to(device), None,
                                                                     ShapePriorConfig(t=0.3, guidance=0.0, seed=2)))
        goal = codec.decode(target[None])[0, 0] > 0
        inter = (exact.occupancy & goal).sum().item()
        union = (exact.occupancy | goal).sum().item()
        details["analytic_iou_with_target"] = inter / max(union, 1)
        details["analytic_s"] = round(seconds, 4)
        check("exact field: IoU with its target > 0.99", details["analytic_iou_with_target"] > 0.99)
    finally:
        restore()
    return {"checks": check, **details}


# ----------------------------------------------------------------------------- (iv) gsplat
def part_gsplat(device: str, tmp: Path) -> dict[str, Any]:
    import torch

    if device == "cpu" or not torch.cuda.is_available():
        raise Skip("gsplat needs CUDA")
    try:
        import gsplat
    except (ImportError, OSError, RuntimeError) as exc:
        raise Skip(f"import gsplat failed: {exc}") from None
    import trimesh

    from hiscene_sim.render import gaussians_from_mesh, render_gaussians, render_gaussians_gsplat, viewpoints

    box = trimesh.creation.box(extents=(1.0, 1.0, 1.0))
    sides = {(1, 0, 0): (230, 30, 30), (-1, 0, 0): (30, 230, 30), (0, 1, 0): (30, 30, 230),
             (0, -1, 0): (230, 230, 30), (0, 0, 1): (30, 230, 230), (0, 0, -1): (230, 30, 230)}
    box.visual.face_colors = np.array([(*sides[tuple(n)], 255) for n in np.rint(box.face_normals).astype(int)], np.uint8)
    g = gaussians_from_mesh(box, 50000, seed=0)
    check, views = Check(), []
    details: dict[str, Any] = {"gsplat": getattr(gsplat, "__version__", "?"), "n_gaussians": len(g.means)}
    cams = viewpoints("corner", bounds=box.bounds, width=128, height=96, projection="perspective")
    _, details["first_call_s (extension build / load)"] = _timed(device, lambda: render_gaussians_gsplat(g, cams[11]))
    for projection in ("orthographic", "perspective"):
        cams = viewpoints("corner", bounds=box.bounds, width=128, height=96, projection=projection)
        for index in (11, 36):
            ref, t_cpu = _timed("cpu", lambda: render_gaussians(g, cams[index]))
            out, t_gpu = _timed(device, lambda: render_gaussians_gsplat(g, cams[index]))
            s_ref, s_out = ref.mask(), out.mask()
            iou = float((s_ref & s_out).sum() / max((s_ref | s_out).sum(), 1))
            row = {"view": f"{projection}[{index}]", "color_max_abs": _max_abs(out.color, ref.color),
                   "color_mean_abs": _mean_abs(out.color, ref.color), "alpha_mean_abs": _mean_abs(out.alpha, ref.alpha),
                   "silhouette_iou": iou, "cpu_s": round(t_cpu, 4), "gsplat_s": round(t_gpu, 4)}
            views.append(row)
            print(f"    gsplat {row['view']}: colour max {row['color_max_abs']:.4f} mean {row['color_mean_abs']:.5f}, "
                  f"alpha mean {row['alpha_mean_abs']:.5f}, IoU {iou:.4f}, CPU {t_cpu:.3f} s, gsplat {t_gpu:.4f} s")
            check(f"{row['view']}: colour mean abs < 0.02", row["color_mean_abs"] < 0.02)
            check(f"{row['view']}: alpha mean abs < 0.02", row["alpha_mean_abs"] < 0.02)
            check(f"{row['view']}: silhouette IoU > 0.97", iou > 0.97)
    details["views"] = views
    # throughput at A.1's scale: 200k Gaussians, 512 x 512 (gsplat only; one view per call here)
    big = gaussians_from_mesh(box, 200_000, seed=1)
    cam = viewpoints("corner", bounds=box.bounds, width=512, height=512, projection="perspective")[11]
    render_gaussians_gsplat(big, cam)
    _, t = _timed(device, lambda: [render_gaussians_gsplat(big, cam) for _ in range(5)])
    details["gsplat_200k_512px_per_view_s (incl. transfers)"] = round(t / 5, 4)
    return {"checks": check, **details}


# ----------------------------------------------------------------------------- driver
def run_part(name: str, fn: Callable[[str, Path], dict[str, Any]], device: str, tmp: Path) -> dict[str, Any]:
    t0 = time.perf_counter()
    try:
        details = fn(device, tmp)
        check: Check = details.pop("checks")
        status = "FAIL" if check.failed else "PASS"
        result = {"status": status, "checks": check.results, "failed": check.failed, **details}
        note = f"{len(check.results) - len(check.failed)}/{len(check.results)} checks" + (
            f"; failed: {', '.join(check.failed)}" if check.failed else "")
    except Skip as exc:
        status, note, result = "SKIP", str(exc), {"status": "SKIP", "reason": str(exc)}
    except Exception as exc:  # noqa: BLE001 - one part's crash is that part's FAIL
        status, note = "FAIL", f"{type(exc).__name__}: {exc}"
        result = {"status": "FAIL", "error": note, "traceback": traceback.format_exc()}
        traceback.print_exc()
    seconds = time.perf_counter() - t0
    result["seconds"] = round(seconds, 3)
    print(f"{status} {name} ({seconds:.1f} s): {note}", flush=True)
    return result


def environment(device: str) -> dict[str, Any]:
    import torch

    env = {"python": platform.python_version(), "torch": torch.__version__, "device": device,
           "cuda_available": torch.cuda.is_available(), "torch_cuda": torch.version.cuda}
    if device != "cpu":
        env["gpu"] = torch.cuda.get_device_name(0)
        env["capability"] = ".".join(map(str, torch.cuda.get_device_capability(0)))
    for pkg in ("diffusers", "transformers", "trimesh", "gsplat"):
        try:
            env[pkg] = importlib.import_module(pkg).__version__
        except Exception as exc:  # noqa: BLE001 - report, do not fail
            env[pkg] = f"unavailable ({type(exc).__name__})"
    return env


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cpu", action="store_true", help="run the same parts on the CPU (a dry run; gsplat is skipped)")
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated subset of {', '.join(PARTS)}")
    parser.add_argument("--json", type=Path, default=None, help="summary path (default $OUT/gpu_smoke.json when OUT is set)")
    parser.add_argument("--strict", action="store_true", help="a skipped part makes the run fail")
    args = parser.parse_args(argv)
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        parser.error(f"unknown part(s) {', '.join(unknown)}; known: {', '.join(PARTS)}")
    import torch

    if not args.cpu and not torch.cuda.is_available():
        print("FAIL setup: CUDA is not available (torch.cuda.is_available() is False); use --cpu for a dry run", flush=True)
        return 2
    device = "cpu" if args.cpu else "cuda"
    env = environment(device)
    print(json.dumps(env), flush=True)
    functions = {"flux": part_flux, "svd": part_svd, "shape_prior": part_shape_prior, "gsplat": part_gsplat}
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="gpu_smoke_") as tmp:
        results = {name: run_part(name, functions[name], device, Path(tmp)) for name in parts}
    statuses = [r["status"] for r in results.values()]
    ok = "FAIL" not in statuses and not (args.strict and "SKIP" in statuses)
    summary = {"ok": ok, "seconds": round(time.perf_counter() - t0, 3), "environment": env, "parts": results,
               "argv": sys.argv[1:] if argv is None else argv}
    path = args.json or (Path(os.environ["OUT"]) / "gpu_smoke.json" if os.environ.get("OUT") else None)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(summary, indent=1, default=str))
        print(f"summary written to {path}")
    states = ", ".join(f"{n} {r['status']}" for n, r in results.items())
    print(("PASS" if ok else "FAIL") + f" all ({states}; {summary['seconds']:.1f} s)", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
