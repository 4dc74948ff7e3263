# Shared by scripts/serve and scripts/test. Installs only what is missing.

PYTHON="${PYTHON:-python3}"

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

apt_install() {
  # apt_install PKG... : install Debian packages that are not installed yet.
  local missing=()
  for p in "$@"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "Installing Debian packages: ${missing[*]}"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

ensure_venv() {
  if ! "$PYTHON" -c 'import sys; assert sys.version_info >= (3, 11)' 2>/dev/null; then
    echo "Kares needs Python 3.11 or newer as '$PYTHON'." >&2
    exit 1
  fi
  if ! "$PYTHON" -c 'import venv, ensurepip' 2>/dev/null; then
    apt_install python3-venv
  fi
  if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
    .venv/bin/python -m pip install -q --upgrade pip
  fi
}

install_kares() {
  # install_kares EXTRAS : editable install; re-run only when pyproject.toml changed.
  # two statements: the words of one `local` are expanded before any is set
  local extras="$1"
  local stamp=".venv/.kares-installed${extras:+-$extras}"
  if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    # The caldav test client needs niquests, which needs urllib3-future. Its
    # wheel ships a .pth that copies itself over the real urllib3 at every
    # interpreter start, breaking requests (schemathesis' client). Built from
    # its source with URLLIB3_NO_OVERRIDE it lives beside urllib3 as
    # urllib3_future, which niquests then uses.
    URLLIB3_NO_OVERRIDE=1 .venv/bin/python -m pip install -q --no-binary urllib3-future \
      -e ".${extras:+[$extras]}"
    local pth
    for pth in .venv/lib/python*/site-packages/urllib3_future.pth; do
      [ -f "$pth" ] || continue
      # a venv where its wheel went in before: take the override out and put
      # the real urllib3's files back
      rm -f "$pth"
      .venv/bin/python -m pip install -q --force-reinstall --no-deps \
        "urllib3==$(.venv/bin/python -m pip show urllib3 | sed -n 's/^Version: //p')"
    done
    touch "$stamp"
  fi
}
