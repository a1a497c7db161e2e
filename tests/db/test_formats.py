"""The stored formats read back what was written: segment maps exactly, maps to float16's precision, masks exactly."""

from __future__ import annotations

import numpy as np

from db.formats import decode_maps, decode_mask, decode_segments, encode_maps, encode_mask, encode_segments


def test_each_stored_format_reads_back_what_was_written():
    rng = np.random.default_rng(0)
    segments = rng.integers(0, 300, (17, 23))
    assert np.array_equal(decode_segments(encode_segments(segments)), segments)
    stack, single = rng.uniform(-1, 1, (2, 8, 5)).astype(np.float32), rng.uniform(-1, 1, (8, 5)).astype(np.float32)
    assert decode_maps(encode_maps(stack)).shape == (2, 8, 5) and decode_maps(encode_maps(single)).shape == (8, 5)
    assert np.allclose(decode_maps(encode_maps(stack)), stack, atol=1e-3)
    mask = rng.random((13, 7)) > 0.5
    assert np.array_equal(decode_mask(encode_mask(mask)), mask)
