"""Models: loading, framing examples, generating.

- `loading.py`: model and tokenizer from the hub, a local folder or a tiny config; LoRA/QLoRA wrapping;
  inference loaders for a checkpoint, a run directory or an adapter folder.
- `tokenization.py`: `framing_for(model_config, tokenizer, prompt)`, the one place that tells a seq2seq
  model from a decoder-only one, returning the framing of every example (its public names are importable
  from here too):
  - `framing.py`: what both framings offer (encode examples, encode prompts, decode, describe, …);
  - `framing_seq2seq.py`: encoder input, decoder start, labels ending in eos;
  - `framing_chat.py`: an LLM's chat prompt, loss mask and end-of-turn; prompt settings refused early;
  - `tokenizer.py`: a tokenizer loaded the right way, the data's `#…#` tokens added as single tokens.
- `checks.py`: model settings refused before any work (LoRA targets, the prompt's chat template).
- `generate.py`: the one generator (length-sorted token-budget batches, both model kinds, logit ensembles).
- `length_control.py`: summary length by dialogue length (`generation.length_control`).
- `precision.py`: which float precision a run uses, in training and generation alike.
- `memory.py`: GPU memory a training run needs, from the config alone.
"""
