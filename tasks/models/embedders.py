"""Image embedders for classification, loaded once per worker (cached by the frozen spec).

Two kinds share one API: open_clip models put images and text in one space (so zero-shot prompts work), plain timm
backbones embed images only (classification then needs example images per label). Outputs are L2-normalised
float32 arrays; images go through the model in batches, in half precision on CUDA. Models and batches are in
channels_last memory: on CPU the convolutions of EfficientNet-Lite0 ran 1.7x faster so (the same numbers to float
rounding; a ViT's one convolution neither gains nor loses), and on CUDA it is the layout tensor cores prefer. On a
CPU in float32 the vision tower runs on OpenVINO where it converts (tasks/models/openvino_vision.py: 2.8 times
less CPU a page than torch on EfficientNet-Lite0, the same vectors to 1e-5; with dtype auto in bfloat16 where the
CPU computes it natively, 2.2 times less again)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image

from schemas.defaults import CLASSIFY_BATCH_SIZE, model_cache_dir, usable_cores
from schemas.errors import ConfigError
from storage.batching import chunked
from tasks.models import bundled
from tasks.models.cache import load_cached
from tasks.models.devices import runs_on_cpu, torch_device, torch_dtype
from tasks.models.image_batches import BatchTransform
from tasks.models.openvino_vision import fingerprint, openvino_tower
from tasks.models.tower_recipes import RECIPE_FOLDER, TowerRecipe, read_recipe, recipe_path, write_recipe
from tasks.preprocess.openvino_session import OpenVinoSession, Precision

RANDOM_SEED = 0  # random-weight models (tests) are seeded, so their embeddings are stable and cacheable
HUB = "hub"  # timm weights setting: download the model's default pretrained weights

# Normalisation of packaged checkpoints whose training differs from timm's default for the architecture.
_PACKAGED_NORMALISATION = {"pkg:efficientnet-lite0": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))}


@dataclass(frozen=True)
class EmbedderSpec:
    """Which weights, where, how: the model cache key."""

    kind: Literal["clip", "timm"]
    model: str
    weights: str | None  # clip: pretrained tag or checkpoint; timm: pkg:NAME, checkpoint, 'hub'; None: random
    device: str = "auto"
    dtype: str = "auto"
    batch_size: int = CLASSIFY_BATCH_SIZE
    cache_dir: Path = field(default_factory=model_cache_dir)
    openvino: bool = True  # on a CPU in float32: the vision tower on OpenVINO where it converts (False: torch)

    @property
    def model_id(self) -> str:
        weights = self.weights or f"random-seed{RANDOM_SEED}"
        return f"{'open_clip' if self.kind == 'clip' else 'timm'}:{self.model}:{weights}"


def _open_rgb(source: Path | Image.Image, side: int) -> Image.Image:
    if isinstance(source, Image.Image):
        return source.convert("RGB")
    with Image.open(source) as image:
        image.draft("RGB", (side * 2, side * 2))  # JPEG: decode at a fraction of full size, far cheaper
        return image.convert("RGB")


class Embedder:
    """The shared half: batching, device placement, normalisation. Subclasses provide the model and transform."""

    model_id: str
    supports_text: bool = False
    logit_scale: float | None = None

    def __init__(self, spec: EmbedderSpec) -> None:
        self.spec = spec
        self.model_id = spec.model_id
        self.device = torch_device(spec.device)
        self.dtype = torch_dtype(spec.dtype, self.device)
        self.input_side = 224
        self.calls = 0  # images through the model, for the embedding-cache tests and benchmarks
        self.on_openvino: OpenVinoSession | None = None

    def _offer_to_openvino(self, tower: Any) -> None:
        """Run `tower` (what `_encode` calls on a batch) on OpenVINO instead, on a CPU in float32: with dtype auto in
        OpenVINO's own precision for the CPU (bfloat16 where it computes it natively), with float32 in float32."""
        import torch

        if self.spec.openvino and self.device == "cpu" and self.dtype == torch.float32:
            threads = torch.get_num_threads()
            precision = _openvino_precision(self.spec)
            self.on_openvino = openvino_tower(tower, self.input_side, self.spec.cache_dir, threads, precision)

    def _transform(self, image: Image.Image) -> Any:
        raise NotImplementedError

    def _batch(self, images: Sequence[Image.Image]) -> Any:
        """The model's input for a batch of images: the transform of each, stacked (subclasses batch it faster)."""
        import torch

        return torch.stack([self._transform(image) for image in images])

    def _encode(self, batch: Any) -> Any:
        raise NotImplementedError

    def _forward(self, batch: Any) -> Any:
        """One batch through the vision tower: on OpenVINO where it runs there, else torch on the device."""
        import torch

        if self.on_openvino is not None:
            return torch.from_numpy(self.on_openvino(batch.contiguous().numpy()))
        with torch.inference_mode():
            return self._encode(batch.to(self.device, self.dtype, memory_format=torch.channels_last))

    def embed_images(self, images: Sequence[Path | Image.Image]) -> np.ndarray:
        import torch

        out = []
        for chunk in chunked(images, self.spec.batch_size):
            vectors = self._forward(self._batch([_open_rgb(i, self.input_side) for i in chunk]))
            out.append(torch.nn.functional.normalize(vectors.float(), dim=-1).cpu().numpy())
            self.calls += len(chunk)
        return np.concatenate(out) if out else np.zeros((0, 0), dtype=np.float32)

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        raise ConfigError(f"{self.model_id} embeds images only: zero-shot labels need a CLIP model")


