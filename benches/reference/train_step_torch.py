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


def steps_per_second(step, seconds):
    """Five warm-up steps, then steps for `seconds`."""
    for _ in range(5):
        step()
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        step()
        n += 1
    return n / (time.perf_counter() - start)


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

    return steps_per_second(step, seconds)


class DeepSadLeNet(nn.Module):
    """Deep SAD's encoders (lukasruff/Deep-SAD-PyTorch src/networks): 5x5 convs, padding 2,
    no bias, BatchNorm2d(eps=1e-4, affine=False), leaky ReLU, max-pool 2, linear, no bias."""

    def __init__(self, c, h, widths, rep_dim):
        super().__init__()
        convs, bns = [], []
        for o in widths:
            convs.append(nn.Conv2d(c, o, 5, bias=False, padding=2))
            bns.append(nn.BatchNorm2d(o, eps=1e-4, affine=False))
            c = o
        self.convs, self.bns = nn.ModuleList(convs), nn.ModuleList(bns)
        side = h >> len(widths)
        self.fc1 = nn.Linear(c * side * side, rep_dim, bias=False)

    def forward(self, x):
        for conv, bn in zip(self.convs, self.bns):
            x = F.max_pool2d(F.leaky_relu(bn(conv(x))), 2)
        return self.fc1(x.flatten(1))


def bench_deep_sad(c, h, w, seconds, batch=128):
    """One Deep SAD step as their trainer takes it: batch 128, one labelled anomaly in ten,
    Adam(lr 1e-4, weight_decay 5e-7), the same loss as eidn's (eta 1, eps 1e-6)."""
    widths, rep = ([8, 4], 32) if c == 1 else ([32, 64, 128], 128)
    model = DeepSadLeNet(c, h, widths, rep)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4, weight_decay=0.5e-6)
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (batch, c, h, w), dtype=torch.uint8, generator=g).float() / 255
    semi = torch.where(torch.arange(batch) % 10 == 0, -1, 0)
    center = torch.full((rep,), 0.1)

    def step():
        dist = ((model(x) - center) ** 2).sum(1)
        loss = torch.where(semi == 0, dist, (dist + 1e-6) ** semi.float()).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return steps_per_second(step, seconds)


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
    for c, h, w in [(3, 32, 32), (1, 28, 28)]:
        rate = bench_deep_sad(c, h, w, args.seconds)
        print(json.dumps({"input": f"deep_sad-{c}x{h}x{w}", "steps_per_s": rate,
                          "threads": args.threads, "torch": torch.__version__}), flush=True)


if __name__ == "__main__":
    main()
