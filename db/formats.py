"""The stored formats: how the arrays in the database's binary columns are kept, each as an encode and a decode. The
rooms above (the worker, the producer, the audit, the report) write and read those columns through these alone.
Pure NumPy."""

from __future__ import annotations

import io

import numpy as np


def encode_segments(segments: np.ndarray) -> bytes:
    """The segment map as stored in `explanations.segments`: a compressed .npz of uint16 ids."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, segments=segments.astype(np.uint16))
    return buffer.getvalue()


def decode_segments(blob: bytes) -> np.ndarray:
    return np.load(io.BytesIO(blob))["segments"].astype(np.int32)


def encode_maps(maps: np.ndarray) -> bytes:
    """Relevance maps (audit.maps) as stored in `explanations.relevance` and the mean maps of `class_maps` and
    `strategy_groups`: their shape (three uint16: layers, height, width; a single map has no layer count of its own
    and is stored as one layer with a zero flag) then float16 values (enough for a picture and a mean). Read back in
    microseconds, which matters at a hundred thousand rows."""
    maps = np.asarray(maps, dtype=np.float16)
    single = maps.ndim == 2
    stack = maps[None] if single else maps
    return np.array([stack.shape[0], *stack.shape[1:], int(single)], dtype=np.uint16).tobytes() + stack.tobytes()


def decode_maps(blob: bytes) -> np.ndarray:
    """(layers, height, width), or (height, width) for a single map, as float32."""
    layers, height, width, single = np.frombuffer(blob, dtype=np.uint16, count=4)
    values = np.frombuffer(blob, dtype=np.float16, offset=8).astype(np.float32)
    return values.reshape(height, width) if single else values.reshape(layers, height, width)


def encode_mask(mask: np.ndarray) -> bytes:
    """An evidence mask as stored in `image_evidence.mask`: its shape and its pixels as packed bits."""
    mask = np.asarray(mask, dtype=bool)
    return np.array(mask.shape, dtype=np.uint32).tobytes() + np.packbits(mask).tobytes()


def decode_mask(blob: bytes) -> np.ndarray:
    height, width = np.frombuffer(blob[:8], dtype=np.uint32)
    return np.unpackbits(np.frombuffer(blob[8:], dtype=np.uint8), count=int(height) * int(width)).reshape(
        int(height), int(width)).astype(bool)
