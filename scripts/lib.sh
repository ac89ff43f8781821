# shellcheck shell=bash
# scripts/lib.sh — helpers shared by the scripts in this directory.
#
# Sourced, never executed:
#   # shellcheck source=scripts/lib.sh
#   source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# The callers run under `set -euo pipefail`; the functions assume it.
#
#   say / die                    progress and fatal-error messages on stderr
#   ROOT                         the repository root
#   load_database_url            DATABASE_URL from the environment, else .env
#   parse_pg_url URL             sets PGUSER_ PGPASS_ PGHOST_ PGPORT_ PGDB_
#   url_psql ARGS...             psql as the parsed URL's role, over TCP
#   url_with_port URL PORT [HOST] the same URL with another port (and host)
#   is_local_host HOST           127.0.0.1 / localhost / ::1 ?
#   as_root / as_postgres CMD    run CMD as root (sudo) / as the postgres user
#   admin_psql ARGS...           psql as `postgres` over the Unix socket (peer)
#   apt_update / apt_install PKG... / apt_install_missing PKG...
#   apt_has_candidate PKG / apt_candidate PKG
#   version_ge A B               is version A >= B ?
#   make_workdir NAME            temporary directory, removed on exit
#   fetch_debian_source PKG [SUITE]
#                                download, unpack and patch a Debian source
#                                package from another suite (default trixie;
#                                with MI_SOFT_FETCH=1 a failure returns 1)

[[ -n "${MI_LIB_SOURCED:-}" ]] && return 0
MI_LIB_SOURCED=1

# The oldest pgvector without the known HNSW bugs (the library's
# health::PGVECTOR_MIN_VERSION): provisioning installs at least this one.
# shellcheck disable=SC2034  # used by the scripts that source this file
PGVECTOR_MIN_VERSION=0.8.4
# When no pgvector that new could be had (no package, no reachable source),
# install-pgvector records the newest it found here, and db-up does not try
# again for a day.
# shellcheck disable=SC2034
PGVECTOR_NOTE=/var/cache/mockinterview/pgvector-newest-reachable

say() { printf '==> %s\n' "$*" >&2; }
die() { printf '==> ERROR: %s\n' "$*" >&2; exit 1; }

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# How the running script calls itself in messages ("scripts/db-up").
MI_SELF="scripts/${0##*/}"

# ---------------------------------------------------------------------------
# DATABASE_URL
# ---------------------------------------------------------------------------

