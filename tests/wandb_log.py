"""Read a W&B offline run's `run-<id>.wandb` transaction log back (tests only).

wandb 0.31 keeps an offline run's summary and config only in this file (no wandb-summary.json),
and ships no reader. The file is a LevelDB-style log: a 7-byte header, then 32 KiB blocks of
chunks (crc32 4 bytes, length 2 bytes little-endian, type 1 byte: full/first/middle/last), each
record a serialized wandb_internal_pb2.Record.
"""

import json
import struct
from pathlib import Path

from wandb.proto import wandb_internal_pb2 as pb

HEADER, BLOCK, CHUNK_HEADER = 7, 32768, 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def records(path: Path):
    data = Path(path).read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B transaction log"
    pos, pending = HEADER, b""
    while pos + CHUNK_HEADER <= len(data):
        if BLOCK - pos % BLOCK < CHUNK_HEADER:  # the block's tail is padding
            pos += BLOCK - pos % BLOCK
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + CHUNK_HEADER])
        chunk = data[pos + CHUNK_HEADER : pos + CHUNK_HEADER + length]
        pos += CHUNK_HEADER + length
        if kind == 0:  # zero padding at the end of the file
            break
        pending = chunk if kind in (FULL, FIRST) else pending + chunk
        if kind in (FULL, LAST):
            record = pb.Record()
            record.ParseFromString(pending)
            yield record


def _key(item) -> str:
    return item.key or "/".join(item.nested_key)


def read_run(path: Path) -> dict:
    """{"config", "summary", "history" (rows), "artifacts" (name → type), "run" (Record.run)} of one offline run."""
    run = {"config": {}, "summary": {}, "history": [], "artifacts": {}, "run": None}
    for record in records(path):
        kind = record.WhichOneof("record_type")
        if kind == "config":
            run["config"].update({_key(i): json.loads(i.value_json) for i in record.config.update})
        elif kind == "summary":
            run["summary"].update({_key(i): json.loads(i.value_json) for i in record.summary.update})
        elif kind == "history":
            run["history"].append({_key(i): json.loads(i.value_json) for i in record.history.item})
        elif kind == "artifact":
            run["artifacts"][record.artifact.name] = record.artifact.type
        elif kind == "run":
            run["run"] = record.run
            run["config"].update({_key(i): json.loads(i.value_json) for i in record.run.config.update})
    return run
