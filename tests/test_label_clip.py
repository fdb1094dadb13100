"""The CLIP zero-shot labeller on a tiny CLIP built in-test: a real CLIPModel + CLIPProcessor
(BPE tokenizer written offline) saved with save_pretrained and loaded through ClipLabeller; a
copy trained for a few steps with CLIP's contrastive loss on red <-> mug, blue <-> bowl,
green <-> chair, so the labeller's answer depends on the views in a checkable way; the
multi-view mean against a hand computation; the text-embedding cache; and the errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from hiscene_sim.backends import BackendError  # noqa: E402
from hiscene_sim.label.base import LABELLERS, LabelError, LabelItem, Labeller  # noqa: E402
from hiscene_sim.label.clip import ClipLabeller, ClipLabellerConfig  # noqa: E402

torch.set_num_threads(1)  # tiny ops on 2 shared cores

RES = 32
WORDS = ("a", "photo", "of", "mug", "bowl", "chair", "table", "lamp", ".")
CLASSES = {"mug": (220, 30, 30), "bowl": (30, 30, 220), "chair": (30, 200, 30)}  # colour of each class's views


# ------------------------------------------------------------------------------------ tiny CLIP
def _write_tokenizer_files(root: Path) -> Path:
    """A CLIP byte-level BPE vocab.json + merges.txt: every letter, plus merges building WORDS."""
    vocab: dict[str, int] = {}
    merges: list[str] = []

    def add(token: str) -> None:
        if token not in vocab:
            vocab[token] = len(vocab)

    for c in "abcdefghijklmnopqrstuvwxyz.,":
        add(c)
        add(c + "</w>")
    for word in WORDS:
        pieces = list(word[:-1]) + [word[-1] + "</w>"]
        while len(pieces) > 1:
            merge = f"{pieces[0]} {pieces[1]}"
            if merge not in merges:
                merges.append(merge)
            pieces = [pieces[0] + pieces[1]] + pieces[2:]
            add(pieces[0])
    add("<|startoftext|>")  # the specials last, with the highest ids, as in CLIP's vocabulary
    add("<|endoftext|>")
    root.mkdir(parents=True, exist_ok=True)
    (root / "vocab.json").write_text(json.dumps(vocab))
    (root / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    return root


def _tiny_clip(root: Path, seed: int = 0):
    """(model, processor): a randomly initialised tiny CLIPModel and its processor."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    tok = CLIPTokenizer.from_pretrained(str(_write_tokenizer_files(root / "tok_src")), model_max_length=32)
    assert tok.convert_ids_to_tokens(tok("a photo of a mug.")["input_ids"]) == [
        "<|startoftext|>", "a</w>", "photo</w>", "of</w>", "a</w>", "mug</w>", ".</w>", "<|endoftext|>"]
    text = dict(vocab_size=len(tok), hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
                max_position_embeddings=32, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                pad_token_id=tok.pad_token_id)
    vision = dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4, image_size=RES, patch_size=8)
    torch.manual_seed(seed)
    model = CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=16))
    image_processor = CLIPImageProcessor(size={"shortest_edge": RES}, crop_size={"height": RES, "width": RES})
    return model, CLIPProcessor(image_processor=image_processor, tokenizer=tok)


def _save(model, processor, path: Path) -> Path:
    model.save_pretrained(str(path))
    processor.save_pretrained(str(path))
    return path


def _view(colour, seed: int, size: int = 40) -> np.ndarray:
    """A (size, size, 3) uint8 view: a noisy, shaded blob of ``colour`` on a light grey background."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] / size
    cy, cx = rng.uniform(0.35, 0.65, 2)
    inside = (yy - cy) ** 2 + (xx - cx) ** 2 < rng.uniform(0.08, 0.14)
    img = np.full((size, size, 3), 200.0) + rng.normal(0, 8, (size, size, 3))
    shade = rng.uniform(0.75, 1.1)
    img[inside] = np.asarray(colour) * shade + rng.normal(0, 12, (int(inside.sum()), 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def _train(model, processor, steps: int = 60, seed: int = 0) -> list[float]:
    """CLIP's symmetric contrastive loss on (view of class k, "a photo of a k.") pairs."""
    names = list(CLASSES)
    prompts = [f"a photo of a {n}." for n in names]
    text_inputs = processor.tokenizer(prompts, padding=True, return_tensors="pt")
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    model.train()
    losses = []
    for step in range(steps):
        images = [_view(CLASSES[n], seed=1000 * seed + 10 * step + k) for k, n in enumerate(names)]
        pixels = processor.image_processor(images=images, return_tensors="pt")["pixel_values"]
        out = model(input_ids=text_inputs["input_ids"], attention_mask=text_inputs["attention_mask"], pixel_values=pixels,
                    return_loss=True)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        losses.append(out.loss.item())
    model.eval()
    return losses


@pytest.fixture(scope="module")
def random_clip_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("clip_random")
    model, processor = _tiny_clip(root)
    return _save(model, processor, root / "weights")


