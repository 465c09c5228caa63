{{/*
Checks that values.schema.json cannot express: combinations of values. Each
failure names the values to change and why, so `helm install` stops before
anything reaches the cluster rather than a gateway exiting at start.
*/}}
{{- define "confgate.validate" -}}
{{- $v := .Values }}
{{- if not $v.kafka.brokers }}
{{- fail "kafka.brokers is required: the Kafka bootstrap servers, e.g. --set 'kafka.brokers={kafka-0.kafka:9092,kafka-1.kafka:9092}'" }}
{{- end }}
{{- if not $v.kafka.topic }}
{{- fail "kafka.topic is required: the compacted config topic, e.g. --set kafka.topic=config" }}
{{- end }}
{{- if and $v.autoscaling.enabled (not (kindIs "invalid" $v.replicaCount)) }}
{{- fail "replicaCount and autoscaling.enabled are both set: the HorizontalPodAutoscaler owns the replica count; drop replicaCount and use autoscaling.minReplicas" }}
{{- end }}
{{- if $v.autoscaling.enabled }}
{{- if gt (int $v.autoscaling.minReplicas) (int $v.autoscaling.maxReplicas) }}
{{- fail (printf "autoscaling.minReplicas (%d) is above autoscaling.maxReplicas (%d)" (int $v.autoscaling.minReplicas) (int $v.autoscaling.maxReplicas)) }}
{{- end }}
{{- if or (not $v.gateway.maxConnectionAge) (eq (toString $v.gateway.maxConnectionAge) "0") }}
{{- fail "autoscaling.enabled needs gateway.maxConnectionAge: streams are long-lived, so a gateway the autoscaler adds gets existing clients only when their connections age out (e.g. 30m)" }}
{{- end }}
{{- end }}
{{- $pdb := $v.podDisruptionBudget }}
{{- if and $pdb.enabled (kindIs "invalid" $pdb.minAvailable) (kindIs "invalid" $pdb.maxUnavailable) }}
{{- fail "podDisruptionBudget.enabled needs minAvailable or maxUnavailable" }}
{{- end }}
{{- $need := int (include "confgate.minTerminationGrace" .) }}
{{- if lt (int (include "confgate.terminationGrace" .)) $need }}
{{- fail (printf "drain.terminationGracePeriodSeconds (%s) is below drain.preStopSleepSeconds + drain.shutdownGraceSeconds + %s (%d): the kubelet would kill gateways mid-drain, or before they close their Kafka clients; leave it empty to get that sum" (include "confgate.terminationGrace" .) (include "confgate.stopMarginSeconds" .) $need) }}
{{- end }}
{{- with $v.image.digest }}
{{- if not (regexMatch "^sha256:[a-f0-9]{64}$" .) }}
{{- fail (printf "image.digest %q: want sha256: and 64 lower-case hex digits" .) }}
{{- end }}
{{- end }}
{{- /* Kafka */}}
{{- $sasl := $v.kafka.sasl }}
{{- if $sasl.mechanism }}
{{- if not $sasl.user }}
{{- fail "kafka.sasl.mechanism needs kafka.sasl.user" }}
{{- end }}
{{- if not $sasl.passwordSecret.name }}
{{- fail "kafka.sasl.mechanism needs kafka.sasl.passwordSecret.name: the Secret whose key (kafka.sasl.passwordSecret.key) holds the password, passed as $CONFGATE_KAFKA_SASL_PASSWORD" }}
{{- end }}
{{- else if $sasl.user }}
{{- fail "kafka.sasl.user needs kafka.sasl.mechanism: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512" }}
{{- end }}
{{- /* topicConfig: the schema keeps keys to Kafka's setting names (no "=",
comma or quote); confgate.topicConfig quotes items holding commas, so no
value may hold a quote, and a number must print as itself */}}
{{- range $k, $val := $v.kafka.topicConfig }}
{{- if and (kindIs "string" $val) (regexMatch "[\"\r\n]" $val) }}
{{- fail (printf "kafka.topicConfig.%s: a value holding \" or a line break cannot pass through --topic-config (and no Kafka setting takes one)" $k) }}
{{- end }}
{{- if and (kindIs "float64" $val) (or (ge $val 9007199254740992.0) (le $val -9007199254740992.0)) }}
{{- fail (printf "kafka.topicConfig.%s: %v is too large for a YAML number to hold exactly (helm reads it as a float); write it as a string, e.g. %s: \"<its digits>\"" $k $val $k) }}
{{- end }}
{{- end }}
{{- $kt := $v.kafka.tls.secret }}
{{- if ne (empty $kt.certKey) (empty $kt.keyKey) }}
{{- fail "kafka.tls.secret.certKey and kafka.tls.secret.keyKey go together: a client certificate and its key" }}
{{- end }}
{{- if and $kt.certKey (not $kt.name) }}
{{- fail "kafka.tls.secret.certKey needs kafka.tls.secret.name: the Secret holding the client certificate" }}
{{- end }}
{{- /* Files from a Secret or a ConfigMap */}}
{{- range list (list "tls.clientCA" $v.tls.clientCA) (list "auth.tokens" $v.auth.tokens) (list "auth.jwks" $v.auth.jwks) (list "auth.acl" $v.auth.acl) }}
{{- $s := index . 1 }}
{{- if and $s.secret $s.configMap }}
{{- fail (printf "%s: set secret or configMap, not both" (index . 0)) }}
{{- end }}
{{- if and (or $s.secret $s.configMap) (not $s.key) }}
{{- fail (printf "%s.key is empty: the key of the file in its Secret or ConfigMap" (index . 0)) }}
{{- end }}
{{- end }}
{{- /* Server TLS and auth: the gateway's own rules, checked before a rollout */}}
{{- $clientCA := or $v.tls.clientCA.secret $v.tls.clientCA.configMap }}
{{- $tokens := or $v.auth.tokens.secret $v.auth.tokens.configMap }}
{{- $jwks := or $v.auth.jwks.secret $v.auth.jwks.configMap }}
{{- if and $clientCA (not $v.tls.secretName) }}
{{- fail "tls.clientCA needs tls.secretName: client certificates are verified only over TLS" }}
{{- end }}
{{- if and $v.tls.adminTLS (not $v.tls.secretName) }}
{{- fail "tls.adminTLS needs tls.secretName: the admin listener serves the gRPC certificate" }}
{{- end }}
{{- if and $v.tls.adminTLS $clientCA (not (or $tokens $jwks $v.auth.anonymous)) }}
{{- fail "tls.adminTLS with tls.clientCA alone requires a client certificate at every handshake, and the kubelet's probes present none: add auth.tokens, auth.jwks or auth.anonymous (certificates become optional), or leave tls.adminTLS off" }}
{{- end }}
{{- $jwt := $v.auth.jwt }}
{{- if $jwks }}
{{- if not $jwt.issuer }}
{{- fail "auth.jwks needs auth.jwt.issuer: the exact iss the JWTs carry" }}
{{- end }}
{{- if not $jwt.audiences }}
{{- fail "auth.jwks needs auth.jwt.audiences: values the JWTs' aud must contain, so tokens meant for other services do not open this one" }}
{{- end }}
{{- else if or $jwt.issuer $jwt.audiences $jwt.subjectPrefix $jwt.groupsClaim $jwt.leeway }}
{{- fail "auth.jwt settings need auth.jwks: the key set that verifies the JWTs" }}
{{- end }}
{{- if and $v.auth.certNames (not $clientCA) }}
{{- fail "auth.certNames needs tls.clientCA: only client certificates have those names" }}
{{- end }}
{{- if and $v.auth.anonymous (not (or $tokens $jwks $clientCA)) }}
{{- fail "auth.anonymous needs a credential callers may leave out: auth.tokens, auth.jwks or tls.clientCA (without any, every caller is anonymous already)" }}
{{- end }}
{{- /* The scrape: it must reach /metrics and authenticate there */}}
{{- $sm := $v.serviceMonitor }}
{{- if $sm.enabled }}
{{- $tc := $sm.tlsConfig | default dict }}
{{- $cert := or $tc.cert $tc.certFile }}
{{- if and $tc (not $v.tls.adminTLS) }}
{{- fail "serviceMonitor.tlsConfig needs tls.adminTLS: without it the admin listener and the scrape are plain HTTP, and Prometheus ignores tlsConfig (no client certificate is sent); set tls.adminTLS: true, or drop serviceMonitor.tlsConfig (and authenticate the scrape with serviceMonitor.authorization.secret)" }}
{{- end }}
{{- if and $v.tls.adminTLS (not $tc) }}
{{- fail "tls.adminTLS with serviceMonitor.enabled needs serviceMonitor.tlsConfig: the scrape is HTTPS, and without it Prometheus checks the gateways' certificate against its system CAs; set serviceMonitor.tlsConfig.ca (the CA of the certificate in tls.secretName) and serviceMonitor.tlsConfig.serverName (a name in that certificate: Prometheus dials the pods' IPs)" }}
{{- end }}
{{- if ne (not $cert) (not (or $tc.keySecret $tc.keyFile)) }}
{{- fail "serviceMonitor.tlsConfig: a client certificate (cert or certFile) and its key (keySecret or keyFile) go together" }}
{{- end }}
{{- if and (include "confgate.authOn" .) (not $sm.authorization.secret.name) }}
{{- if not $cert }}
{{- fail "serviceMonitor.enabled with auth configured: /metrics needs a credential of a principal that may read every key; set serviceMonitor.authorization.secret (a bearer token), or a client certificate in serviceMonitor.tlsConfig (cert and keySecret, with tls.adminTLS and tls.clientCA)" }}
{{- end }}
{{- if not $clientCA }}
{{- fail "serviceMonitor.tlsConfig.cert, the scrape's only credential, needs tls.clientCA: without a CA to verify client certificates the gateway asks for none, and /metrics answers 401; set tls.clientCA (the CA that signed the scraper's certificate) or serviceMonitor.authorization.secret" }}
{{- end }}
{{- end }}
{{- end }}
{{- /* extraArgs: one --flag[=value] token each, never a flag the chart sets,
nor one that stops serve from serving */}}
{{- $managed := list "brokers" "topic" "listen" "admin-listen" "shutdown-grace" "log-level" "output" "max-connection-age" "max-connection-age-grace" "fleet" "create-topic" "partitions" "replication-factor" "topic-config" "kafka-tls" "kafka-tls-ca" "kafka-tls-cert" "kafka-tls-key" "kafka-tls-server-name" "kafka-sasl-mechanism" "kafka-sasl-user" "tls-cert" "tls-key" "tls-client-ca" "admin-tls" "auth-tokens" "auth-jwks" "auth-jwt-issuer" "auth-jwt-audience" "auth-jwt-subject-prefix" "auth-jwt-groups-claim" "auth-jwt-leeway" "acl" "auth-cert-names" "auth-anonymous" }}
{{- range $v.gateway.extraArgs }}
{{- if not (regexMatch "^--[a-z0-9][a-z0-9-]*(=.*)?$" (toString .)) }}
{{- fail (printf "gateway.extraArgs: %q is not one --flag or --flag=value token" (toString .)) }}
{{- end }}
{{- $name := regexReplaceAll "^--([a-z0-9-]+).*$" (toString .) "${1}" }}
{{- if has $name $managed }}
{{- fail (printf "gateway.extraArgs: --%s is set by the chart from its own value (docs/deploy.md lists which); set that value instead" $name) }}
{{- end }}
{{- if has $name (list "print-config" "help") }}
{{- fail (printf "gateway.extraArgs: --%s makes serve print and exit without serving: the pod would restart forever" $name) }}
{{- end }}
{{- if eq $name "config" }}
{{- fail "gateway.extraArgs: --config names a settings file, which the chart does not mount and whose settings the chart's flags would beat; give each setting as its own --flag=value here" }}
{{- end }}
{{- end }}
{{- /* env: never a variable the chart sets, nor the variable of a flag the
chart or extraArgs passes: a flag beats its variable, so the variable would
be ignored, or, where the chart passes no flag (--fleet when on), it would
override the chart's value unseen */}}
{{- $extra := list }}
{{- range $v.gateway.extraArgs }}
{{- $extra = append $extra (regexReplaceAll "^--([a-z0-9-]+).*$" (toString .) "${1}") }}
{{- end }}
{{- range $v.env }}
{{- $n := toString .name }}
{{- range $f := $managed }}
{{- if eq $n (printf "CONFGATE_%s" ($f | upper | replace "-" "_")) }}
{{- fail (printf "env: %s sets --%s, which the chart sets from its own value (docs/deploy.md lists which): a flag beats its variable, and where the chart passes no flag the variable would override the chart's value unseen; set the chart's value instead" $n $f) }}
{{- end }}
{{- end }}
{{- range $f := $extra }}
{{- if eq $n (printf "CONFGATE_%s" ($f | upper | replace "-" "_")) }}
{{- fail (printf "env: %s sets --%s, which gateway.extraArgs passes: the flag wins; keep one of the two" $n $f) }}
{{- end }}
{{- end }}
{{- if eq $n "CONFGATE_CONFIG" }}
{{- fail "env: CONFGATE_CONFIG names a settings file, which the chart does not mount and whose settings the chart's flags would beat; give each setting in gateway.extraArgs" }}
{{- end }}
{{- if eq $n "CONFGATE_PRINT_CONFIG" }}
{{- fail "env: CONFGATE_PRINT_CONFIG is not read by serve (--print-config is a command-line flag only, and would stop the gateway from serving); remove it" }}
{{- end }}
{{- if and (eq $n "CONFGATE_KAFKA_SASL_PASSWORD") $v.kafka.sasl.mechanism }}
{{- fail "env: CONFGATE_KAFKA_SASL_PASSWORD is set by the chart from kafka.sasl.passwordSecret; a second entry would replace it" }}
{{- end }}
{{- if and (eq $n "GOMEMLIMIT") $v.goMemLimit }}
{{- fail "env: GOMEMLIMIT is set by the chart from goMemLimit; a second entry would replace it" }}
{{- end }}
{{- end }}
{{- end }}
