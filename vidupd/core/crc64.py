"""CRC-64/XZ (OSS's x-oss-hash-crc64ecma) of parts and of the object they make up.

Parts are hashed with `fastcrc` (SIMD, several GB/s, identical values to crcmod's); the
whole object's CRC follows from the parts' CRCs and sizes (zlib's crc32_combine method,
carried to 64 bits), so Complete is checked without reading the file a second time.
"""

from __future__ import annotations

from typing import Iterable

import fastcrc

_POLY = 0xC96C5795D7870F42  # ECMA-182, bit-reflected
_ONE = 1 << 63  # x^0 in the reflected representation


def crc64(data: bytes | bytearray | memoryview, value: int = 0) -> int:
    """CRC-64/XZ of `data`, continuing from `value` (the CRC of what came before)."""
    return fastcrc.crc64.xz(data, value)


def _mult(a: int, b: int) -> int:
    """a * b modulo the polynomial (reflected)."""
    product, bit = 0, _ONE
    while a:
        if a & bit:
            product ^= b
            a ^= bit
        bit >>= 1
        b = (b >> 1) ^ _POLY if b & 1 else b >> 1
    return product


def _table() -> tuple[int, ...]:
    powers = [_ONE >> 1]  # x^1, then x^2, x^4, ... by squaring
    for _ in range(63):
        powers.append(_mult(powers[-1], powers[-1]))
    return tuple(powers)


_X_2N = _table()


def _x_pow_8n(n: int) -> int:
    """x^(8n) mod P: what appending n zero bytes does to a CRC register."""
    result, k = _ONE, 3
    while n:
        if n & 1:
            result = _mult(_X_2N[k & 63], result)
        n >>= 1
        k += 1
    return result


def crc64_combine(crc_a: int, crc_b: int, len_b: int) -> int:
    """CRC of A+B from CRC(A), CRC(B) and len(B) (init and final XOR cancel for XZ)."""
    if len_b <= 0:
        return crc_a
    return _mult(_x_pow_8n(len_b), crc_a) ^ crc_b


def crc64_of_parts(parts: Iterable[tuple[int, int]]) -> int:
    """CRC of the concatenation of parts given as (crc, size), in order."""
    total = 0
    for crc, size in parts:
        total = crc64_combine(total, crc, size)
    return total
