"""Model loading: pinned named models (converted once from GGUF and cached) and any Hugging Face model."""

from models.registry import (
    NAMED_MODELS,
    ModelInfo,
    ModelNotAvailableError,
    NamedModelSpec,
    cache_dir,
    load_lm,
    load_model,
)

__all__ = [
    "NAMED_MODELS", "ModelInfo", "ModelNotAvailableError", "NamedModelSpec", "cache_dir", "load_lm", "load_model",
]
