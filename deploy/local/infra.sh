# Redis, Kafka, Elasticsearch, Jaeger and the mail catcher: install, up, down, status.

# --- Redis -------------------------------------------------------------------

install_redis() { apt_install redis-server; }

up_redis() {
  if ! is_up redis; then
    require_free_ports redis
    mkdir -p "$TENX_STATE/redis"
    spawn redis --stop TERM 20 -- /usr/bin/redis-server --bind 127.0.0.1 --port "$(port_of redis)" --save '' \
      --appendonly no --dir "$TENX_STATE/redis" --requirepass "$(secret REDIS_PASSWORD)" \
      --maxmemory 256mb --maxmemory-policy allkeys-lru
  fi
  wait_for redis 20 ready_redis
}

ready_redis() { REDISCLI_AUTH="$(secret REDIS_PASSWORD)" redis-cli -p "$(port_of redis)" ping | grep -q PONG; }

status_redis() { status_line redis "$(port_of redis)" "$(redis-server --version | grep -o 'v=[0-9.]*' | cut -c3-)"; }

# --- Kafka (KRaft, one broker+controller) ------------------------------------

KAFKA_LIBS="$TENX_CACHE/kafka-$KAFKA_VERSION/libs"

install_kafka() {
  [[ -f $KAFKA_LIBS/.complete ]] && return 0
  if [[ -d $KAFKA_LIBS ]]; then
    warn "kafka: $KAFKA_LIBS is a half-finished download; fetching it again"
    rm -rf "$KAFKA_LIBS"
  fi
  say "kafka: resolving kafka_2.13 $KAFKA_VERSION and log4j2 with Maven"
  "${MVN[@]}" -f "$LOCAL_DIR/kafka/pom.xml" \
    "org.apache.maven.plugins:maven-dependency-plugin:$MAVEN_DEPENDENCY_PLUGIN:copy-dependencies" \
    -DincludeScope=runtime -DoutputDirectory="$KAFKA_LIBS" -Dkafka.version="$KAFKA_VERSION" \
    || die "kafka: Maven could not resolve the broker's jars"
  touch "$KAFKA_LIBS/.complete"
}

# A heap of 160 MB at most (the broker's data lives in the page cache, not
# the heap; its log cleaner's buffer is cut to 16 MB in server.properties,
# and what stays live after a full collection is about 50 MB): a serial
# collector grows its heap to the limit under load and gives little back,
# so the limit is what the broker keeps resident after a benchmark.
KAFKA_JAVA=(java -Xms64m -Xmx160m -XX:+UseSerialGC -cp "$KAFKA_LIBS/*"
  "-Dlog4j2.configurationFile=$LOCAL_DIR/kafka/log4j2.properties")

up_kafka() {
  local dir="$TENX_STATE/kafka"
  if ! is_up kafka; then
    require_free_ports kafka
    mkdir -p "$dir"
    sed "s#@LOG_DIR@#$dir/data#" "$LOCAL_DIR/kafka/server.properties" >"$dir/server.properties"
    if [[ ! -f $dir/data/meta.properties ]]; then
      say "kafka: formatting the KRaft storage"
      rm -rf "$dir/data"
      "${KAFKA_JAVA[@]}" kafka.tools.StorageTool format \
        -t "$("${KAFKA_JAVA[@]}" kafka.tools.StorageTool random-uuid 2>/dev/null)" \
        -c "$dir/server.properties" >>"$LOG_DIR/kafka-format.log" 2>&1 || die "kafka: storage format failed"
    fi
    spawn kafka --stop TERM 30 -- "${KAFKA_JAVA[@]}" kafka.Kafka "$dir/server.properties"
  fi
  # After a crash the broker recovers its logs first: give it longer.
  ready_kafka 180 || die "kafka was not ready after 180s; see $LOG_DIR/kafka.log"
}

# Ready when the broker answers a metadata request (the services' own check),
# within $1 seconds.
ready_kafka() { "$PY" -m tenx_common.messaging.kafka "${1:-1}" >/dev/null 2>&1; }

status_kafka() { status_line kafka "$(port_of kafka)" "$KAFKA_VERSION (KRaft)"; }

# --- Elasticsearch (integ-test-zip from Maven Central, as user tenx-es) ------

ES_HOME="$TENX_CACHE/elasticsearch-$ELASTICSEARCH_VERSION"
ES_USER=tenx-es
ES_JAVA_HOME=${ES_JAVA_HOME:-/usr/lib/jvm/java-17-openjdk-amd64}

install_elasticsearch() {
  ensure_user "$ES_USER"
  [[ -f $ES_HOME/.complete ]] && return 0
  if [[ -d $ES_HOME ]]; then
    warn "elasticsearch: $ES_HOME is a half-finished unpack; unpacking again"
    rm -rf "$ES_HOME"
  fi
  say "elasticsearch: fetching the $ELASTICSEARCH_VERSION distribution with Maven"
  local tmp="$TENX_CACHE/elasticsearch.partial"
  rm -rf "$tmp"; mkdir -p "$tmp"
  "${MVN[@]}" "org.apache.maven.plugins:maven-dependency-plugin:$MAVEN_DEPENDENCY_PLUGIN:copy" \
    -Dartifact="org.elasticsearch.distribution.integ-test-zip:elasticsearch:$ELASTICSEARCH_VERSION:zip" \
    -DoutputDirectory="$tmp" || die "elasticsearch: Maven could not fetch the distribution"
  (cd "$tmp" && unzip -q "elasticsearch-$ELASTICSEARCH_VERSION.zip") || die "elasticsearch: bad zip"
  mv "$tmp/elasticsearch-$ELASTICSEARCH_VERSION" "$ES_HOME"
  rm -rf "$tmp"
  touch "$ES_HOME/.complete"
}

