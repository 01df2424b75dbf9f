"""The embedders' fast CPU path (batched tensor conversion, the vision tower on OpenVINO) gives the numbers the
plain path gave: each image through the preprocessing written out here (the code before the change), stacked
contiguous, through the model in contiguous memory. Real images from the sample inbox and the corpus, plus
generated ones in every mode and shape Pillow hands over; the real EfficientNet-Lite0 weights and a random tiny
open_clip ViT."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw
from torchvision import transforms

from schemas.settings import load_settings
from tasks.classify.prototypes import embedder_spec
from tasks.models.embedders import ClipEmbedder, TimmEmbedder, load_embedder
from tests.integration.conftest import TINY_CLIP

PACKAGED_MEAN_STD = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))  # pkg:efficientnet-lite0's training normalisation


def _generated(folder: Path) -> list[Path]:
    """Pages of the shapes and modes a bucket holds: tall receipts, wide strips, tiny, palette, grey, alpha, CMYK."""
    folder.mkdir()
    files = []
    shapes = [(240, 320), (480, 360), (80, 900), (1200, 40), (1, 1), (1600, 1200)]
    modes = ["RGB", "L", "RGBA", "P", "CMYK", "1"]
    for n, ((width, height), mode) in enumerate(zip(shapes, modes, strict=True)):
        image = Image.linear_gradient("L").resize((width, height)).convert("RGB")
        draw = ImageDraw.Draw(image)
        draw.rectangle((width // 4, height // 4, width // 2, height // 2), fill=(200, 30, 90))
        draw.text((2, 2), "TOTAL 12.50", fill=(0, 0, 0))
        suffix = ".jpg" if mode in ("RGB", "L", "CMYK") else ".png"
        path = folder / f"gen{n}-{mode}{suffix}"
        image.convert(mode).save(path)
        files.append(path)
    return files


@pytest.fixture(scope="module")
def images(sample_inbox: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    real = sorted(p for p in sample_inbox.rglob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    corpus = Path(__file__).resolve().parents[2].parent / "shared" / "corpus" / "image"
    seen = {p.name for p in real}
    real += sorted(p for p in corpus.glob("*") if p.suffix.lower() in (".png", ".jpg") and p.name not in seen)
    real = [p for p in real if _decodes(p)]  # the inboxes' damaged files fail before the embedder
    assert len(real) >= 4
    return real + _generated(tmp_path_factory.mktemp("generated") / "pages")


def _decodes(path: Path) -> bool:
    try:
        with Image.open(path) as image:
            image.load()
    except (OSError, Image.DecompressionBombError):
        return False
    return True


def _open_as_before(path: Path, side: int) -> Image.Image:
    with Image.open(path) as image:
        image.draft("RGB", (side * 2, side * 2))
        return image.convert("RGB")


def _plain_embeddings(embedder: ClipEmbedder | TimmEmbedder, pixels: list[torch.Tensor], batch_size: int) -> np.ndarray:
    """The code before the fast path: a stack of per-image tensors, contiguous, through a contiguous model."""
    model: Any = copy.deepcopy(embedder.model).to(memory_format=torch.contiguous_format)
    encode = model.encode_image if isinstance(embedder, ClipEmbedder) else model
    out = []
    with torch.inference_mode():
        for start in range(0, len(pixels), batch_size):
            batch = torch.stack(pixels[start : start + batch_size])
            assert batch.is_contiguous()
            out.append(torch.nn.functional.normalize(encode(batch).float(), dim=-1).numpy())
    return np.concatenate(out)


def test_efficientnet_embeddings_are_the_plain_paths(images: list[Path]) -> None:
    # batches of 4 and a shorter last one; float32 pinned: dtype auto computes in bfloat16 where the CPU has it
    settings = load_settings(classify_batch_size=4, model_dtype="float32")
    embedder = TimmEmbedder(embedder_spec(settings.classifier, settings.device))  # torch's transform, not a kept one
    assert embedder.model_id == "timm:efficientnet_lite0:pkg:efficientnet-lite0"
    assert embedder.on_openvino is not None
    before = transforms.Compose(
        [
            transforms.Resize((224, 224), interpolation=transforms.InterpolationMode.BICUBIC),
            transforms.ToTensor(),
            transforms.Normalize(*PACKAGED_MEAN_STD),
        ]
    )
    opened = [_open_as_before(p, 224) for p in images]
    pixels = [before(image) for image in opened]

    batch = embedder._batch(opened)
    assert batch.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(batch, torch.stack(pixels))  # the same pixels, to the bit
    fast = embedder.embed_images(images)
    plain = _plain_embeddings(embedder, pixels, batch_size=4)
    np.testing.assert_allclose(fast, plain, atol=1e-4, rtol=0)
    # PIL images in memory go the same way as files
    np.testing.assert_allclose(embedder.embed_images(opened[:3]), plain[:3], atol=1e-4, rtol=0)


def test_clip_embeddings_are_the_plain_paths(images: list[Path], tmp_path: Path) -> None:
    import json

    config = tmp_path / "docflow-tiny-clip.json"
    config.write_text(json.dumps(TINY_CLIP))
    settings = load_settings(
        classifier="clip",
        clip_model=str(config),
        clip_pretrained="",
        class_examples="",
        classify_batch_size=5,
        model_dtype="float32",  # the plain path is torch in float32
    )
    embedder = load_embedder(embedder_spec(settings.classifier, settings.device))
    assert isinstance(embedder, ClipEmbedder)
    assert embedder.on_openvino is not None
    preprocess = embedder.preprocess  # open_clip's own per-image transform
    opened = [_open_as_before(p, embedder.input_side) for p in images]
    pixels = [preprocess(image) for image in opened]

    assert torch.equal(embedder._batch(opened), torch.stack(pixels))
    np.testing.assert_allclose(
        embedder.embed_images(images), _plain_embeddings(embedder, pixels, batch_size=5), atol=1e-4, rtol=0
    )
