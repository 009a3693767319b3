# Redis, Kafka, Elasticsearch, Jaeger and the mail catcher: install, up, down, status.

# --- Redis -------------------------------------------------------------------

install_redis() { apt_install redis-server; }

up_redis() {
  [[ -n $(live_pid redis "redis-server 127.0.0.1:6379") ]] && return 0
  require_free_port redis 6379
  mkdir -p "$TENX_STATE/redis"
  spawn redis /usr/bin/redis-server --bind 127.0.0.1 --port 6379 --save '' --appendonly no \
    --dir "$TENX_STATE/redis" --requirepass "$(secret REDIS_PASSWORD)" --maxmemory 256mb \
    --maxmemory-policy allkeys-lru
  wait_for redis 20 env REDISCLI_AUTH="$(secret REDIS_PASSWORD)" redis-cli -p 6379 ping
}

down_redis() { stop_named redis "redis-server 127.0.0.1:6379" TERM 20; }

status_redis() {
  status_line redis "$(live_pid redis "redis-server 127.0.0.1:6379")" 6379 "$(redis-server --version | grep -o 'v=[0-9.]*' | cut -c3-)"
}

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

KAFKA_JAVA=(java -Xms256m -Xmx512m -XX:+UseSerialGC -cp "$KAFKA_LIBS/*"
  "-Dlog4j2.configurationFile=$LOCAL_DIR/kafka/log4j2.properties")

up_kafka() {
  local dir="$TENX_STATE/kafka"
  [[ -n $(live_pid kafka "kafka.Kafka $dir/server.properties") ]] && return 0
  require_free_port kafka 9092
  require_free_port kafka-controller 9093
  mkdir -p "$dir"
  sed "s#@LOG_DIR@#$dir/data#" "$LOCAL_DIR/kafka/server.properties" >"$dir/server.properties"
  if [[ ! -f $dir/data/meta.properties ]]; then
    say "kafka: formatting the KRaft storage"
    rm -rf "$dir/data"
    "${KAFKA_JAVA[@]}" kafka.tools.StorageTool format \
      -t "$("${KAFKA_JAVA[@]}" kafka.tools.StorageTool random-uuid 2>/dev/null)" \
      -c "$dir/server.properties" >>"$LOG_DIR/kafka.log" 2>&1 || die "kafka: storage format failed"
  fi
  # Only what this start writes counts: the log keeps earlier starts' lines.
  local offset; offset=$(stat -c %s "$LOG_DIR/kafka.log" 2>/dev/null || echo 0)
  spawn kafka "${KAFKA_JAVA[@]}" kafka.Kafka "$dir/server.properties"
  # After a crash the broker recovers its logs first: give it longer.
  wait_for kafka 180 kafka_started "$offset"
}

kafka_started() { tail -c +$(($1 + 1)) "$LOG_DIR/kafka.log" | grep -q "Kafka Server started"; }

down_kafka() { stop_named kafka "kafka.Kafka $TENX_STATE/kafka/server.properties" TERM 30; }

status_kafka() {
  status_line kafka "$(live_pid kafka "kafka.Kafka $TENX_STATE/kafka/server.properties")" 9092 "$KAFKA_VERSION (KRaft)"
}

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

es_pid() { live_pid elasticsearch "-Djava.io.tmpdir=$(user_dir "$ES_USER" elasticsearch)/tmp"; }

up_elasticsearch() {
  local dir
  [[ -n $(es_pid) ]] && return 0
  require_free_port elasticsearch 9200
  dir=$(user_dir "$ES_USER" elasticsearch)
  mkdir -p "$dir"/{data,logs,tmp}
  rm -rf "$dir/config"; cp -r "$ES_HOME/config" "$dir/config"
  sed -e "s#@DATA@#$dir/data#" -e "s#@LOGS@#$dir/logs#" \
    "$LOCAL_DIR/elasticsearch/elasticsearch.yml" >"$dir/config/elasticsearch.yml"
  printf -- '-Xms512m\n-Xmx512m\n' >"$dir/config/jvm.options.d/heap.options"
  chown -R "$ES_USER" "$dir"
  rm -f "$dir/es.pid"
  setsid runuser -u "$ES_USER" -- env ES_JAVA_HOME="$ES_JAVA_HOME" ES_PATH_CONF="$dir/config" \
    ES_TMPDIR="$dir/tmp" "$ES_HOME/bin/elasticsearch" -d -p "$dir/es.pid" \
    >>"$LOG_DIR/elasticsearch.log" 2>&1 || die "elasticsearch did not start; see $dir/logs"
  cp "$dir/es.pid" "$(pidfile elasticsearch)"
  wait_for elasticsearch 90 http_ok "http://127.0.0.1:9200/_cluster/health?wait_for_status=yellow&timeout=1s"
}

down_elasticsearch() {
  local pid; pid=$(es_pid)
  [[ -n $pid ]] && stop_pid elasticsearch "$pid" TERM 60
  return 0
}

status_elasticsearch() { status_line elasticsearch "$(es_pid)" 9200 "$ELASTICSEARCH_VERSION"; }

# --- Jaeger v2 (built from the Go module proxy) ------------------------------

JAEGER_BIN="$BIN/jaeger-$JAEGER_VERSION"

install_jaeger() { go_build_tool github.com/jaegertracing/jaeger/cmd/jaeger jaeger "$JAEGER_BIN"; }

up_jaeger() {
  [[ -n $(live_pid jaeger "$JAEGER_BIN") ]] && return 0
  require_free_port jaeger 16686
  require_free_port jaeger-otlp 4318
  spawn jaeger "$JAEGER_BIN" --config "$LOCAL_DIR/jaeger/config.yaml"
  wait_for jaeger 60 http_ok http://127.0.0.1:16686/api/services
}

down_jaeger() { stop_named jaeger "$JAEGER_BIN" TERM 20; }

status_jaeger() { status_line jaeger "$(live_pid jaeger "$JAEGER_BIN")" 16686 "$JAEGER_VERSION (OTLP 4317/4318)"; }

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
  [[ -n $(live_pid mailpit "$MAILPIT_BIN") ]] && return 0
  require_free_port mailpit 8025
  require_free_port mailpit-smtp 1025
  mkdir -p "$TENX_STATE/mailpit"
  spawn mailpit "$MAILPIT_BIN" --listen 127.0.0.1:8025 --smtp 127.0.0.1:1025 \
    --database "$TENX_STATE/mailpit/mailpit.db" --max 50000 --smtp-auth-accept-any --smtp-auth-allow-insecure
  wait_for mailpit 30 http_ok http://127.0.0.1:8025/api/v1/info
}

down_mailpit() { stop_named mailpit "$MAILPIT_BIN" TERM 20; }

status_mailpit() { status_line mailpit "$(live_pid mailpit "$MAILPIT_BIN")" 8025 "$MAILPIT_VERSION (SMTP 1025)"; }
