"""(c) NF4 quantise / dequantise throughput, course_lib.methods.nf4 against bitsandbytes on CPU, and bits
per parameter with double quantisation.

A random normal fp32 matrix (4096 x 4096 = 16.8M weights; 128 x 256 with --quick) is quantised to NF4
with blocksize 64 and double quantisation (scales quantised to 8 bits in blocks of 256), then
dequantised; both libraries run interleaved. Throughput is weights per second (M/s). Bits per
parameter count the packed codes plus every stored scale: ``4 + 8/64 + 32/(64*256) = 4.127`` is
expected (the single fp32 mean adds 32 bits per tensor). The packed 4-bit codes of both libraries are
compared byte for byte, the 8-bit codes of the double-quantised scales code by code (with the share of
each library's codes that name the nearest level of the dynamic map), and the dequantised values
against each other.
"""
from __future__ import annotations

from .common import Result, contention_label, error_bars, interleaved, new_figure, ratio_stats, save_figure, stats

NAME = "nf4"
EXPECTED_BITS = 4 + 8 / 64 + 32 / (64 * 256)


def bnb_bits_per_parameter(packed, state) -> float:
    """Bits per weight bitsandbytes stores: codes, 8-bit scales, their fp32 scales and the fp32 offset."""
    total = packed.numel() * packed.element_size() + state.absmax.numel() * state.absmax.element_size()
    if getattr(state, "nested", False):
        total += state.state2.absmax.numel() * state.state2.absmax.element_size() + 4
    n = 1
    for s in state.shape:
        n *= s
    return 8 * total / n


