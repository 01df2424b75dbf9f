"""Image batches for the embedders: a torchvision pipeline that ends in ToTensor and Normalize, run once per batch.

The PIL steps (resize, crop, mode) still run image by image; the tensor steps run once on the whole batch's pixels
(one uint8 array, converted and normalised in place) instead of a few small tensor operations per image, which on a
2-core CPU cost as much as the model itself on small pages. The arithmetic is the same (x / 255, then - mean, / std,
in float32), so the numbers are identical to the per-image pipeline's. The batch comes out NCHW in channels_last
memory (the pixels' own NHWC order), which convolution kernels on CPU run fastest."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from PIL import Image


class BatchTransform:
    """`pipeline` applied to a batch of PIL images: one float32 NCHW tensor in channels_last memory."""

    def __init__(self, pipeline: Callable[[Image.Image], Any]) -> None:
        from torchvision.transforms import Normalize, ToTensor

        self.pipeline = pipeline
        steps = list(getattr(pipeline, "transforms", ()))
        self.batched = len(steps) >= 2 and isinstance(steps[-2], ToTensor) and isinstance(steps[-1], Normalize)
        # open_clip's MaybeToTensor is a ToTensor: on a PIL image it does the same
        self.image_steps = steps[:-2] if self.batched else []
        self.tensor_steps = steps[-2:] if self.batched else []
        if self.batched:
            self.mean, self.std = steps[-1].mean, steps[-1].std

    def __call__(self, images: Sequence[Image.Image]) -> Any:
        import torch

        if not self.batched:
            return torch.stack([self.pipeline(image) for image in images]).contiguous(memory_format=torch.channels_last)
        prepared = [self._image_steps(image) for image in images]
        first = prepared[0]
        if not all(isinstance(p, Image.Image) and p.mode == "RGB" and p.size == first.size for p in prepared):
            # a pipeline that leaves other modes or sizes: its own tensor steps, image by image
            return torch.stack([self._tensor_steps(p) for p in prepared]).contiguous(memory_format=torch.channels_last)
        pixels = torch.from_numpy(np.stack([np.asarray(p) for p in prepared]))  # N, H, W, 3 uint8
        batch = pixels.permute(0, 3, 1, 2).float().div(255)  # ToTensor's arithmetic; strides stay NHWC
        mean = torch.as_tensor(self.mean, dtype=batch.dtype).view(1, -1, 1, 1)
        std = torch.as_tensor(self.std, dtype=batch.dtype).view(1, -1, 1, 1)
        return batch.sub_(mean).div_(std)  # Normalize's arithmetic

    def _image_steps(self, image: Any) -> Any:
        for step in self.image_steps:
            image = step(image)
        return image

    def _tensor_steps(self, image: Any) -> Any:
        for step in self.tensor_steps:
            image = step(image)
        return image