up_elasticsearch() {
  local dir
  if ! is_up elasticsearch; then
    require_free_ports elasticsearch
    dir=$(user_dir "$ES_USER" elasticsearch)
    mkdir -p "$dir"/{data,logs,tmp}
    rm -rf "$dir/config"; cp -r "$ES_HOME/config" "$dir/config"
    sed -e "s#@DATA@#$dir/data#" -e "s#@LOGS@#$dir/logs#" \
      "$LOCAL_DIR/elasticsearch/elasticsearch.yml" >"$dir/config/elasticsearch.yml"
    printf -- '-Xms256m\n-Xmx256m\n' >"$dir/config/jvm.options.d/heap.options"
    # C1 only: on two cores C2's compiler threads were most of Elasticsearch's
    # CPU for its first tens of minutes, against a working load that needs
    # little (docs/performance.md).
    printf -- '-XX:TieredStopAtLevel=1\n' >"$dir/config/jvm.options.d/jit.options"
    chown -R "$ES_USER" "$dir"
    # In the foreground: its launcher runs the server and ends with it. The
    # launcher is a JVM that only waits once the server is up: a 24 MB heap
    # (its own default is 64 MB) and its first compiler serve it.
    spawn elasticsearch --user "$ES_USER" --stop TERM 60 -- env \
      CLI_JAVA_OPTS="-Xmx24m -XX:TieredStopAtLevel=1" ES_JAVA_HOME="$ES_JAVA_HOME" \
      ES_PATH_CONF="$dir/config" ES_TMPDIR="$dir/tmp" "$ES_HOME/bin/elasticsearch"
  fi
  wait_for elasticsearch 90 ready_http elasticsearch
}

# The server itself (the supervised pid is its launcher).
server_pid_elasticsearch() {
  local launcher; launcher=$(pid_of elasticsearch)
  [[ -n $launcher ]] && ps -o pid= --ppid "$launcher" | head -n1 | tr -d ' '
  return 0
}

status_elasticsearch() { status_line elasticsearch "$(port_of elasticsearch)" "$ELASTICSEARCH_VERSION"; }

# --- Jaeger v2 (built from the Go module proxy) ------------------------------

JAEGER_BIN="$BIN/jaeger-$JAEGER_VERSION"

install_jaeger() { go_build_tool github.com/jaegertracing/jaeger/cmd/jaeger jaeger "$JAEGER_BIN"; }

up_jaeger() {
  if ! is_up jaeger; then
    require_free_ports jaeger
    # Go's collector lets the heap grow to twice what is live; a soft limit
    # makes it collect sooner instead (the traces kept are bounded anyway).
    spawn jaeger --stop TERM 20 -- env GOMEMLIMIT=96MiB "$JAEGER_BIN" \
      --config "$LOCAL_DIR/jaeger/config.yaml"
  fi
  wait_for jaeger 60 ready_http jaeger
}

status_jaeger() { status_line jaeger "$(port_of jaeger)" "$JAEGER_VERSION (OTLP $(port_of jaeger 2)/$(port_of jaeger 3))"; }

# --- promtool (checks and unit-tests the SLO alert rules; no server) ------------

PROMTOOL_BIN="$BIN/promtool-$PROMTOOL_VERSION"

install_promtool() { go_build_tool github.com/prometheus/prometheus/cmd/promtool promtool "$PROMTOOL_BIN"; }

# --- kustomize (renders deploy/k8s for make k8s-validate; no cluster) ------------

KUSTOMIZE_BIN="$BIN/kustomize-$KUSTOMIZE_VERSION"

install_kustomize() { go_build_tool sigs.k8s.io/kustomize/kustomize/v5 kustomize "$KUSTOMIZE_BIN"; }

# --- Mailpit (mail catcher: SMTP 1025, HTTP API 8025) -----------------------

MAILPIT_BIN="$BIN/mailpit-$MAILPIT_VERSION"

install_mailpit() { go_build_tool github.com/axllent/mailpit mailpit "$MAILPIT_BIN"; }

up_mailpit() {
  if ! is_up mailpit; then
    require_free_ports mailpit
    mkdir -p "$TENX_STATE/mailpit"
    spawn mailpit --stop TERM 20 -- "$MAILPIT_BIN" --listen "127.0.0.1:$(port_of mailpit)" \
      --smtp "127.0.0.1:$(port_of mailpit 2)" \
      --database "$TENX_STATE/mailpit/mailpit.db" --max 50000 --smtp-auth-accept-any \
      --smtp-auth-allow-insecure --disable-version-check  # it calls out to GitHub otherwise
  fi
  wait_for mailpit 30 ready_http mailpit
}

status_mailpit() { status_line mailpit "$(port_of mailpit)" "$MAILPIT_VERSION (SMTP $(port_of mailpit 2))"; }
