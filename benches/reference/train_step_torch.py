"""PyTorch reference for eidn's training step (bench-time only, never a runtime dependency).

Same model as eidn's encoder (conv3x3 32 valid + ReLU + maxpool2, conv3x3 64 + ReLU +
maxpool2, dense 128 + ReLU, dense l), same refined triplet loss (sum over the batch), Adam
(lr 1e-3), 128 triplets = 256 images per step, sampled from u8 pools and scaled to [0, 1]
inside the step as eidn does, on CPU with a fixed thread count.

    pip install torch
    python3 benches/reference/train_step_torch.py --threads 2 --seconds 20

Prints one JSON object per input shape: {"input": "1x28x28", "steps_per_s": ...}.
"""
import argparse
import json
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class Encoder(nn.Module):
    def __init__(self, c, h, w, embed_dim=2):
        super().__init__()
        self.conv1 = nn.Conv2d(c, 32, 3)
        self.conv2 = nn.Conv2d(32, 64, 3)
        fh, fw = ((h - 2) // 2 - 2) // 2, ((w - 2) // 2 - 2) // 2
        self.fc1 = nn.Linear(64 * fh * fw, 128)
        self.fc2 = nn.Linear(128, embed_dim)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return self.fc2(F.relu(self.fc1(x.flatten(1))))


def triplet_loss(y, zp, zn, alpha=0.2):
    d_pos = ((y - zp) ** 2).sum(1)
    d_neg = ((y - zn) ** 2).sum(1)
    return F.relu(d_pos - d_neg + alpha).sum()


def bench(c, h, w, seconds, batch=128, embed_dim=2):
    g = torch.Generator().manual_seed(0)
    normal = torch.randint(0, 256, (1000, c, h, w), dtype=torch.uint8, generator=g)
    anomalous = torch.randint(0, 256, (100, c, h, w), dtype=torch.uint8, generator=g)
    model = Encoder(c, h, w, embed_dim)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    def step():
        anchor_anom = torch.rand(batch, generator=g) < 0.5
        ni = torch.randint(0, len(normal), (batch,), generator=g)
        ai = torch.randint(0, len(anomalous), (batch,), generator=g)
        xn, xa = normal[ni], anomalous[ai]
        mask = anchor_anom.view(-1, 1, 1, 1)
        pos = torch.where(mask, xa, xn)
        neg = torch.where(mask, xn, xa)
        x = torch.cat([pos, neg]).float().div_(255.0)
        y = anchor_anom.float().view(-1, 1).expand(batch, embed_dim)
        z = model(x)
        loss = triplet_loss(y, z[:batch], z[batch:])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(5):
        step()
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        step()
        n += 1
    return n / (time.perf_counter() - start)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=20.0)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    for c, h, w in [(1, 28, 28), (3, 32, 32)]:
        rate = bench(c, h, w, args.seconds)
        print(json.dumps({"input": f"{c}x{h}x{w}", "steps_per_s": rate,
                          "threads": args.threads, "torch": torch.__version__}), flush=True)


if __name__ == "__main__":
    main()
