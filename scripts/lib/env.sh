# Sourced by scripts/test, scripts/quickstart and scripts/lock: one way to get the tools.
# remo's development environment is .venv, installed from uv.lock (exact versions, hashes).
# uv itself is pinned here and installed beside the project (.tools/) when the machine
# has no uv of this version; nothing is installed outside the checkout.
UV_VERSION=0.13.9
export UV_PYTHON_DOWNLOADS=never       # use the machine's python3, never fetch one
export UV_PYTHON="${PYTHON:-python3}"

remo_uv() {  # prints the path of a uv of UV_VERSION, installing it into .tools/ if needed
  if command -v uv >/dev/null && [ "$(uv --version | cut -d' ' -f2)" = "$UV_VERSION" ]; then
    command -v uv; return
  fi
  if [ ! -x .tools/bin/uv ] || [ "$(.tools/bin/uv --version | cut -d' ' -f2)" != "$UV_VERSION" ]; then
    echo "installing uv $UV_VERSION into .tools/ ..." >&2
    "$UV_PYTHON" -m venv .tools >&2
    .tools/bin/pip install -q --disable-pip-version-check "uv==$UV_VERSION" >&2
  fi
  echo "$PWD/.tools/bin/uv"
}
