"""`just bench-vs-pytorch`: eidn's criterion train_step bench and the PyTorch reference, run
one after the other on the same machine, printed side by side with the ratio and GFLOP/s.

    pip install torch
    python3 benches/reference/compare.py [--threads 2] [--seconds 20]
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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=20.0)
    args = ap.parse_args()
    eidn = run_eidn(args.threads)
    torch_rates, version = run_torch(args.threads, args.seconds)
    print(f"\n{args.threads} threads, PyTorch {version}, same machine, run back to back\n")
    print("| input | eidn steps/s | PyTorch steps/s | eidn / PyTorch | GFLOP per step | eidn GFLOP/s | PyTorch GFLOP/s |")
    print("|---|---|---|---|---|---|---|")
    for shape in ["1x28x28", "3x32x32"]:
        e, t = eidn[shape], torch_rates[shape]
        f = step_flops(shape) / 1e9
        print(f"| {shape} | {e:.2f} | {t:.2f} | {e / t:.2f}x | {f:.2f} | {e * f:.1f} | {t * f:.1f} |")
    print("\nDeep SAD's training step (the authors' LeNet, batch 128, issue 13: >= 1.0x PyTorch)\n")
    print("| network | eidn steps/s | PyTorch steps/s | eidn / PyTorch |")
    print("|---|---|---|---|")
    for shape in ["deep_sad-3x32x32", "deep_sad-1x28x28"]:
        e, t = eidn[shape], torch_rates[shape]
        print(f"| {shape} | {e:.2f} | {t:.2f} | {e / t:.2f}x |")


if __name__ == "__main__":
    main()
