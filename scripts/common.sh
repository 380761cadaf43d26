# Shared steps for scripts/setup, scripts/test and scripts/run (sourced, not run).
# Every step is idempotent: it checks first and only acts when something is missing.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
GUEST_TARGET=wasm32-wasip2
GUEST_PACKAGES=(calculator calculator-next counter types greeter resourceful hostile stateful compute scheduler relay)
# Python endpoints (scripts/build-python): endpoints/<name> or tests/components/<name>.
PYTHON_GUESTS=(calculator-py scheduler-py counter-py pyfail)
BROKER_HOST=127.0.0.1
BROKER_PORT=5672
BROKER_WAIT_SECS="${FJORD_BROKER_WAIT_SECS:-90}"
REDIS_HOST=127.0.0.1
REDIS_PORT=6379

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# The wasm32-wasip2 Rust target, for the guest components.
ensure_target() {
    if ! command -v rustup >/dev/null 2>&1; then
        say "rustup not found; assuming the $GUEST_TARGET target is installed"
        return 0
    fi
    if ! rustup target list --installed | grep -qx "$GUEST_TARGET"; then
        say "adding Rust target $GUEST_TARGET"
        rustup target add "$GUEST_TARGET"
    fi
}

# The componentize-py version interop/requirements.txt pins.
componentize_py_pin() {
    sed -n 's/^componentize-py==//p' "$ROOT/interop/requirements.txt"
}

# .venv with oslo.messaging (the real Python oslo.messaging, for interop tests) and componentize-py
# (which builds Python endpoints, scripts/build-python), at the versions interop/requirements.txt pins.
ensure_venv() {
    local py="$ROOT/.venv/bin/python"
    if [ -x "$py" ] && "$py" -c 'import oslo_messaging' >/dev/null 2>&1 \
        && [ "$("$ROOT/.venv/bin/componentize-py" --version 2>/dev/null)" = "componentize-py $(componentize_py_pin)" ]; then
        return 0
    fi
    say "creating .venv with interop/requirements.txt"
    if [ ! -x "$py" ]; then
        python3 -m venv "$ROOT/.venv" || die "python3 -m venv failed (on Debian/Ubuntu: apt-get install python3-venv)"
    fi
    "$py" -m pip install --quiet --upgrade pip
    "$py" -m pip install --quiet -r "$ROOT/interop/requirements.txt"
    "$py" -c 'import oslo_messaging' || die "oslo_messaging still not importable from .venv"
    "$ROOT/.venv/bin/componentize-py" --version >/dev/null || die "componentize-py is missing from .venv"
}

broker_answers() {
    (exec 3<>"/dev/tcp/$BROKER_HOST/$BROKER_PORT") >/dev/null 2>&1
}

# RabbitMQ answering on 127.0.0.1:5672; started detached if it does not.
ensure_broker() {
    if broker_answers; then
        return 0
    fi
    command -v rabbitmq-server >/dev/null 2>&1 \
        || die "RabbitMQ does not answer on $BROKER_HOST:$BROKER_PORT and rabbitmq-server is not installed"
    say "starting RabbitMQ (rabbitmq-server -detached)"
    rabbitmq-server -detached || true   # fails harmlessly if a node is already starting
    if command -v rabbitmqctl >/dev/null 2>&1; then
        timeout "$BROKER_WAIT_SECS" rabbitmqctl await_startup --timeout "$BROKER_WAIT_SECS" >/dev/null 2>&1 || true
    fi
    local waited=0
    until broker_answers; do
        [ "$waited" -ge "$BROKER_WAIT_SECS" ] \
            && die "RabbitMQ did not answer on $BROKER_HOST:$BROKER_PORT within ${BROKER_WAIT_SECS}s"
        sleep 1
        waited=$((waited + 1))
    done
    say "RabbitMQ is up on $BROKER_HOST:$BROKER_PORT"
}

redis_answers() {
    (exec 3<>"/dev/tcp/$REDIS_HOST/$REDIS_PORT") >/dev/null 2>&1
}

# Redis answering on 127.0.0.1:6379 (the keyvalue tests' shared store); started if it does not,
# keeping nothing on disk.
ensure_redis() {
    if redis_answers; then
        return 0
    fi
    command -v redis-server >/dev/null 2>&1 \
        || die "Redis does not answer on $REDIS_HOST:$REDIS_PORT and redis-server is not installed (on Debian/Ubuntu: apt-get install redis-server)"
    say "starting Redis on $REDIS_HOST:$REDIS_PORT"
    redis-server --daemonize yes --bind "$REDIS_HOST" --port "$REDIS_PORT" --save "" --appendonly no \
        >/dev/null || die "redis-server did not start"
    local waited=0
    until redis_answers; do
        [ "$waited" -ge 30 ] && die "Redis did not answer on $REDIS_HOST:$REDIS_PORT within 30s"
        sleep 1
        waited=$((waited + 1))
    done
}

# Build guest components (default: all of them, the Python ones too) into
# target/wasm32-wasip2/release/<name>.wasm. Names in PYTHON_GUESTS are built by scripts/build-python
# (componentize-py, from .venv), the others by cargo.
build_guests() {
    local pkgs=("$@") args=() python=() p
    [ "${#pkgs[@]}" -gt 0 ] || pkgs=("${GUEST_PACKAGES[@]}" "${PYTHON_GUESTS[@]}")
    for p in "${pkgs[@]}"; do
        if [[ " ${PYTHON_GUESTS[*]} " == *" $p "* ]]; then
            python+=("$p")
        else
            args+=(-p "$p")
        fi
    done
    if [ "${#args[@]}" -gt 0 ]; then
        say "building guest components: ${args[*]}"
        (cd "$ROOT" && cargo build --release --target "$GUEST_TARGET" "${args[@]}")
    fi
    if [ "${#python[@]}" -gt 0 ]; then
        "$ROOT/scripts/build-python" "${python[@]}"
    fi
}

# The fault-injection and TLS tests start a private RabbitMQ node and make certificates.
ensure_fault_tools() {
    command -v openssl >/dev/null 2>&1 \
        || die "openssl is missing (the TLS test makes certificates; on Debian/Ubuntu: apt-get install openssl)"
    [ -x /usr/lib/rabbitmq/bin/rabbitmq-server ] || command -v rabbitmq-server >/dev/null 2>&1 \
        || die "rabbitmq-server is missing (the fault tests start a private node)"
}
