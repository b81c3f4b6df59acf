"""The data report (`dsum eda`): what the data holds before any training.

Sizes and ids, length distributions (characters, turns, speakers, tokens of the config's
tokenizer), truncation at the model's max lengths, topics and their overlap between splits,
special tokens, TF-IDF terms per topic over mecab-ko morphemes, word clouds, what the clean-up
rules change, and the length shift between splits.

Modules: `build` (build_report: the steps and the files), `stats` (the numbers), `tokens` (the
config's tokenizer), `morphemes` (mecab-ko content words, in worker processes), `plots` (figures
in a Korean font), `html` (the page). Nothing is imported here, so that the spawned mecab workers
start light.

The outputs page (`dsum inspect`): where a model's dev summaries go wrong, for one system or two.
`inspect_build` (build_inspect: read, compute, write), `inspect_load` (runs, K-fold parents,
prediction files), `inspect_flags` (the error flags of a row), `inspect_align` (the board's ROUGE
matches placed on the text), `inspect_data` (scores, intervals, buckets, morphemes, the table),
`inspect_page` (the HTML; `inspect.js` draws the table and the opened row, `inspect.css`).
"""