@pytest.fixture(scope="module")
def trained_clip_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("clip_trained")
    model, processor = _tiny_clip(root, seed=1)
    losses = _train(model, processor)
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5]), losses  # it learnt something
    return _save(model, processor, root / "weights")


def _item(*images, names=None, object_id="obj_0") -> LabelItem:
    names = names or tuple(f"views/{object_id}_{i}.png" for i in range(len(images)))
    return LabelItem(object_id=object_id, images=tuple(images), view_names=tuple(names))


# ------------------------------------------------------------------------------------ 1. loading
def test_loads_from_a_saved_directory_and_answers_from_the_vocabulary(random_clip_dir):
    labeller = ClipLabeller(ClipLabellerConfig(weights=random_clip_dir))
    assert isinstance(labeller, Labeller) and labeller.name == "clip" and labeller.needs_views is True
    assert not labeller.model.training
    views = (_view((120, 80, 40), 1), _view((120, 80, 40), 2, size=48))
    item = _item(*views, names=("views/obj_0_a.png", "render:az=30,el=20"))
    vocabulary = ["mug", "Bowls", "a chair"]  # normalised like any vocabulary: mug, bowl, chair
    ans = labeller.label(item, vocabulary)
    assert ans.label in {"mug", "bowl", "chair"}
    assert ans.backend == "clip" and ans.model == str(random_clip_dir)
    assert ans.views == ("views/obj_0_a.png", "render:az=30,el=20")
    assert 0.0 < ans.score <= 1.0
    # raw: the top-3 entries with their probabilities, best first; they sum to 1 over the vocabulary
    parts = [p.rsplit(" ", 1) for p in ans.raw.split(", ")]
    assert [p[0] for p in parts][0] == ans.label and sorted(p[0] for p in parts) == ["bowl", "chair", "mug"]
    probs = [float(p[1]) for p in parts]
    assert probs == sorted(probs, reverse=True) and sum(probs) == pytest.approx(1.0, abs=2e-3)
    assert probs[0] == pytest.approx(ans.score, abs=1e-3)
    # deterministic: the same item gives the same answer; the weights are those saved
    again = labeller.label(item, vocabulary)
    assert (again.label, again.score) == (ans.label, ans.score)


# ------------------------------------------------------------------------------------ 2. discrimination
def test_trained_tiny_clip_labels_by_what_the_views_show(trained_clip_dir):
    labeller = LABELLERS.create("clip", config=ClipLabellerConfig(weights=trained_clip_dir))
    vocabulary = ["mug", "bowl", "chair"]
    for k, (name, colour) in enumerate(CLASSES.items()):
        for seed in (501 + k, 601 + k):  # views not seen in training
            ans = labeller.label(_item(_view(colour, seed)), vocabulary)
            assert ans.label == name, (name, ans.raw)
            assert ans.score > 0.5, ans.raw
    # the vocabulary's order does not matter, and a sub-vocabulary still discriminates
    assert labeller.label(_item(_view(CLASSES["bowl"], 77)), ["chair", "bowl", "mug"]).label == "bowl"
    assert labeller.label(_item(_view(CLASSES["mug"], 78)), ["bowl", "mug"]).label == "mug"
    # multi-view: several views of one object (the mean embedding; its exact value is checked below)
    for name, colour in CLASSES.items():
        ans = labeller.label(_item(*(_view(colour, 700 + s, size=32 + 8 * s) for s in range(3))), vocabulary)
        assert ans.label == name and len(ans.views) == 3, ans.raw
    # the same view twice is that view once: normalised embeddings are averaged, not summed
    one, twice = (labeller.label(_item(*[_view(CLASSES["chair"], 9)] * n), vocabulary) for n in (1, 2))
    assert twice.label == one.label == "chair" and twice.score == pytest.approx(one.score, abs=1e-6)


def test_multi_view_probabilities_match_a_hand_computation(random_clip_dir):
    from transformers import CLIPModel, CLIPProcessor

    labeller = ClipLabeller(weights=random_clip_dir, prompt_template="a photo of a {}.")
    views = [_view(CLASSES["mug"], 11), _view(CLASSES["bowl"], 12), _view((200, 200, 40), 13)]
    vocabulary = ["mug", "bowl", "chair"]
    ans = labeller.label(_item(*views), vocabulary)

    model = CLIPModel.from_pretrained(str(random_clip_dir)).eval()
    proc = CLIPProcessor.from_pretrained(str(random_clip_dir))
    with torch.no_grad():
        img = model.get_image_features(pixel_values=proc.image_processor(images=views, return_tensors="pt")["pixel_values"])
        img = getattr(img, "pooler_output", img)
        txt_in = proc.tokenizer([f"a photo of a {v}." for v in vocabulary], padding=True, return_tensors="pt")
        txt = model.get_text_features(**txt_in)
        txt = getattr(txt, "pooler_output", txt)
        img = img / img.norm(dim=-1, keepdim=True)
        mean = img.mean(0)
        mean = mean / mean.norm()
        txt = txt / txt.norm(dim=-1, keepdim=True)
        probs = torch.softmax(model.logit_scale.exp() * (txt @ mean), dim=-1).numpy()
    assert ans.label == vocabulary[int(np.argmax(probs))]
    assert ans.score == pytest.approx(float(probs.max()), abs=1e-5)
    np.testing.assert_allclose(labeller.probabilities(views, vocabulary), probs, atol=1e-5)
    # the views' embedding is the normalised mean of the normalised per-view embeddings, not one view's
    torch.testing.assert_close(labeller.image_embedding(views), mean, atol=1e-5, rtol=0)
    assert (labeller.image_embedding(views[:1]) - mean).abs().max() > 1e-3
    assert np.abs(labeller.probabilities(views[:1], vocabulary) - probs).max() > 1e-4


