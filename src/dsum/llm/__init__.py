"""Chat-model work over an OpenAI-compatible API (Upstage Solar by default).

client.py sends requests (concurrency, sliding-window rate limits, retries, cache); ratelimit.py
and cache.py are its parts; prompts.py builds messages and cleans answers; summarize.py is
`dsum llm summarize`. `dsum augment` (dsum.verbs.augment) reuses the client for its API methods.
"""
