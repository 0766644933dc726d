"""Benchmark: retrieval quality of the trained triplet embedding beside the location-only baseline.

Generates a SYNTHETIC cohort with CT images, trains the triplet network on its train and val
splits, embeds the held-out test-split patients and prints one JSON object with type
precision@5 (other patients only) of

- the trained embedding,
- the same network untrained (random start: what training adds),
- the location-only baseline (DeepLesion's normalised x, y, z),

all computed in this run on the same lesions; then the same figures on the 24 REAL DeepLesion
lesions that have key-slice PNGs in ``../shared/data/deeplesion/images`` (a small sample of liver
and abdomen lesions from 10 patients: an indication, not a measurement).

    python bench/embedding_quality.py [--patients 100] [--steps 300] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe

from lesionkg.core.metrics import type_precision_at_k
from lesionkg.model.embedder import Embedder
from lesionkg.model.network import LesionEmbedder
from lesionkg.model.training import TrainConfig, TrainingSet, read_training_rows, train
from lesionkg.model.transforms import CropSpec, InputConfig
from lesionkg.synthetic.cohort import write_synthetic_dl_info

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "deeplesion" / "images"


def _scores(embedder: Embedder, untrained: Embedder, data: TrainingSet) -> dict:
    k = 5
    trained = embedder.embed(data.lesions)
    random_start = untrained.embed(data.lesions)
    return {
        "lesions": len(data.lesions),
        "patients": len(set(data.patients)),
        "type_precision_at_5": {
            "trained_embedding": round(
                type_precision_at_k(trained, data.types, data.patients, k), 4
            ),
            "untrained_network": round(
                type_precision_at_k(random_start, data.types, data.patients, k), 4
            ),
            "location_only": round(
                type_precision_at_k(data.location, data.types, data.patients, k), 4
            ),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=100)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--sequences", type=int, default=8)
    parser.add_argument("--lr", type=float, default=0.02)
    parser.add_argument("--crop-size", type=int, default=32)
    parser.add_argument("--workdir", type=Path, default=None, help="keep cohort and model here")
    args = parser.parse_args()

    work = args.workdir or Path(tempfile.mkdtemp(prefix="lesionkg-quality-"))
    cohort_dir = work / "cohort"
    started = time.perf_counter()
    cohort = write_synthetic_dl_info(
        cohort_dir, patients=args.patients, seed=args.seed, images=True
    )
    generate_s = time.perf_counter() - started
    rows = read_training_rows(cohort.csv_path, None)
    fit = TrainingSet.from_records([r for r in rows if r.split != "test"], cohort_dir)
    held_out = TrainingSet.from_records([r for r in rows if r.split == "test"], cohort_dir)
    inputs = InputConfig((CropSpec(args.crop_size, 1.0), CropSpec(args.crop_size, 3.0, "crop")))
    config = TrainConfig(
        seed=args.seed,
        steps=args.steps,
        sequences_per_batch=args.sequences,
        lr=args.lr,
        input=inputs,
    )
    result = train(fit, work / "model", config, progress=True)
    embedder = Embedder.load(work / "model")
    torch.manual_seed(args.seed)
    untrained = Embedder(
        LesionEmbedder(config.network).eval(), inputs, "untrained", embedder.device
    )

    real_rows = read_training_rows(REAL / "images_DL_info_rows.csv", None)
    real = TrainingSet.from_records(real_rows, REAL)
    report = {
        "benchmark": "embedding_quality",
        "synthetic_held_out": {
            "data": f"SYNTHETIC cohort, {cohort.patients} patients (seed {args.seed}); trained on "
            "the train and val splits, scored on the held-out test-split patients",
            **_scores(embedder, untrained, held_out),
        },
        "real_key_slices": {
            "data": "REAL DeepLesion validation lesions with PNGs (small sample, an indication)",
            **_scores(embedder, untrained, real),
        },
        "training": {
            "steps": result.steps,
            "sequences_per_batch": args.sequences,
            "lr": args.lr,
            "optimizer": config.optimizer,
            "crops": inputs.to_json()["crops"],
            "train_lesions": result.lesions,
            "unlabelled_train_lesions": int((fit.types == -1).sum()),
            "seconds": round(result.seconds, 1),
            "final_loss": round(result.final_loss, 4),
            "device": result.device,
            "model_sha256": result.sha256,
        },
        "generate_seconds": round(generate_s, 1),
        "workdir": str(work),
        "machine": describe(),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
