"""What a training run computes and costs: FLOPs per token, MFU, time, energy and money.

MFU (model FLOPs utilisation, PaLM appendix B) is the FLOPs the model needs per second
divided by the accelerators' peak: unlike tokens/s it compares runs across model sizes
and hardware, and it shows how far a run is from what it pays for.
"""

from __future__ import annotations

import os
import re
import threading
import time
from types import ModuleType


# Dense (no sparsity) tensor-core peak TFLOPS per device, from NVIDIA's data sheets (the
# H100 whitepaper for H100 SXM5/PCIe); the sheets print the 2:4-sparsity figure, twice these.
# "tf32" is the peak an fp32 run gets when matmuls use TF32 tensor cores. V100 has neither
# bf16 nor TF32. Keys are model names matched as whole words of the device name, longest first.
PEAK_TFLOPS: dict[str, dict[str, float]] = {
    "H100 PCIe": {"bf16": 756.0, "fp16": 756.0, "tf32": 378.0},
    "H100": {"bf16": 989.4, "fp16": 989.4, "tf32": 494.7},  # SXM5
    "H200": {"bf16": 989.4, "fp16": 989.4, "tf32": 494.7},  # SXM
    "A100": {"bf16": 312.0, "fp16": 312.0, "tf32": 156.0},
    "L4": {"bf16": 121.0, "fp16": 121.0, "tf32": 60.0},
    "V100": {"fp16": 125.0},  # SXM2
}


def peak_tflops(device_name: str, precision: str) -> float | None:
    """Dense peak TFLOPS of one device (``torch.cuda.get_device_name()``) at ``"bf16"``, ``"fp16"`` or ``"fp32"``.

    fp32 gives the TF32 peak: it is what the hardware offers an fp32 matmul, so MFU stays
    comparable to bf16 runs (an fp32 run without TF32 enabled shows a low MFU, rightly).
    None for a CPU, an unknown device or a precision the device has no tensor cores for.
    """
    key = "tf32" if precision == "fp32" else precision
    for name in sorted(PEAK_TFLOPS, key=len, reverse=True):
        if re.search(rf"\b{re.escape(name)}\b", device_name, re.IGNORECASE):
            return PEAK_TFLOPS[name].get(key)
    return None


def mfu(tokens_per_s: float, flops_per_token: float, peak_tflops: float, n_devices: int = 1) -> float:
    """Model FLOPs utilisation: achieved FLOP/s over the peak of all devices; ``tokens_per_s`` counts all of them."""
    return tokens_per_s * flops_per_token / (peak_tflops * 1e12 * n_devices)


def estimate_run(total_tokens: float, flops_per_token: float, tokens_per_s: float, power_w: float | None,
                 price_per_kwh: float | None, price_per_hour: float | None) -> dict[str, float | None]:
    """FLOPs, time, energy and cost of training on ``total_tokens`` at ``tokens_per_s``.

    ``power_w`` is the mean draw of the whole run (all devices); ``price_per_hour`` the rent
    of the machines, ``price_per_kwh`` the electricity. Cost sums the priced terms; it is None
    when nothing is priced, or when electricity is priced but the power is unknown.
    """
    time_s = total_tokens / tokens_per_s
    energy_kwh = None if power_w is None else power_w * time_s / 3.6e6
    terms: list[float | None] = []
    if price_per_hour is not None:
        terms.append(time_s / 3600 * price_per_hour)
    if price_per_kwh is not None:
        terms.append(None if energy_kwh is None else energy_kwh * price_per_kwh)
    cost = sum(terms) if terms and None not in terms else None
    return {"flops_total": total_tokens * flops_per_token, "time_s": time_s,
            "energy_kwh": energy_kwh, "cost": cost}


def _nvml() -> ModuleType | None:
    """``pynvml`` (package nvidia-ml-py), initialised, or None where it or the NVIDIA driver is missing."""
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return None
    return pynvml


class PowerMeter:
    """Energy drawn by the GPUs this process sees, from NVML power readings every ``interval_s``.

    Every GPU of ``CUDA_VISIBLE_DEVICES`` (else of the machine) is summed: run one meter per
    node, not per rank. Where NVML is unavailable ``start()`` does nothing and ``stop()``
    returns None, so a trainer needs no branch.
    """

    def __init__(self, interval_s: float = 1.0) -> None:
        self.interval_s = interval_s
        self._joules = 0.0
        self._done = threading.Event()
        self._thread: threading.Thread | None = None
        self._nvml: ModuleType | None = None
        self._handles: list = []

    @staticmethod
    def available() -> bool:
        nvml = _nvml()
        if nvml is not None:
            nvml.nvmlShutdown()
        return nvml is not None

    def start(self) -> None:
        self._nvml = _nvml()
        if self._nvml is None:
            return
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        ids = visible.split(",") if visible else [str(i) for i in range(self._nvml.nvmlDeviceGetCount())]
        by_index, by_uuid = self._nvml.nvmlDeviceGetHandleByIndex, self._nvml.nvmlDeviceGetHandleByUUID
        self._handles = [by_index(int(i)) if i.isdigit() else by_uuid(i) for i in ids]
        self._joules = 0.0
        self._done.clear()
        self._thread = threading.Thread(target=self._sample, daemon=True, name="power-meter")
        self._thread.start()

    def _sample(self) -> None:
        """Integrate power over time until ``stop()``, the last partial interval included."""
        last = time.monotonic()
        while True:
            done = self._done.wait(self.interval_s)
            now = time.monotonic()
            milliwatts = sum(self._nvml.nvmlDeviceGetPowerUsage(h) for h in self._handles)
            self._joules += milliwatts / 1000 * (now - last)
            last = now
            if done:
                return

    def stop(self) -> float | None:
        """Stop sampling; the energy since ``start()`` in kWh, or None if nothing was measured."""
        if self._thread is None:
            return None
        self._done.set()
        self._thread.join()
        self._thread = None
        self._nvml.nvmlShutdown()
        return self._joules / 3.6e6
