"""Writes tests/fixtures/legacy_small.pth, the small legacy-format file src/backbone/pth.rs reads.

Bench-time only: `pip install torch; python tests/reference/pth_reference.py`.
"""

import pathlib

import torch

base = torch.arange(6, dtype=torch.float32)
state = {
    "a.weight": base.view(2, 3),
    "b": torch.tensor([-1.5]),
    "n": torch.tensor(7),  # an integer storage: skipped by the reader
    "view": base[3:],  # a view at offset 3 of a.weight's storage
}
out = pathlib.Path(__file__).resolve().parents[1] / "fixtures" / "legacy_small.pth"
torch.save(state, out, _use_new_zipfile_serialization=False)
print(f"wrote {out} ({out.stat().st_size} bytes)")
