"""Does bioimage.io's own prediction of a 1024 x 1024 image match `biounet predict`?

Exports the bundled model as a bioimage.io package, then predicts the
foreground probability of a 1024 x 1024 synthetic EM image (uint8) three ways:

- ``biounet``: :func:`biounet.predict` (overlap-tile, mirrored borders);
- ``core-unblocked``: bioimage.io core's prediction pipeline
  (``predict_sample_without_blocking``) on the image mirror-padded by the
  halo (92 px) and up to the next valid size; output cropped to 1024;
- ``core-default``: ``bioimageio.core.predict`` on the same padded input with
  its default blocking; ``core-tiled-nN``: with ``blocksize_parameter`` N
  (input blocks of 188 + 16 N).

Prints the largest absolute difference of each to ``biounet``.
Run: ``python benchmarks/bench_bioimageio_tiling.py`` (needs the bioimageio extra).
"""

from __future__ import annotations

import json
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np

from biounet.inference.segmentation import predict
from biounet.network.bioimageio import export_bioimageio, sample_image
from biounet.network.unet import load_model
from biounet.synthetic import em_like


def main() -> None:
    from bioimageio.core import predict as core_predict

    model = load_model()
    image = em_like((1024, 1024), rng=np.random.default_rng(1))[0]
    ours = predict(image, model)[0, 1]
    halo, step = model.config.halo, 16
    padded = np.pad(image, halo, mode="reflect")  # biounet's mirror
    size = padded.shape[0]
    valid = 188 + step * int(np.ceil((size - 188) / step))
    padded = np.pad(padded, ((0, valid - size), (0, valid - size)), mode="reflect")
    result = {"padded_input": list(padded.shape)}
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        package = Path(tmp) / "m.zip"
        export_bioimageio(model, package, sample=sample_image())
        x = padded[None, None].astype(np.float32)
        from bioimageio.core import Sample, Tensor, create_prediction_pipeline, load_description
        from bioimageio.spec.model.v0_5 import TensorId

        pipeline = create_prediction_pipeline(load_description(package))
        sample = Sample(
            members={TensorId("raw"): Tensor(x, dims=("batch", "channel", "y", "x"))},
            stat={},
            id="whole",
        )
        out = pipeline.predict_sample_without_blocking(sample)
        prob = np.asarray(next(iter(out.members.values())).data)[0, 1, :1024, :1024]
        result["core-unblocked"] = {"max_abs_diff": float(np.abs(prob - ours).max())}
        for name, n in [("core-default", None)] + [
            (f"core-tiled-n{n}", n) for n in map(int, sys.argv[1:] or [20, 40])
        ]:
            try:
                out = core_predict(model=package, inputs=x, blocksize_parameter=n)
                prob = np.asarray(next(iter(out.members.values())).data)[0, 1, :1024, :1024]
                result[name] = {
                    "shape": list(prob.shape),
                    "max_abs_diff": float(np.abs(prob - ours).max()),
                }
            except Exception as exc:  # report what bioimage.io core does with the offset model
                result[name] = {"error": f"{type(exc).__name__}: {str(exc)[:300]}"}
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
