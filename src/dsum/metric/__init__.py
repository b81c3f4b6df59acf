"""The board's metric and what is built on it.

- `rouge.py`: the leaderboard's Korean ROUGE (morphemes, `rouge==1.0.1` arithmetic, mean over references).
- `bootstrap.py`: a paired bootstrap over dev rows and the spread over topic halves.
"""