class ClipEmbedder(Embedder):
    supports_text = True

    def __init__(self, spec: EmbedderSpec) -> None:
        super().__init__(spec)
        import open_clip
        import torch

        name = spec.model
        if name.endswith(".json"):  # a model config file: an architecture open_clip does not ship
            path = Path(name)
            if not path.is_file():
                raise ConfigError(f"DOCFLOW_CLIP_MODEL: config file {name} not found")
            open_clip.add_model_config(path)
            name = path.stem
        precision = {torch.float16: "fp16", torch.bfloat16: "bf16"}.get(self.dtype, "fp32")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(RANDOM_SEED)
            model, _, preprocess = open_clip.create_model_and_transforms(
                name,
                pretrained=spec.weights or None,
                device=self.device,
                precision=precision,
                cache_dir=str(spec.cache_dir / "open_clip"),
            )
        self.model = model.eval().to(memory_format=torch.channels_last)
        self.preprocess = preprocess
        self.batch_transform = BatchTransform(preprocess)
        self.tokenizer = open_clip.get_tokenizer(name)
        self.logit_scale = float(model.logit_scale.exp().item())
        size = getattr(model.visual, "image_size", 224)
        self.input_side = max(size) if isinstance(size, (tuple, list)) else int(size)
        # fp16/bf16 precision keeps some layers in fp32: feed images in the dtype of the vision tower's weights
        self.dtype = next(model.visual.parameters()).dtype
        self._offer_to_openvino(model.visual)  # encode_image(x) is visual(x)

    def _transform(self, image: Image.Image) -> Any:
        return self.preprocess(image)

    def _batch(self, images: Sequence[Image.Image]) -> Any:
        return self.batch_transform(images)

    def _encode(self, batch: Any) -> Any:
        return self.model.encode_image(batch)

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        import torch

        with torch.inference_mode():
            tokens = self.tokenizer(list(texts)).to(self.device)
            vectors = self.model.encode_text(tokens)
        return torch.nn.functional.normalize(vectors.float(), dim=-1).cpu().numpy()


class TimmEmbedder(Embedder):
    """A timm image backbone's pooled features. Pages are resized to the input square whole, not cropped: a
    receipt's long thin shape and a page's margins are part of what it is. bench/classify.py measured squashing
    at 0.74 accuracy, white letterboxing at 0.70 (centre-cropping loses most of a receipt)."""

    def __init__(self, spec: EmbedderSpec) -> None:
        super().__init__(spec)
        import timm
        import torch
        from torchvision import transforms

        try:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(RANDOM_SEED)
                model = timm.create_model(spec.model, pretrained=spec.weights == HUB, num_classes=0)
        except RuntimeError as exc:  # timm's "Unknown model"
            raise ConfigError(f"DOCFLOW_IMAGE_EMBEDDER: {exc}") from None
        if spec.weights and spec.weights != HUB:
            path = bundled.resolve(spec.weights, spec.cache_dir)
            state = torch.load(path, map_location="cpu", weights_only=True)
            model.load_state_dict(match_state_dict(state, model.state_dict()), strict=False)
        self.model = model.eval().to(self.device, self.dtype).to(memory_format=torch.channels_last)
        config = timm.data.resolve_data_config({}, model=model)
        mean, std = _PACKAGED_NORMALISATION.get(spec.weights or "", (config["mean"], config["std"]))
        self.input_side = int(config["input_size"][-1])
        self.pipeline = transforms.Compose(
            [
                transforms.Resize(
                    (self.input_side, self.input_side), interpolation=transforms.InterpolationMode.BICUBIC
                ),
                transforms.ToTensor(),
                transforms.Normalize(mean, std),
            ]
        )
        self.batch_transform = BatchTransform(self.pipeline)
        self._offer_to_openvino(self.model)
        if self.on_openvino is not None and (recipe := _recipe_path(spec)) is not None:
            ir = spec.cache_dir / RECIPE_FOLDER / f"{fingerprint(self.model, self.input_side)}.xml"
            if ir.is_file():  # kept by openvino_tower: the next process needs no torch (KeptTowerEmbedder)
                write_recipe(recipe, TowerRecipe(ir.name, self.input_side, _channels(mean), _channels(std)))

    def _transform(self, image: Image.Image) -> Any:
        return self.pipeline(image)

    def _batch(self, images: Sequence[Image.Image]) -> Any:
        return self.batch_transform(images)

    def _encode(self, batch: Any) -> Any:
        return self.model(batch)


