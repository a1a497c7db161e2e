"""Everything besides the image and the model that an explanation depends on, checked once."""

from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass
from typing import Literal, Sequence

from models.batching import batch_for

AUTO = "auto"
HIDES = ("mean", "grey", "black", "blur")
# How the perturbations are drawn (worker.engine.designs) and how the linear surrogate is estimated from them.
DESIGNS = ("independent", "paired", "hadamard")
ESTIMATORS = ("lime", "adjusted", "shrunk")
# How the image is cut into superpixels (worker.engine.segmentation).
SEGMENTERS = ("quickshift", "slic", "felzenszwalb", "watershed")
# The article's exact settings: lime's quickshift, hidden superpixels in their own mean colour, 1000 independent
# coin-flip masks and lime's own fit. With these an explanation equals lime_image's explain_instance.
ARTICLE_PRESET = {
    "segmentation": "quickshift", "kernel_size": 4, "max_dist": 200, "ratio": 0.2, "hide": "mean", "num_samples": 1000,
    "design": "independent", "estimator": "lime",
}


@dataclass(frozen=True)
class ExplainParams:
    """Everything besides the image and the model that an explanation depends on."""

    # The defaults meet the quality targets of `python -m benchmarks.quality` at the fewest model calls: by
    # construction (the model wrapped to see only the evidence, or only the background) on the four data sets with a
    # known answer, and with the trained models on rectangles and shapes; ARTICLE_PRESET keeps lime's own settings.
    # A whole number: that many samples (designs made of blocks round up to whole blocks; the unperturbed image is
    # one more). "auto": sample block by block until the top superpixels have settled (worker.engine.stopping).
    num_samples: int | Literal["auto"] = 512
    design: Literal["independent", "paired", "hadamard"] = "hadamard"
    estimator: Literal["lime", "adjusted", "shrunk"] = "shrunk"
    # felzenszwalb follows the objects' outlines (benchmarks.outlines): the top superpixel lies on what the model used
    segmentation: Literal["quickshift", "slic", "felzenszwalb", "watershed"] = "felzenszwalb"
    # lime's quickshift defaults
    kernel_size: float = 4
    max_dist: float = 200
    ratio: float = 0.2
    # slic, watershed: about how many superpixels (the seeds' grid); felzenszwalb: scales its min_size (below)
    n_segments: int = 50
    # slic, watershed: colour against distance, larger is more regular (watershed's is rescaled to mean what SLIC's
    # does: worker.engine.segmentation)
    compactness: float = 10.0
    sigma: float = 1.0  # slic, felzenszwalb, watershed: Gaussian smoothing first, in pixels (0: none)
    slic_lab: bool = True  # slic: colour distance in CIELAB (skimage's convert2lab); False: in RGB
    # felzenszwalb: skimage's scale (larger: larger superpixels) and min_size, in pixels for a 64x64 image at
    # n_segments=50, multiplied by the mean superpixel area (height x width / n_segments) / 81.92 otherwise
    scale: float = 25.0  # the defaults: benchmarks.outlines' best at ~50 superpixels
    min_size: float = 20.0
    top_labels: int | None = None  # None: explain the predicted label and the true label (when known)
    # What a switched-off superpixel shows: "mean" (its own mean colour, lime's default), "grey", "black",
    # "blur" (the image blurred), or a number: that share of the value range (0 black, 0.5 grey, 1 white).
    hide: str = "grey"
    seed: int = 0
    # Images built and sent to the model at once; bounds memory. None: models.batching's rule for a CPU (256 at 64x64,
    # 64 at 224x224: larger batches of big images run slower there).
    batch_size: int | None = None
    stability_seeds: int = 0  # explain again with this many other seeds (same segmentation): top-5 agreement

    def __post_init__(self) -> None:
        if self.num_samples != AUTO and (not isinstance(self.num_samples, int) or self.num_samples < 2):
            raise ValueError(f"num_samples must be {AUTO!r} or a whole number of at least 2, got {self.num_samples!r}")
        if self.design not in DESIGNS:
            raise ValueError(f"design must be one of {', '.join(DESIGNS)}, got {self.design!r}")
        if self.estimator not in ESTIMATORS:
            raise ValueError(f"estimator must be one of {', '.join(ESTIMATORS)}, got {self.estimator!r}")
        if self.segmentation not in SEGMENTERS:
            raise ValueError(f"segmentation must be one of {', '.join(SEGMENTERS)}, got {self.segmentation!r}")
        n_segments = self.n_segments
        if isinstance(n_segments, bool) or not isinstance(n_segments, numbers.Integral) or n_segments < 1:
            raise ValueError(f"n_segments must be a whole number of at least 1, got {self.n_segments!r}")
        for name in ("compactness", "sigma", "min_size"):
            if not _number(getattr(self, name)) or getattr(self, name) < 0:
                raise ValueError(f"{name} must be a number of 0 or more, got {getattr(self, name)!r}")
        if self.segmentation == "slic" and self.compactness == 0:
            raise ValueError("compactness must be more than 0 for slic, got 0")
        if not _number(self.scale) or self.scale <= 0:
            raise ValueError(f"scale must be a number more than 0, got {self.scale!r}")
        if not isinstance(self.slic_lab, bool):
            raise ValueError(f"slic_lab must be True or False, got {self.slic_lab!r}")
        if self.hide not in HIDES:
            try:
                value = float(self.hide)
            except ValueError:
                value = -1.0
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"hide must be one of {', '.join(HIDES)} or a number in [0, 1], got {self.hide!r}")
        if self.stability_seeds < 0:
            raise ValueError(f"stability_seeds must be 0 or more, got {self.stability_seeds}")
        if self.top_labels is not None and self.top_labels < 1:
            raise ValueError(f"top_labels must be at least 1, got {self.top_labels}")
        if self.batch_size is not None and self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size}")

    def to_dict(self) -> dict:
        return asdict(self)

    def batch_for(self, image_shape: Sequence[int]) -> int:
        """The batch size for images of this shape: the explicit one, or models.batching's for a CPU."""
        return self.batch_size if self.batch_size is not None else batch_for(image_shape)


def _number(value) -> bool:
    """A finite real number (not a bool)."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
