"""An entry's initialisation, stored as a small correction to its portable rebuild.

Rebuilding the initialisation from the model config's seed gives the bits of the machine that
built the entry only on CPUs whose kernels round as its did (:mod:`mi_margin.zoo.normals`), so the
zoo stores it, compactly: for each tensor, the difference between the integer bit patterns of the
shipped values and of :func:`~mi_margin.zoo.normals.portable_init`'s (the same on every CPU),
zigzag-encoded, its bytes grouped by significance (most are 0: the values are a few units in the
last place apart) and deflated. Decoding adds the difference back, which gives the shipped bits
exactly on every CPU; the entry's ``init_digest`` (SHA-256 of the tensors) checks it.

Example:
    >>> import torch
    >>> shipped = {"w": torch.tensor([1.0, -2.5, 3.0])}
    >>> reference = {"w": torch.tensor([1.0, -2.5000002, 2.0])}
    >>> stored = encode(shipped, reference)
    >>> torch.equal(decode(stored, reference)["w"], shipped["w"])
    True
"""

from __future__ import annotations

import zlib

import numpy as np
import torch

from mi_margin.errors import CheckpointError

#: integer views of each element width, for the bit-pattern differences
INT_VIEW = {1: np.int8, 2: np.int16, 4: np.int32, 8: np.int64}


def _bits(value: torch.Tensor) -> np.ndarray:
    array = value.detach().cpu().contiguous().reshape(-1).numpy()
    return array.view(INT_VIEW[array.itemsize]).astype(np.int64)


def encode(state: dict[str, torch.Tensor], reference: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The correction of ``state`` to ``reference`` (same names, shapes and dtypes): one uint8
    tensor per name (module docstring)."""
    stored = {}
    with np.errstate(over="ignore"):
        for name, value in state.items():
            diff = _bits(value) - _bits(reference[name])          # wraps modulo 2^64 for float64
            zigzag = ((diff << 1) ^ (diff >> 63)).view(np.uint64)
            planes = zigzag.astype("<u8").view(np.uint8).reshape(-1, 8).T
            stored[name] = torch.frombuffer(bytearray(zlib.compress(planes.tobytes(), 9)), dtype=torch.uint8)
    return stored


def decode(stored: dict[str, torch.Tensor], reference: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The state :func:`encode` was given, from its output and the same ``reference``."""
    if set(stored) != set(reference):
        raise CheckpointError(f"the stored initialisation has tensors {sorted(stored)}, the model "
                              f"{sorted(reference)}")
    state = {}
    with np.errstate(over="ignore"):
        for name, ref in reference.items():
            planes = np.frombuffer(zlib.decompress(stored[name].numpy().tobytes()), dtype=np.uint8)
            zigzag = planes.reshape(8, -1).T.copy().view("<u8").reshape(-1).astype(np.uint64)
            diff = (zigzag >> np.uint64(1)).view(np.int64) ^ -(zigzag & np.uint64(1)).view(np.int64)
            array = ref.detach().contiguous().reshape(-1).numpy()
            bits = (_bits(ref) + diff).astype(INT_VIEW[array.itemsize])
            state[name] = torch.from_numpy(bits.view(array.dtype).copy()).reshape(ref.shape)
    return state
