"""Benchmark: embedding throughput of the full pipeline beside a bare VGG-16 forward pass.

Prints one JSON object with, side by side in one run on this machine:

- ``pipeline``: lesions/s of :meth:`Embedder.embed` on the REAL DeepLesion key slices in
  ``../shared/data/deeplesion/images`` (read 16-bit PNGs, stack slices, resample both crops,
  window, VGG-16 forward, RoI-align of four layers, pooling, normalisation);
- ``bare``: lesions/s of torchvision's ``vgg16_bn().features`` forward alone on random tensors of
  the same shape (lesions x crops x 3 x S x S), i.e. the network's cost with no input pipeline;
- their ratio (target >= 0.8), the process's peak RSS, and the time of one training step
  (24 five-lesion sequences, forward + backward + SGD) at the same input size.

The two measurements alternate (pipeline, bare, pipeline, bare, ...) and medians are reported, so
that machine noise hits both alike. The network is randomly initialised: speed does not depend on
the weights.

    python bench/embed_throughput.py [--crop-size 64] [--lesions 192] [--repeats 3]
"""

from __future__ import annotations

import argparse
import csv
import json
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torchvision

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe

from lesionkg.model.checkpoint import save_checkpoint
from lesionkg.model.embedder import KIND, Embedder
from lesionkg.model.losses import sequential_triplet_loss
from lesionkg.model.network import LesionEmbedder, NetworkConfig
from lesionkg.model.training import TrainConfig
from lesionkg.model.transforms import CropSpec, InputConfig, LesionImage

IMAGES = Path(__file__).resolve().parents[2] / "shared" / "data" / "deeplesion" / "images"


def _real_lesions(n: int) -> list[LesionImage]:
    with open(IMAGES / "images_DL_info_rows.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    lesions = []
    for row in rows:
        box = tuple(float(v) for v in row["Bounding_boxes"].split(","))
        sx, sy, _ = (float(v) for v in row["Spacing_mm_px_"].split(","))
        path = IMAGES / row["File_name"]
        lesions.append(LesionImage(row["File_name"], row["File_name"], path, box, (sx, sy)))
    return [lesions[i % len(lesions)] for i in range(n)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--crop-size", type=int, default=64)
    parser.add_argument("--lesions", type=int, default=192)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if not IMAGES.is_dir():
        raise SystemExit(f"the real key slices are missing: {IMAGES}")

    torch.manual_seed(0)
    inputs = InputConfig((CropSpec(args.crop_size, 1.0), CropSpec(args.crop_size, 2.0, "crop")))
    config = TrainConfig(input=inputs)
    net = LesionEmbedder(NetworkConfig())
    with tempfile.TemporaryDirectory() as tmp:
        save_checkpoint(Path(tmp), KIND, config.to_json(), {"network": net.state_dict()}, {})
        embedder = Embedder.load(Path(tmp), device="cpu")
    lesions = _real_lesions(args.lesions)
    bare_net = torchvision.models.vgg16_bn(weights=None).features.eval()
    crops = len(inputs.crops)
    shape = (args.batch_size * crops, 3, args.crop_size, args.crop_size)
    batches = -(-args.lesions // args.batch_size)

    def run_pipeline() -> float:
        started = time.perf_counter()
        embedder.embed(lesions, batch_size=args.batch_size)
        return args.lesions / (time.perf_counter() - started)

    @torch.no_grad()
    def run_bare() -> float:
        x = torch.randn(shape)
        started = time.perf_counter()
        for _ in range(batches):
            bare_net(x)
        return batches * args.batch_size / (time.perf_counter() - started)

    embedder.embed(lesions[: args.batch_size], batch_size=args.batch_size)  # warm-up
    run_bare()
    pipeline, bare = [], []
    for _ in range(args.repeats):
        pipeline.append(run_pipeline())
        bare.append(run_bare())

    train_net = LesionEmbedder(NetworkConfig()).train()
    opt = torch.optim.SGD(train_net.parameters(), lr=0.002, momentum=0.9)
    n = config.sequences_per_batch * 5
    x = torch.randn(n, crops, 3, args.crop_size, args.crop_size)
    box = torch.tensor([args.crop_size * 0.3] * 2 + [args.crop_size * 0.7] * 2)
    boxes = box.expand(n, crops, 4)
    step_seconds = []
    for _ in range(2):
        started = time.perf_counter()
        loss = sequential_triplet_loss(train_net(x, boxes).view(-1, 5, 1408))
        opt.zero_grad()
        loss.backward()
        opt.step()
        step_seconds.append(time.perf_counter() - started)

    p, b = statistics.median(pipeline), statistics.median(bare)
    print(
        json.dumps(
            {
                "benchmark": "embed_throughput",
                "data": f"{args.lesions} embeddings of the {len(set(lesions))} REAL DeepLesion "
                "key slices in shared/data/deeplesion/images (cycled)",
                "input": {"crops": inputs.to_json()["crops"], "batch_size": args.batch_size},
                "pipeline_lesions_per_s": round(p, 2),
                "bare_vgg16_forward_lesions_per_s": round(b, 2),
                "pipeline_over_bare": round(p / b, 3),
                "target_ratio": 0.8,
                "runs": {
                    "pipeline": [round(v, 2) for v in pipeline],
                    "bare": [round(v, 2) for v in bare],
                },
                "training_step_seconds": round(min(step_seconds), 2),
                "training_step": f"{n // 5} sequences x 5 lesions x {crops} crops",
                "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                "torch_threads": torch.get_num_threads(),
                "machine": describe(),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