# Read DATABASE_URL from .env without sourcing it (it is data, not a script):
# last `DATABASE_URL=` line wins, optional `export ` and surrounding quotes.
read_dotenv_url() {
    local line
    [[ -f "$ROOT/.env" ]] || return 0
    line="$(grep -E '^[[:space:]]*(export[[:space:]]+)?DATABASE_URL[[:space:]]*=' "$ROOT/.env" | tail -n 1 || true)"
    [[ -n "$line" ]] || return 0
    line="${line#*=}"
    line="${line#"${line%%[![:space:]]*}"}"   # trim leading blanks
    line="${line%"${line##*[![:space:]]}"}"   # trim trailing blanks
    if [[ "$line" == \"*\" || "$line" == \'*\' ]]; then
        line="${line:1:${#line}-2}"
    fi
    printf '%s' "$line"
}

# DATABASE_URL from the environment, else from .env; exported when found so
# that child processes (cargo, the other scripts) see the same URL. Leaves it
# unset/empty when neither defines it: callers decide whether that is fatal.
load_database_url() {
    if [[ -z "${DATABASE_URL:-}" ]]; then
        DATABASE_URL="$(read_dotenv_url)"
    fi
    if [[ -n "$DATABASE_URL" ]]; then
        export DATABASE_URL
    fi
}

# %XX -> byte, so user names / passwords with reserved characters work.
urldecode() {
    local s="${1//+/%2B}"  # keep literal '+' (userinfo is not form-encoded)
    s="${s//\\/\\\\}"      # protect backslashes from printf %b
    printf '%b' "${s//%/\\x}"
}

# postgres://user:password@host:port/dbname?params — plain parameter expansion.
# Sets PGUSER_ PGPASS_ PGHOST_ PGPORT_ PGDB_ (decoded; defaults as libpq's:
# host localhost, port 5432, user = OS user, dbname = user).
parse_pg_url() {
    local url="$1" rest authority db_path userinfo hostport
    case "$url" in
        postgres://* | postgresql://*) ;;
        *) die "DATABASE_URL must start with postgres:// or postgresql:// (got '${url%%://*}://...')" ;;
    esac
    rest="${url#*://}"
    rest="${rest%%\?*}"                 # query parameters are irrelevant here
    rest="${rest%%#*}"
    authority="${rest%%/*}"
    db_path=""
    [[ "$rest" == */* ]] && db_path="${rest#*/}"
    userinfo=""
    hostport="$authority"
    if [[ "$authority" == *@* ]]; then
        userinfo="${authority%@*}"     # last '@' separates userinfo from host
        hostport="${authority##*@}"
    fi
    PGUSER_="$(urldecode "${userinfo%%:*}")"
    PGPASS_=""
    [[ "$userinfo" == *:* ]] && PGPASS_="$(urldecode "${userinfo#*:}")"
    if [[ "$hostport" == \[* ]]; then  # [ipv6]:port
        PGHOST_="${hostport#\[}"
        PGHOST_="${PGHOST_%%\]*}"
        PGPORT_="${hostport#*\]}"
        PGPORT_="${PGPORT_#:}"
    else
        PGHOST_="${hostport%%:*}"
        PGPORT_=""
        [[ "$hostport" == *:* ]] && PGPORT_="${hostport#*:}"
    fi
    PGHOST_="${PGHOST_:-localhost}"
    PGPORT_="${PGPORT_:-5432}"
    PGUSER_="${PGUSER_:-$(id -un)}"
    PGDB_="$(urldecode "${db_path:-}")"
    PGDB_="${PGDB_:-$PGUSER_}"
    [[ "$PGPORT_" =~ ^[0-9]+$ ]] || die "bad port '$PGPORT_' in DATABASE_URL"
    return 0
}

# url_with_port URL PORT [HOST]: the URL with its port (and host, when given)
# replaced; userinfo, path and query parameters are kept byte for byte.
url_with_port() {
    local url="$1" port="$2" scheme rest authority tail="" userinfo="" hostport host
    scheme="${url%%://*}"
    rest="${url#*://}"
    authority="${rest%%[/?#]*}"
    tail="${rest:${#authority}}"
    hostport="$authority"
    if [[ "$authority" == *@* ]]; then
        userinfo="${authority%@*}@"
        hostport="${authority##*@}"
    fi
    if [[ "$hostport" == \[* ]]; then
        host="${hostport%%\]*}]"
    else
        host="${hostport%%:*}"
    fi
    [[ -n "${3:-}" ]] && host="$3"
    printf '%s://%s%s:%s%s' "$scheme" "$userinfo" "$host" "$port" "$tail"
}

# psql as the parsed URL's role over TCP, connection given through libpq's PG*
# variables (handing psql the URL itself would also pass it driver-specific
# query parameters it does not know). Set per call, not exported, so they
# never leak into admin_psql. -X ignores the caller's ~/.psqlrc.
# URL_PSQL_PORT overrides the port (the standby, a pooler).
url_psql() {
    PGHOST="$PGHOST_" PGPORT="${URL_PSQL_PORT:-$PGPORT_}" PGUSER="$PGUSER_" \
        PGDATABASE="$PGDB_" PGPASSWORD="$PGPASS_" \
        PGCONNECT_TIMEOUT="${PGCONNECT_TIMEOUT:-3}" \
        psql -X -q -A -t -v ON_ERROR_STOP=1 "$@"
}

is_local_host() {
    case "$1" in
        127.0.0.1 | localhost | ::1) return 0 ;;
        *) return 1 ;;
    esac
}

# ---------------------------------------------------------------------------
# Privileges: root directly, otherwise sudo, otherwise explain.
# ---------------------------------------------------------------------------
as_root() {
    if [[ "$(id -u)" -eq 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        die "root privileges needed to run: $*  (re-run $MI_SELF as root, or install sudo)"
    fi
}

# PostgreSQL refuses to run as root; admin psql uses peer auth as `postgres`.
as_postgres() {
    if [[ "$(id -un)" == postgres ]]; then
        "$@"
    elif [[ "$(id -u)" -eq 0 ]]; then
        runuser -u postgres -- "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo -u postgres "$@"
    else
        die "need to run as the postgres OS user: $*  (re-run $MI_SELF as root, or install sudo)"
    fi
}

# psql as `postgres`, peer authentication over the Unix socket; pass -p PORT
# and -d DB. `cd /`: that user may not be allowed into the caller's cwd;
# `env -u`: connection settings from the caller's environment must not
# redirect this admin connection.
admin_psql() {
    (cd / && as_postgres env -u PGHOST -u PGHOSTADDR -u PGUSER -u PGPASSWORD \
        -u PGDATABASE -u PGSERVICE -u PGOPTIONS -u PGPORT \
        psql -X -q -v ON_ERROR_STOP=1 "$@")
}

# ---------------------------------------------------------------------------
# apt
# ---------------------------------------------------------------------------
APT_UPDATED=0
apt_update() {
    [[ "$APT_UPDATED" == 1 ]] && return 0
    say "apt-get update"
    as_root apt-get update -qq || say "apt-get update failed; trying with the existing package lists"
    APT_UPDATED=1
}

# Install packages; on failure (stale or missing package lists, as on fresh
# Docker images) refresh the lists once and retry.
apt_install() {
    say "apt-get install $*"
    if ! as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@"; then
        [[ "$APT_UPDATED" == 1 ]] && die "apt-get install $* failed"
        apt_update
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" ||
            die "apt-get install $* failed"
    fi
}

# Install only those of the packages that are not installed yet: naming an
# installed package to apt-get install upgrades it (and its libraries, e.g.
# libssl3 under a running server), which build dependencies do not need.
apt_install_missing() {
    local p
    local -a missing=()
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
            missing+=("$p")
    done
    [[ ${#missing[@]} -eq 0 ]] || apt_install "${missing[@]}"
}

# apt's candidate version of package $1 (empty when there is none).
apt_candidate() {
    local cand
    cand="$(apt-cache policy "$1" 2>/dev/null | awk '/Candidate:/ { print $2 }')"
    [[ "$cand" == "(none)" ]] && cand=""
    printf '%s' "$cand"
}

# Has apt an installation candidate for package $1?
apt_has_candidate() {
    [[ -n "$(apt_candidate "$1")" ]]
}

# version_ge A B: is version A >= B? (dotted numbers; Debian epochs and
# revisions are fine too: sort -V orders them sensibly for this purpose).
version_ge() {
    [[ "$(printf '%s\n%s\n' "$1" "$2" | sort -V | head -n 1)" == "$2" ]]
}

# ---------------------------------------------------------------------------
# Temporary directories, removed when the script exits (whatever the reason).
# ---------------------------------------------------------------------------
MI_WORKDIRS=()
_mi_cleanup() {
    local d
    for d in "${MI_WORKDIRS[@]}"; do
        [[ -n "$d" ]] && rm -rf -- "$d"
    done
    return 0
}

# make_workdir NAME: creates a private temp directory and sets MI_WORKDIR to
# its path. (It sets a variable rather than printing the path because
# `dir="$(make_workdir x)"` would register the cleanup in a subshell.)
make_workdir() {
    MI_WORKDIR="$(mktemp -d "${TMPDIR:-/tmp}/$1.XXXXXX")"
    MI_WORKDIRS+=("$MI_WORKDIR")
    trap _mi_cleanup EXIT
}

# ---------------------------------------------------------------------------
# Debian source packages from another suite.
# ---------------------------------------------------------------------------

# fetch_debian_source PKG [SUITE]
#
# Downloads source package PKG from SUITE (default trixie) of deb.debian.org,
# unpacks its upstream tarball and applies the Debian patches listed in
# debian/patches/series (security fixes, portability), like dpkg-source would.
# A private apt configuration (own sources.list, list and cache directories)
# is used, so the system's apt sources and lists are not touched.
#
# Sets DEBSRC_DIR (the unpacked, patched tree, with debian/ inside),
# DEBSRC_VERSION (upstream version, e.g. 1.24.1) and DEBSRC_DEBVERSION (the
# Debian version, e.g. 1.24.1-1+deb13u2). The files live in a temp dir that is
# removed on exit. Needs `patch` when the package has patches (build-essential
# brings it).
fetch_debian_source() {
    local pkg="$1" suite="${2:-trixie}" work tarball debtar series npatches patchfile strip
    local -a aptopts

    make_workdir "$pkg-src"
    work="$MI_WORKDIR"
    mkdir -p "$work/apt/lists/partial" "$work/apt/cache/archives/partial" "$work/dl"
    printf 'deb-src http://deb.debian.org/debian %s main\n' "$suite" >"$work/apt/sources.list"
    aptopts=(
        -o "Dir::Etc::sourcelist=$work/apt/sources.list"
        -o "Dir::Etc::sourceparts=-"
        -o "Dir::State::Lists=$work/apt/lists"
        -o "Dir::Cache=$work/apt/cache"
        -o "APT::Get::List-Cleanup=0"
    )
    # apt downloads as the `_apt` user, which cannot write into our private
    # 0700 temp dir; as root, say up front that the download runs as root
    # (what apt would fall back to anyway, with a warning per file).
    if [[ "$(id -u)" -eq 0 ]]; then
        aptopts+=(-o "APT::Sandbox::User=root")
    fi
    say "fetching Debian source package $pkg from $suite"
    if ! apt-get -q "${aptopts[@]}" update >/dev/null; then
        [[ "${MI_SOFT_FETCH:-0}" == 1 ]] || die "could not fetch the $suite source index from deb.debian.org"
        say "could not fetch the $suite source index"
        return 1
    fi
    if ! (cd "$work/dl" && apt-get -q "${aptopts[@]}" source --download-only "$pkg" >/dev/null 2>&1); then
        [[ "${MI_SOFT_FETCH:-0}" == 1 ]] || die "could not download the $pkg source package from $suite"
        say "could not download the $pkg source package from $suite"
        return 1
    fi

    tarball="$(find "$work/dl" -maxdepth 1 -name "${pkg}_*.orig.tar.*" ! -name '*.asc' | head -n 1)"
    [[ -n "$tarball" ]] || die "$pkg orig tarball not found in the source package"
    DEBSRC_DIR="$work/src"
    mkdir -p "$DEBSRC_DIR"
    tar -xf "$tarball" -C "$DEBSRC_DIR" --strip-components=1

    DEBSRC_VERSION="${tarball##*/"${pkg}"_}"
    DEBSRC_VERSION="${DEBSRC_VERSION%%.orig.tar.*}"
    DEBSRC_DEBVERSION="$DEBSRC_VERSION"

    debtar="$(find "$work/dl" -maxdepth 1 -name "${pkg}_*.debian.tar.*" | head -n 1)"
    if [[ -n "$debtar" ]]; then
        DEBSRC_DEBVERSION="${debtar##*/"${pkg}"_}"
        DEBSRC_DEBVERSION="${DEBSRC_DEBVERSION%%.debian.tar.*}"
        tar -xf "$debtar" -C "$DEBSRC_DIR"
        series="$DEBSRC_DIR/debian/patches/series"
        if [[ -f "$series" ]] && grep -q '^[^#[:space:]]' "$series"; then
            command -v patch >/dev/null 2>&1 || apt_install patch
            # quilt series: one patch per line, optional -pN, # comments.
            while read -r patchfile strip _; do
                [[ -z "$patchfile" || "$patchfile" == \#* ]] && continue
                [[ "$strip" == -p* ]] || strip=-p1
                patch -d "$DEBSRC_DIR" -s -f "$strip" <"$DEBSRC_DIR/debian/patches/$patchfile" >/dev/null ||
                    die "Debian patch $patchfile does not apply to $pkg $DEBSRC_VERSION"
            done <"$series"
            npatches="$(grep -c '^[^#[:space:]]' "$series")"
            say "unpacked $pkg $DEBSRC_DEBVERSION ($npatches Debian patches applied)"
        fi
    fi
}
