"""Probe: oneDNN's bf16 dilated depthwise convolution in NHWC, forward and weight gradient.

The MFMSA branches of MADGNet are dilated depthwise 3x3 convolutions. With bf16 autocast on the
CPU their weight gradient in NHWC (channels_last) has been wrong (torch 2.13 on AMD Zen 4), while
NCHW is right; that is why bf16 training stays NCHW (``training.engine._memory_format``). The
forward pass is right in both layouts, so bf16 inference may use NHWC. Run it on a new CPU or
torch before changing either choice:

    python benchmarks/probe_bf16_dilated_grad.py [--trials 6]

Prints, per trial, the relative error (max |difference| / max |fp32 NCHW|) of each bf16 layout.
Exit status 1 when the NHWC weight gradient is wrong in any trial (error > 0.1 or not finite).
"""

from __future__ import annotations

import argparse

import torch


def trial(seed: int) -> dict[str, float]:
    torch.manual_seed(seed)
    conv = torch.nn.Conv2d(64, 64, 3, padding=3, dilation=3, groups=64)
    x = torch.randn(4, 64, 32, 32)
    out: dict[str, float] = {}
    grads, outputs = {}, {}
    for name, fmt, bf16 in (
        ("fp32 NCHW", torch.contiguous_format, False),
        ("bf16 NHWC", torch.channels_last, True),
        ("bf16 NCHW", torch.contiguous_format, True),
    ):
        c = torch.nn.Conv2d(64, 64, 3, padding=3, dilation=3, groups=64).to(memory_format=fmt)
        c.load_state_dict(conv.state_dict())
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            y = c(x.clone().contiguous(memory_format=fmt))
        y.float().square().mean().backward()
        grads[name], outputs[name] = c.weight.grad.float(), y.detach().float()
    for name in ("bf16 NHWC", "bf16 NCHW"):
        for kind, values in (("forward", outputs), ("weight grad", grads)):
            ref = values["fp32 NCHW"]
            err = float((values[name] - ref).abs().max() / ref.abs().max())
            out[f"{name} {kind}"] = err if torch.isfinite(values[name]).all() else float("inf")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=6)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    from machine import describe, headline

    print(headline(describe("cpu")))
    wrong = 0
    for seed in range(args.trials):
        errors = trial(seed)
        print(seed, "  ".join(f"{k}: {v:.3g}" for k, v in errors.items()))
        wrong += errors["bf16 NHWC weight grad"] > 0.1
    print(f"NHWC bf16 weight gradient wrong in {wrong} of {args.trials} trials")
    return 1 if wrong else 0


if __name__ == "__main__":
    raise SystemExit(main())
