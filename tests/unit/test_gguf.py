"""dsum.model.gguf without the weights: names, the cache's place, refusals (the conversion itself runs on real
weights in tests/recipes/test_real_weights.py)."""

from pathlib import Path

import pytest

from dsum.util.errors import UserError


def test_gguf_names_and_cache_folder(tmp_path, monkeypatch):
    from dsum.model.gguf import cache_root, converted_folder, is_gguf, local_model

    assert is_gguf("models/SmolLM2.Q4_1.gguf") and is_gguf(Path("X.GGUF"))
    assert not is_gguf("digit82/kobart-summarization") and not is_gguf(None)
    assert local_model("digit82/kobart-summarization") == "digit82/kobart-summarization"  # other names pass through
    monkeypatch.setenv("DSUM_CACHE", str(tmp_path / "cache"))
    assert cache_root() == tmp_path / "cache" / "gguf"
    monkeypatch.delenv("DSUM_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == tmp_path / "xdg" / "dsum" / "gguf"
    file = tmp_path / "m.gguf"
    file.write_bytes(b"GGUF")
    first = converted_folder(file)
    assert first.parent == tmp_path / "xdg" / "dsum" / "gguf" and first.name.startswith("m-") and len(first.name) == 18
    file.write_bytes(b"GGUF, another file")  # another size: converted again, into another folder
    assert converted_folder(file) != first


def test_a_missing_gguf_file_is_one_line(tmp_path):
    from dsum.model.loading import checkpoint_folder, load_pretrained

    missing = tmp_path / "absent.gguf"
    message = f"GGUF file {missing} does not exist (relative paths start from {Path.cwd()}): name a llama.cpp .gguf model file"
    for call in (lambda: load_pretrained(missing), lambda: checkpoint_folder(missing)):
        with pytest.raises(UserError) as caught:
            call()
        assert str(caught.value) == message


def test_quantization_runs_where_bitsandbytes_does():
    import torch

    from dsum.config import LoraConfig
    from dsum.model.loading import check_quantization
    from dsum.model.quantization import bitsandbytes_backend, check_optimizer, device_map

    check_quantization(LoraConfig(quantization="4bit"))  # bitsandbytes is installed: the CPU is enough
    assert bitsandbytes_backend() == ("CUDA" if torch.cuda.is_available() else "CPU")
    assert device_map() == ({"": 0} if torch.cuda.is_available() else "cpu")
    check_optimizer("adamw_torch")
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match=r"^training.optimizer=paged_adamw_8bit pages its state through CUDA memory"):
            check_optimizer("paged_adamw_8bit")
