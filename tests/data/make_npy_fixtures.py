"""Regenerate the .npy fixtures used by tests/npy_test.ts.

Run from the repository root:  python3 tests/data/make_npy_fixtures.py
Every value is a simple closed form so the test can recompute it exactly in TypeScript.
"""

import os

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def path(name):
    return os.path.join(HERE, name)


# f4 [2,3,5]: (i - 3) / 3 rounded to float32, i = 0..29 in C order.
np.save(path("f4_2x3x5.npy"), ((np.arange(30) - 3) / 3).astype("<f4").reshape(2, 3, 5))
# f8 [7]: (i - 3) / 3 in float64.
np.save(path("f8_7.npy"), ((np.arange(7) - 3) / 3).astype("<f8"))
# f8 scalar, shape ().
np.save(path("f8_scalar.npy"), np.array(2.5, dtype="<f8"))
# i8 [4] with a value beyond 2^32 (still below 2^53).
np.save(path("i8_4.npy"), np.array([-3, 0, 7, 2**40], dtype="<i8"))
# i8 [2] with a value beyond 2^53: must be rejected.
np.save(path("i8_too_big.npy"), np.array([1, 2**60], dtype="<i8"))
# small integer kinds.
np.save(path("i4_3.npy"), np.array([-(2**31), 0, 2**31 - 1], dtype="<i4"))
np.save(path("i1_3.npy"), np.array([-128, -1, 127], dtype="i1"))
np.save(path("u1_3.npy"), np.array([0, 128, 255], dtype="u1"))
np.save(path("u4_2.npy"), np.array([0, 2**32 - 1], dtype="<u4"))
# bool [3].
np.save(path("b1_3.npy"), np.array([True, False, True]))
# big-endian f8 [3]: (i - 1) / 7.
np.save(path("f8_be_3.npy"), ((np.arange(3) - 1) / 7).astype(">f8"))
# Fortran-order f8 [2,3]: must be rejected.
np.save(path("f8_fortran_2x3.npy"), np.asfortranarray(np.arange(6, dtype="<f8").reshape(2, 3)))
# format version 2.0 and 3.0, f4 [3,2]: i * 0.25 - 1.
a = (np.arange(6) * 0.25 - 1).astype("<f4").reshape(3, 2)
with open(path("f4_v2_3x2.npy"), "wb") as f:
    np.lib.format.write_array(f, a, version=(2, 0))
with open(path("f4_v3_3x2.npy"), "wb") as f:
    np.lib.format.write_array(f, a, version=(3, 0))
