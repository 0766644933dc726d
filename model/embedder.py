"""A trained lesion embedder loaded from a checkpoint: images in, 1408-D unit vectors out."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from lesionkg.model.checkpoint import load_checkpoint
from lesionkg.model.device import resolve_device
from lesionkg.model.network import EMBEDDING_DIM, LesionEmbedder, NetworkConfig
from lesionkg.model.transforms import InputConfig, LesionImage

KIND = "triplet"


@dataclass
class Embedder:
    """The network in eval mode, its input pipeline and the checkpoint's sha256."""

    network: LesionEmbedder
    inputs: InputConfig
    sha256: str
    device: torch.device

    @classmethod
    def load(cls, model_dir: Path, device: str = "auto") -> Embedder:
        """The embedder saved in ``model_dir`` (a ``kind: triplet`` checkpoint)."""
        ckpt = load_checkpoint(model_dir, kind=KIND)
        network = LesionEmbedder(NetworkConfig.from_json(ckpt.config["network"]))
        network.load_state_dict(ckpt.state_dicts["network"])
        dev = resolve_device(device)
        network.to(dev).eval()
        return cls(network, InputConfig.from_json(ckpt.config["input"]), ckpt.sha256, dev)

    @torch.no_grad()
    def embed_arrays(self, crops: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """``float32 (N, 1408)`` from prepared crops ``(N, C, 3, S, S)`` and boxes ``(N, C, 4)``."""
        out = self.network(
            torch.as_tensor(crops, dtype=torch.float32, device=self.device),
            torch.as_tensor(boxes, dtype=torch.float32, device=self.device),
        )
        return out.cpu().numpy()

    def embed(
        self,
        lesions: Sequence[LesionImage],
        batch_size: int = 32,
        on_batch: Callable[[int], None] | None = None,
    ) -> np.ndarray:
        """Embeddings ``float32 (N, 1408)`` of ``lesions``, in their order.

        Reading and cropping the next batch (in a thread: PNG decoding releases the GIL) overlaps
        the network's forward pass on the current one. ``on_batch(n)`` reports progress.
        """
        out = np.empty((len(lesions), EMBEDDING_DIM), dtype=np.float32)
        if not lesions:
            return out
        batches = [lesions[i : i + batch_size] for i in range(0, len(lesions), batch_size)]
        with ThreadPoolExecutor(max_workers=1) as pool:
            pending = pool.submit(_prepare_batch, self.inputs, batches[0])
            start = 0
            for i in range(len(batches)):
                crops, boxes = pending.result()
                if i + 1 < len(batches):
                    pending = pool.submit(_prepare_batch, self.inputs, batches[i + 1])
                out[start : start + len(crops)] = self.embed_arrays(crops, boxes)
                start += len(crops)
                if on_batch is not None:
                    on_batch(len(crops))
        return out


def _prepare_batch(
    inputs: InputConfig, batch: Sequence[LesionImage]
) -> tuple[np.ndarray, np.ndarray]:
    prepared = [inputs.prepare(lesion) for lesion in batch]
    return np.stack([c for c, _ in prepared]), np.stack([b for _, b in prepared])
