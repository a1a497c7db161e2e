"""Superpixels: the features LIME switches on and off."""

from __future__ import annotations

import numpy as np

from worker.engine.params import ExplainParams

# The image area per superpixel that felzenszwalb's min_size is given for: a 64x64 image at n_segments=50.
FELZENSZWALB_REFERENCE_AREA = 64 * 64 / 50


def segment(image: np.ndarray, params: ExplainParams) -> np.ndarray:
    """Superpixels with ids 0..n-1 (lime assumes contiguous ids; SLIC starts at 1 by default)."""
    from skimage.segmentation import felzenszwalb, quickshift, slic

    height, width = image.shape[:2]
    area_per_segment = height * width / params.n_segments
    if params.segmentation == "quickshift":
        raw = quickshift(
            image, kernel_size=params.kernel_size, max_dist=params.max_dist, ratio=params.ratio,
            rng=params.seed,
        )
    elif params.segmentation == "felzenszwalb":
        # Felzenszwalb-Huttenlocher joins two regions unless the colour step between them exceeds both regions'
        # inner variation + scale / region size, then absorbs regions under min_size pixels. min_size is an area:
        # it grows with the mean superpixel area (x12.25 at 224x224, n_segments=50), which bounds the count as
        # n_segments does. scale is not scaled: objects' edges are about as sharp at 224x224 as at 64x64 (scaling it
        # with the area halved the count on skimage's photographs at 224x224; unscaled, 64 and 224 agree to ~30%).
        factor = area_per_segment / FELZENSZWALB_REFERENCE_AREA
        raw = felzenszwalb(
            image, scale=params.scale, sigma=params.sigma, min_size=max(1, int(round(params.min_size * factor))),
            channel_axis=-1,
        )
    elif params.segmentation == "watershed":
        raw = _compact_watershed(image, params.n_segments, params.compactness, params.sigma, area_per_segment)
    else:
        # skimage stretches the image to 0..1 first; slic_lab=False: the colour distance in that RGB, which is 1/100
        # of CIELAB's L range, so compactness / 100 there keeps one compactness about the same balance of colour and
        # distance in both
        raw = slic(
            image, n_segments=params.n_segments,
            compactness=params.compactness if params.slic_lab else params.compactness / 100.0, sigma=params.sigma,
            convert2lab=params.slic_lab, start_label=0,
        )
    _, ids = np.unique(raw, return_inverse=True)
    return ids.reshape(raw.shape).astype(np.int32)


def _compact_watershed(image: np.ndarray, n_segments: int, compactness: float, sigma: float,
                       area_per_segment: float) -> np.ndarray:
    """Compact watershed (Neubert & Protzel 2014) on the colour Sobel gradient, from a grid of n_segments markers.

    skimage floods by gradient + compactness' x pixel distance from the marker. The gradient is the Sobel magnitude
    of each RGB channel in 0..1, combined as their root sum of squares; compactness' = compactness / (100 x grid
    step) (grid step = sqrt(area per superpixel)): the same rescaling as SLIC's distance term (colour in 0..100 against
    distance in grid steps), so that the same compactness means about the same regularity for both, and whatever the
    image's size. At 64x64 and 50 markers the step is 9 pixels: compactness 10 is skimage's 0.011.
    """
    from skimage.filters import gaussian, sobel
    from skimage.segmentation import watershed

    smooth = gaussian(image, sigma=sigma, channel_axis=-1) if sigma > 0 else np.asarray(image, dtype=np.float64)
    gradient = np.sqrt(sum(sobel(smooth[..., channel]) ** 2 for channel in range(smooth.shape[-1])))
    step = np.sqrt(area_per_segment)
    return watershed(gradient, markers=n_segments, compactness=compactness / (100.0 * step))
