"""Models: loading, framing examples, generating.

- `loading.py`: model and tokenizer from the hub, a local folder or a tiny config; LoRA/QLoRA wrapping;
  inference loaders for a checkpoint, a run directory or an adapter folder.
- `tokenization.py`: a tokenizer loaded the right way and the framing of every example (encoder input,
  decoder start, labels ending in eos; an LLM's chat prompt and loss mask).
- `generate.py`: the one generator (length-sorted token-budget batches, both model kinds, logit ensembles).
- `length_control.py`: summary length by dialogue length (`generation.length_control`).
- `precision.py`: which float precision a run uses, in training and generation alike.
- `memory.py`: GPU memory a training run needs, from the config alone.
"""
