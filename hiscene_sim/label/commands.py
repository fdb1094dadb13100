"""The ``hiscene label`` command, and the labelling options ``generate`` and ``batch`` share."""

from __future__ import annotations

import argparse
from pathlib import Path

LABEL_BACKENDS = (
    "labellers: geometric (default, no weights: floor, wall, 'table' for a support surface other objects rest on, "
    "'object' otherwise; named inputs keep their names), vlm (an OpenAI-compatible endpoint: --vlm-url / "
    "$HISCENE_VLM_BASE_URL / $OPENAI_BASE_URL, --vlm-model / $HISCENE_VLM_MODEL, key from $OPENAI_API_KEY; chosen "
    "by default when an endpoint and a model are configured), clip (zero-shot over the vocabulary, local CLIP weights)"
)


def add_label_options(p: argparse.ArgumentParser, views_flag: str = "--label-views") -> None:
    g = p.add_argument_group("labelling")
    g.add_argument("--labeller", choices=("geometric", "vlm", "clip"),
                   help="labelling backend (default: vlm when an endpoint and a model are configured, else geometric)")
    g.add_argument("--vlm-url", help="vlm: OpenAI-compatible base URL (else $HISCENE_VLM_BASE_URL or $OPENAI_BASE_URL)")
    g.add_argument("--vlm-model", help="vlm: model name (else $HISCENE_VLM_MODEL); the key comes from $OPENAI_API_KEY only")
    g.add_argument("--vlm-timeout", type=float, default=60.0, help="vlm: seconds per request (default 60)")
    g.add_argument("--label-clip-weights", type=Path, help="clip: local CLIPModel directory (save_pretrained)")
    vocab = g.add_mutually_exclusive_group()
    vocab.add_argument("--vocab", help='comma-separated categories to choose from, e.g. "table,chair,mug"')
    vocab.add_argument("--vocab-file", type=Path, help="a file with one category per line (or comma-separated)")
    g.add_argument(views_flag, dest="label_views", type=int, default=4, help="views shown to an image labeller (default 4)")


def _vlm_flags(args: argparse.Namespace) -> dict:
    return {k: v for k, v in (("base_url", args.vlm_url), ("model", args.vlm_model), ("timeout_s", args.vlm_timeout)) if v}


def vlm_configured(args: argparse.Namespace, environ=None) -> bool:
    """An endpoint and a model, from the flags or the environment (as the VLM client reads them)."""
    from hiscene_sim.vlm_client import VlmConfig

    config = VlmConfig.from_dict(_vlm_flags(args), environ)
    return bool(config.base_url and config.model)


def label_config_from_args(args: argparse.Namespace, overrides: dict[str, str] | None = None):
    from hiscene_sim.label.base import parse_vocabulary
    from hiscene_sim.label.stage import LabelConfig
    from hiscene_sim.scene import SceneError

    backend = args.labeller or ("vlm" if vlm_configured(args) else "geometric")
    options: dict = {}
    if backend == "vlm":
        from hiscene_sim.vlm_client import VlmConfig, is_loopback

        options = {"config": _vlm_flags(args)}
        url = VlmConfig.from_dict(options["config"]).base_url or ""
        options["config"]["require_api_key"] = not is_loopback(url)  # a local server may need no key
    elif backend == "clip":
        if args.label_clip_weights is None:
            raise SceneError("--labeller clip needs --label-clip-weights DIR (a local CLIPModel)")
        options = {"weights": args.label_clip_weights}
    text = None
    if args.vocab_file is not None:
        try:
            text = Path(args.vocab_file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise SceneError(f"--vocab-file {args.vocab_file}: cannot read it ({exc})") from None
    elif args.vocab:
        text = args.vocab
    vocabulary = tuple(parse_vocabulary(text))
    if text is not None and not vocabulary:
        raise SceneError(f"the vocabulary {'in ' + str(args.vocab_file) if args.vocab_file else repr(args.vocab)} has no usable category")
    return LabelConfig(backend=backend, backend_options=options, vocabulary=vocabulary, n_views=args.label_views,
                       overrides=overrides or {})


def add_label_parser(sub) -> None:
    p = sub.add_parser(
        "label", help="a semantic label for every object of a scene dir (VLM, CLIP or the weight-free default)",
        description="Label every foreground object: the labeller looks at its object-centric views (those `complete` "
        "wrote, else rendered with the object alone) or, for the default, at the geometry. scene.json gets label and "
        "label_source (backend, model, views, raw answer) per object, and ids follow labels (mug_1, mug_2). A failed "
        "answer is asked again once, then the object falls back to the geometric label with a warning. The scene dir "
        "is replaced as a whole (or written to --out). " + LABEL_BACKENDS,
    )
    p.add_argument("scene_dir", type=Path)
    p.add_argument("--out", type=Path, help="write the labelled scene dir here and leave SCENE_DIR untouched")
    p.add_argument("--set", action="append", default=[], metavar="ID=LABEL",
                   help='set a label by hand, e.g. --set object_3=mug --set object_5="coffee table" (wins over the labeller)')
    p.add_argument("--keep-ids", action="store_true", help="keep the objects' ids (default: ids follow labels)")
    add_label_options(p, views_flag="--views")
    p.set_defaults(func=cmd_label)


def cmd_label(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from rich.progress import Progress

    from hiscene_sim.label.stage import label_scene, parse_overrides
    from hiscene_sim.scene import load_scene

    config = replace(label_config_from_args(args, parse_overrides(args.set)), rename=not args.keep_ids)
    n = len(load_scene(args.scene_dir).objects)
    with Progress(transient=True) as progress:
        task = progress.add_task(f"label ({config.backend})", total=n)
        results = label_scene(args.scene_dir, config, out_dir=args.out,
                              progress=lambda i, total, oid: progress.update(task, completed=i))
    written = args.out or args.scene_dir
    fallbacks = sum(r.fell_back for r in results)
    print(f"labelled {len(results)} objects of {args.scene_dir} into {written} (labeller {config.backend}"
          + (f", {fallbacks} fell back to the geometric label" if fallbacks else "") + ")")
    for r in results:
        rename = f"{r.previous_id} -> " if r.previous_id != r.object_id else ""
        note = f"  [{r.warning}]" if r.warning else ""
        print(f"  {rename}{r.object_id:16s} {r.label!r:18s} by {r.answer.backend}{note}")
    print(f"  {LABEL_BACKENDS}")
    return 0