def match_state_dict(state: dict[str, Any], target: dict[str, Any]) -> dict[str, Any]:
    """Rename a checkpoint's keys to the model's. Same names: as is. Otherwise (another implementation of the same
    architecture, e.g. efficientnet-pytorch vs timm) tensors pair up in order, and every shape must agree; the
    checkpoint's extra trailing tensors (its classifier head) are dropped."""
    if set(target) <= set(state):
        return {k: state[k] for k in target}
    source = [(k, v) for k, v in state.items() if not k.endswith("num_batches_tracked")]
    wanted = [k for k in target if not k.endswith("num_batches_tracked")]
    if len(source) < len(wanted):
        raise ConfigError(f"checkpoint has {len(source)} tensors, the model needs {len(wanted)}: another architecture")
    mapped = {}
    for (name, tensor), key in zip(source, wanted, strict=False):
        if tuple(tensor.shape) != tuple(target[key].shape):
            raise ConfigError(
                f"checkpoint tensor {name} {tuple(tensor.shape)} does not fit {key} {tuple(target[key].shape)}: "
                "another architecture"
            )
        mapped[key] = tensor
    return mapped


class KeptTowerEmbedder(Embedder):
    """A timm backbone on a CPU from what an earlier process kept (tasks/models/tower_recipes.py): its converted
    tower on OpenVINO behind the same transform, in numpy (PIL's bicubic resize, x / 255, - mean, / std in float32:
    TimmEmbedder's arithmetic), so the vectors are TimmEmbedder's on OpenVINO, and neither torch nor timm is
    imported."""

    def __init__(self, spec: EmbedderSpec, recipe: TowerRecipe, ir: Path) -> None:
        self.spec = spec
        self.model_id = spec.model_id
        self.device = "cpu"
        self.input_side = recipe.input_side
        self.calls = 0
        self.mean = np.array(recipe.mean, np.float32)
        self.std = np.array(recipe.std, np.float32)
        self.on_openvino = OpenVinoSession(ir, usable_cores(), _openvino_precision(spec))

    def _pixels(self, images: Sequence[Image.Image]) -> np.ndarray:
        side = (self.input_side, self.input_side)
        resized = [image.resize(side, Image.Resampling.BICUBIC) for image in images]
        batch = np.stack([np.asarray(image) for image in resized]).astype(np.float32) / np.float32(255)
        return np.ascontiguousarray(((batch - self.mean) / self.std).transpose(0, 3, 1, 2))

    def embed_images(self, images: Sequence[Path | Image.Image]) -> np.ndarray:
        assert self.on_openvino is not None
        out = []
        for chunk in chunked(images, self.spec.batch_size):
            vectors = self.on_openvino(self._pixels([_open_rgb(i, self.input_side) for i in chunk]))
            out.append(vectors / np.maximum(np.linalg.norm(vectors, axis=-1, keepdims=True), 1e-12))
            self.calls += len(chunk)
        return np.concatenate(out).astype(np.float32) if out else np.zeros((0, 0), dtype=np.float32)


def _recipe_path(spec: EmbedderSpec) -> Path | None:
    """Where a kept tower's recipe for a timm `spec` on a CPU in float32 lives; None where there is none to keep or
    find (random or hub weights, a GPU, half precision, OpenVINO off)."""
    usable = spec.kind == "timm" and spec.openvino and spec.dtype in ("auto", "float32") and runs_on_cpu(spec.device)
    if not usable or not spec.weights or spec.weights == HUB:
        return None
    weights = Path(bundled.resolve(spec.weights, spec.cache_dir))
    return recipe_path(spec.model, weights, spec.cache_dir) if weights.is_file() else None


def _openvino_precision(spec: EmbedderSpec) -> Precision:
    """dtype auto: OpenVINO's own precision for the CPU (bfloat16 where it computes it natively); float32 pins it."""
    return "auto" if spec.dtype == "auto" else "f32"


def _channels(values: Sequence[float]) -> tuple[float, float, float]:
    return (float(values[0]), float(values[1]), float(values[2]))


def _build(spec: EmbedderSpec) -> Embedder:
    if (recipe := _recipe_path(spec)) is not None and (kept := read_recipe(recipe)) is not None:
        return KeptTowerEmbedder(spec, *kept)
    return ClipEmbedder(spec) if spec.kind == "clip" else TimmEmbedder(spec)


def load_embedder(spec: EmbedderSpec) -> Embedder:
    return load_cached("embedder", spec, lambda: _build(spec), f"image embedder {spec.model_id}")
