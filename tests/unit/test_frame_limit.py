"""An event frame's size is checked on its text before it is decoded (signalling/transport.py)."""

from __future__ import annotations

from signalling.transport import over_limit


def test_a_frame_is_measured_in_utf8_bytes_without_encoding_the_short_ones() -> None:
    assert not over_limit("a" * 100, 100)
    assert over_limit("a" * 101, 100)
    assert not over_limit("я" * 50, 100)  # 100 bytes: at the limit
    assert over_limit("я" * 51, 100)  # 102 bytes from 51 characters
    assert over_limit("😀" * 26, 100)  # 104 bytes from 26 characters
    assert not over_limit("😀" * 25, 100)
