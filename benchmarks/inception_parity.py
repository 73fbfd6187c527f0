"""FID Inception-v3 in Flax: parity with pytorch-fid on random weights, and CPU throughput.

    python -m benchmarks.inception_parity [--repeats 3] [--batch 32] [--size 32]

Parity: one random state dict in pytorch-fid's layout (tests/test_metrics_inception.py
`random_state_dict`, He-scaled so pool3 features are O(1)) goes both into pytorch-fid's own
`InceptionV3([3], resize_input=True, normalize_input=True)` (if pytorch-fid/torchvision import)
and into the minimal torch re-implementation of the test, and, converted, into
`jaxgen.metrics.inception.FIDInception`; 2 random [-1, 1] images of 80x60 (resized to 299x299).
Reports max |Δ| of pool3 [N, 2048] and logits [N, 1008]. Needs torch.

Throughput: `FIDInception.features_and_logits` (resize + network, jitted) on `--batch` random
images of `--size`² x 3, median over `--repeats` after one warm-up call; images/s. With torch,
the same for pytorch-fid's module (torch's default threads).
Writes docs/bench/inception_parity.json.
"""

import argparse
import importlib.util
import os
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.common import median_time, record
from jaxgen.metrics.inception import FIDInception
from jaxgen.metrics.inception_weights import state_dict_to_variables

TESTS = Path(__file__).resolve().parents[1] / "tests" / "test_metrics_inception.py"


def test_helpers():
    """The torch references and random weights live in the test module; load it by path."""
    spec = importlib.util.spec_from_file_location("test_metrics_inception", TESTS)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def parity(helpers) -> dict:
    sd, images = helpers.random_state_dict(), helpers.random_images()
    feats, logits = FIDInception(state_dict_to_variables(sd)).features_and_logits(images)
    out = {"images": list(images.shape), "mean_abs_pool3": float(np.abs(feats).mean())}
    refs = {"torch_reimplementation": helpers.torch_reference_outputs}
    if helpers.import_pytorch_fid() is not None:
        refs["pytorch_fid"] = helpers.pytorch_fid_outputs
    for name, fn in refs.items():
        ref_feats, ref_logits = fn(sd, images)
        out[name] = {
            "max_abs_diff_pool3": float(np.abs(feats - ref_feats).max()),
            "max_abs_diff_logits": float(np.abs(logits - ref_logits).max()),
        }
        print(f"parity vs {name}: max |Δ| pool3 {out[name]['max_abs_diff_pool3']:.2e}, "
              f"logits {out[name]['max_abs_diff_logits']:.2e} "
              f"(mean |pool3| {out['mean_abs_pool3']:.3f})")  # fmt: skip
    return out


def flax_throughput(helpers, batch: int, size: int, repeats: int) -> dict:
    net = FIDInception(state_dict_to_variables(helpers.random_state_dict()), batch_size=batch)
    images = helpers.random_images((batch, size, size, 3))
    t = time.perf_counter()
    net.features_and_logits(images)  # compile + first run
    first = time.perf_counter() - t
    sec = median_time(lambda: net.features_and_logits(images), repeats=repeats, warmup=1)
    print(
        f"flax: {batch / sec:.2f} img/s ({sec:.2f} s / batch of {batch}; first call {first:.1f} s)"
    )
    return {"img_per_s": batch / sec, "s_per_batch": sec, "first_call_s": first}


def torch_throughput(helpers, batch: int, size: int, repeats: int) -> dict | None:
    if helpers.import_pytorch_fid() is None:
        return None
    import torch

    pfi = helpers.import_pytorch_fid()
    sd = {k: torch.from_numpy(v) for k, v in helpers.random_state_dict().items()}
    pfi.load_state_dict_from_url = lambda *a, **k: sd
    model = pfi.InceptionV3([3]).eval()
    x = torch.from_numpy(helpers.random_images((batch, size, size, 3)).transpose(0, 3, 1, 2))
    x = (x + 1) / 2

    def run():
        with torch.no_grad():
            model(x)

    sec = median_time(run, repeats=repeats, warmup=1)
    print(f"pytorch-fid (torch {torch.__version__}, {torch.get_num_threads()} threads): "
          f"{batch / sec:.2f} img/s")  # fmt: skip
    return {"img_per_s": batch / sec, "s_per_batch": sec, "torch": torch.__version__}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--size", type=int, default=32)
    args = parser.parse_args()
    if importlib.util.find_spec("torch") is None:
        sys.exit("error: the parity check needs torch (pip install torch); nothing was measured")
    helpers = test_helpers()
    load_before = os.getloadavg()
    payload = {"parity": parity(helpers)}
    payload["flax"] = flax_throughput(helpers, args.batch, args.size, args.repeats)
    payload["pytorch_fid"] = torch_throughput(helpers, args.batch, args.size, args.repeats)
    payload.update(
        batch=args.batch,
        image_size=args.size,
        repeats=args.repeats,
        loadavg_before_after=[load_before[0], os.getloadavg()[0]],
        note="2 CPU cores shared with a long high-priority training job during the run",
    )
    print(f"wrote {record('inception_parity', payload)}")


if __name__ == "__main__":
    main()