def test_text_embeddings_are_cached_per_vocabulary(random_clip_dir):
    labeller = ClipLabeller(weights=random_clip_dir)
    calls = []
    original = labeller.model.get_text_features

    def counting(*args, **kwargs):
        calls.append(kwargs["input_ids"].shape[0])
        return original(*args, **kwargs)

    labeller.model.get_text_features = counting
    view = _view((100, 100, 100), 3)
    for i in range(4):  # every object of a scene, one vocabulary
        labeller.label(_item(view, object_id=f"obj_{i}"), ["mug", "bowl", "chair"])
    assert calls == [3]
    labeller.label(_item(view), ["mug", "lamp"])
    assert calls == [3, 2]
    labeller.label(_item(view), ["mugs", "bowl", "chair"])  # normalises to the cached vocabulary
    assert calls == [3, 2]
    # a prompt ensemble encodes once per template, and still answers from the vocabulary
    ensemble = ClipLabeller(weights=random_clip_dir, prompt_template=("a photo of a {}.", "a {}."))
    ans = ensemble.label(_item(view), ["mug", "bowl"])
    assert ans.label in {"mug", "bowl"} and 0.0 < ans.score <= 1.0


# ------------------------------------------------------------------------------------ 3. errors
def test_missing_or_incomplete_weights_raise_backend_error(tmp_path, random_clip_dir):
    missing = tmp_path / "no_such_clip"
    with pytest.raises(BackendError, match="no_such_clip"):
        ClipLabeller(ClipLabellerConfig(weights=missing))
    with pytest.raises(BackendError, match="label.clip.weights"):
        LABELLERS.create("clip", config=ClipLabellerConfig(weights=missing))
    with pytest.raises(BackendError, match="needs weights"):
        ClipLabeller()
    empty = tmp_path / "empty_dir"
    empty.mkdir()
    with pytest.raises(BackendError, match=r"empty_dir.*config\.json.*model weights"):
        ClipLabeller(weights=empty)
    # a model without its processor: the error names what is missing
    no_proc = tmp_path / "model_only"
    no_proc.mkdir()
    for f in ("config.json", "model.safetensors"):
        (no_proc / f).write_bytes((random_clip_dir / f).read_bytes())
    with pytest.raises(BackendError, match=r"model_only.*tokenizer.*image processor"):
        ClipLabeller(weights=no_proc)
    with pytest.raises(TypeError, match="unknown"):
        ClipLabeller(weights=random_clip_dir, temperature=2.0)
    with pytest.raises(ValueError, match="prompt_template"):
        ClipLabellerConfig(weights=random_clip_dir, prompt_template="a photo")


def test_no_vocabulary_no_images_and_low_score_raise_label_error(random_clip_dir):
    labeller = ClipLabeller(weights=random_clip_dir)
    view = _view((90, 140, 200), 5)
    for vocabulary in (None, [], ["", "  "]):
        with pytest.raises(LabelError, match="vocabulary"):
            labeller.label(_item(view), vocabulary)
    with pytest.raises(LabelError, match="view"):
        labeller.label(_item(), ["mug", "bowl"])
    with pytest.raises(LabelError, match="RGB"):
        labeller.label(_item(np.zeros((4, 4, 2), np.uint8)), ["mug", "bowl"])
    # min_score: below it the labeller declines (the stage falls back)
    score = labeller.label(_item(view), ["mug", "bowl", "chair"]).score
    assert score < 0.999
    strict = ClipLabeller(weights=random_clip_dir, min_score=min(1.0, score + 1e-3))
    with pytest.raises(LabelError, match="min_score"):
        strict.label(_item(view), ["mug", "bowl", "chair"])


# ------------------------------------------------------------------------------------ 4. registry
def test_registry_creates_the_clip_labeller(random_clip_dir):
    assert "clip" in LABELLERS.names()
    by_config = LABELLERS.create("clip", config=ClipLabellerConfig(weights=random_clip_dir, device="cpu"))
    by_kwargs = LABELLERS.create("clip", weights=str(random_clip_dir), min_score=0.1)
    assert isinstance(by_config, ClipLabeller) and isinstance(by_kwargs, ClipLabeller)
    assert by_kwargs.config.min_score == 0.1 and by_kwargs.config.prompt_template == "a photo of a {}."
    overridden = ClipLabeller(ClipLabellerConfig(weights=random_clip_dir), min_score=0.2)
    assert overridden.config.min_score == 0.2 and overridden.weights == random_clip_dir
