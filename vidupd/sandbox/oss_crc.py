"""CRC-64/ECMA-182 (the XZ variant OSS reports as x-oss-hash-crc64ecma).

Running values come from `fastcrc` (several GB/s); combining the CRCs of two adjacent
byte ranges is done in GF(2) so a multipart object's CRC follows from its parts' CRCs
without re-reading any bytes (needed in hash_only mode, where no bytes are kept).
"""

from __future__ import annotations

import fastcrc

# The ECMA-182 polynomial with its bits reversed (the XZ variant is reflected).
_POLY_REFLECTED = 0xC96C5795D7870F42
_TOP = 1 << 63  # x^0 in the reflected representation


class Crc64:
    """Incremental CRC-64/XZ; `update` fits `receive_body`'s digest callbacks."""

    __slots__ = ("value",)

    def __init__(self, value: int = 0):
        self.value = value

    def update(self, data: bytes | bytearray | memoryview) -> None:
        self.value = fastcrc.crc64.xz(data, self.value)


def crc64(data: bytes | bytearray | memoryview) -> int:
    return fastcrc.crc64.xz(data)


def _mul_mod(a: int, b: int) -> int:
    """a * b modulo the CRC polynomial, both in reflected representation."""
    product = 0
    bit = _TOP
    while a:
        if a & bit:
            product ^= b
            a ^= bit
        bit >>= 1
        b = (b >> 1) ^ _POLY_REFLECTED if b & 1 else b >> 1
    return product


def _powers() -> list[int]:
    """x^(2^k) mod P for k = 0..63, used to build x^(8n) by squaring."""
    table = [_TOP >> 1]  # x^1
    for _ in range(63):
        table.append(_mul_mod(table[-1], table[-1]))
    return table


_X_POW_2K = _powers()


def _x_pow_bytes(n: int) -> int:
    """x^(8n) mod P: the effect of appending n zero bytes to a CRC register."""
    result = _TOP
    k = 3  # 8n = n * 2^3
    while n:
        if n & 1:
            result = _mul_mod(_X_POW_2K[k & 63], result)
        n >>= 1
        k += 1
    return result


def crc64_combine(crc_a: int, crc_b: int, len_b: int) -> int:
    """CRC of A+B from CRC(A), CRC(B) and len(B).

    XZ's init and final XOR are both all-ones and cancel out, so only CRC(A) shifted by
    len(B) zero bytes remains to be XORed onto CRC(B).
    """
    if len_b == 0:
        return crc_a
    return _mul_mod(_x_pow_bytes(len_b), crc_a) ^ crc_b