def run(out_dir, quick: bool = False) -> Result:
    import torch

    from course_lib.errors import require
    from course_lib.methods import nf4

    require("bitsandbytes", "the NF4 throughput comparison")
    import bitsandbytes.functional as bnbf

    result = Result(NAME, "NF4 quantise/dequantise: course_lib vs bitsandbytes (CPU)", quick)
    shape = (128, 256) if quick else (4096, 4096)
    repeats, warmup = (3, 1) if quick else (7, 1)
    result.settings = {"shape": list(shape), "dtype": "float32", "blocksize": 64, "double_quant": True,
                       "dq_blocksize": 256, "repeats": repeats, "warmup_rounds": warmup,
                       "bnb_call": "bitsandbytes.functional.quantize_4bit(x, blocksize=64, quant_type='nf4', "
                                   "compress_statistics=True) / dequantize_4bit(packed, state)"}
    torch.manual_seed(0)
    x = torch.randn(*shape)
    n = x.numel()
    ours = nf4.quantize_4bit(x, blocksize=64, double_quant=True)
    theirs = bnbf.quantize_4bit(x, blocksize=64, quant_type="nf4", compress_statistics=True)
    y_ours, y_theirs = nf4.dequantize_4bit(*ours), bnbf.dequantize_4bit(*theirs)
    t_q = interleaved({"course_lib": lambda: nf4.quantize_4bit(x, blocksize=64, double_quant=True),
                       "bitsandbytes": lambda: bnbf.quantize_4bit(x, blocksize=64, quant_type="nf4",
                                                                  compress_statistics=True)},
                      repeats, warmup, clock=result.clock, progress="NF4 quantise")
    t_d = interleaved({"course_lib": lambda: nf4.dequantize_4bit(*ours),
                       "bitsandbytes": lambda: bnbf.dequantize_4bit(*theirs)},
                      repeats, warmup, clock=result.clock, progress="NF4 dequantise")
    for op, t in (("quantise", t_q), ("dequantise", t_d)):
        result.results.append({
            "operation": op, "weights": n,
            "throughput_M_per_s": {k: stats([n / s / 1e6 for s in v], "M weights/s") for k, v in t.items()},
            "time_ms": {k: stats([1000 * s for s in v], "ms") for k, v in t.items()},
            "time_ratio_course_lib_over_bnb": ratio_stats(t["course_lib"], t["bitsandbytes"])})
    bits_ours = nf4.measured_bits_per_parameter(*ours)
    bits_bnb = bnb_bits_per_parameter(*theirs)
    same_codes = float((ours[0] == theirs[0].reshape(-1)).float().mean())
    scales = x.reshape(-1, 64).abs().amax(1)
    same_scale_codes = float((ours[1].absmax == theirs[1].absmax).float().mean())
    nearest = {"course_lib": float(nf4.nearest_scale_codes(ours[1], scales).float().mean()),
               "bitsandbytes": float(nf4.nearest_scale_codes(ours[1], scales, theirs[1].absmax).float().mean())}
    result.results.append({
        "operation": "storage", "weights": n,
        "bits_per_parameter": {"course_lib": bits_ours, "bitsandbytes": bits_bnb,
                               "formula": nf4.bits_per_parameter(64, True, 256), "expected": EXPECTED_BITS},
        "bits_per_parameter_without_double_quant": nf4.bits_per_parameter(64, False),
        "packed_codes_identical_fraction": same_codes,
        "scale_codes_identical_fraction": same_scale_codes,
        "scale_codes_nearest_fraction": nearest,
        "dequantised_max_abs_diff": float((y_ours - y_theirs).abs().max()),
        "dequantised_mean_abs_diff": float((y_ours - y_theirs).abs().mean()),
        "reconstruction_rmse": {"course_lib": float((y_ours - x).pow(2).mean().sqrt()),
                                "bitsandbytes": float((y_theirs - x).pow(2).mean().sqrt())}})
    for row in result.results[:2]:
        for lib in ("course_lib", "bitsandbytes"):
            result.headline[f"{row['operation']} {lib} (M/s)"] = row["throughput_M_per_s"][lib]["median"]
    result.headline["bits/param course_lib"] = bits_ours
    result.headline["bits/param bitsandbytes"] = bits_bnb
    if abs(bits_ours - EXPECTED_BITS) > 1e-3 or abs(bits_bnb - EXPECTED_BITS) > 1e-3:
        result.notes.append(f"bits per parameter {bits_ours:.4f} (course_lib) / {bits_bnb:.4f} (bitsandbytes) differ "
                            f"from the expected {EXPECTED_BITS:.4f} (for small tensors the fp32 mean and the "
                            "partial last block weigh in).")
    if same_codes < 1.0:
        result.notes.append(f"only {same_codes:.4%} of the packed bytes agree with bitsandbytes.")
    if result.results[-1]["dequantised_max_abs_diff"] > 0:
        result.notes.append("dequantised values differ from bitsandbytes' by up to "
                            f"{result.results[-1]['dequantised_max_abs_diff']:.3g}: {1 - same_scale_codes:.2%} of the "
                            "8-bit codes of the double-quantised scales differ, because bitsandbytes' CPU kernel does "
                            f"not always pick the nearest level of the dynamic map ({nearest['bitsandbytes']:.2%} of its "
                            f"codes are nearest, {nearest['course_lib']:.2%} of course_lib's); the 4-bit codes are the same.")
    _plot(result, out_dir)
    return result


def _plot(result: Result, out_dir) -> None:
    fig, axes = new_figure(8.0, 3.8, ncols=2)
    for ax, row in zip(axes, result.results[:2]):
        libs = list(row["throughput_M_per_s"])
        med, err = error_bars([row["throughput_M_per_s"][k] for k in libs])
        ax.bar(libs, med, yerr=err, capsize=4, color=["tab:blue", "tab:orange"])
        ax.set_ylabel("throughput (million weights / s)")
        ax.set_title(f"NF4 {row['operation']}, {row['weights'] / 1e6:.1f}M weights", fontsize=9)
    fig.suptitle("NF4 with double quantisation on CPU, 1 thread: median, bars = quartiles"
                 + contention_label(result), fontsize=10)
    save_figure(fig, out_dir, f"{NAME}.png", result)
