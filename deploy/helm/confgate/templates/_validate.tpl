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
{{- $d := $v.drain }}
{{- $need := add (int $d.preStopSleepSeconds) (int $d.shutdownGraceSeconds) }}
{{- if lt (int (include "confgate.terminationGrace" .)) $need }}
{{- fail (printf "drain.terminationGracePeriodSeconds (%s) is below drain.preStopSleepSeconds + drain.shutdownGraceSeconds (%d): the kubelet would kill gateways before their streams are told to resume elsewhere" (include "confgate.terminationGrace" .) $need) }}
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
{{- if and $v.serviceMonitor.enabled (include "confgate.authOn" .) (not $v.serviceMonitor.authorization.secret.name) (not $v.serviceMonitor.tlsConfig) }}
{{- fail "serviceMonitor.enabled with auth configured: /metrics needs a credential of a principal that may read every key; set serviceMonitor.authorization.secret (a bearer token) or serviceMonitor.tlsConfig (a client certificate, with tls.adminTLS)" }}
{{- end }}
{{- /* extraArgs: one --flag[=value] token each, never a flag the chart sets */}}
{{- $managed := list "brokers" "topic" "listen" "admin-listen" "shutdown-grace" "log-level" "output" "max-connection-age" "max-connection-age-grace" "fleet" "create-topic" "partitions" "replication-factor" "topic-config" "kafka-tls" "kafka-tls-ca" "kafka-tls-cert" "kafka-tls-key" "kafka-tls-server-name" "kafka-sasl-mechanism" "kafka-sasl-user" "tls-cert" "tls-key" "tls-client-ca" "admin-tls" "auth-tokens" "auth-jwks" "auth-jwt-issuer" "auth-jwt-audience" "auth-jwt-subject-prefix" "auth-jwt-groups-claim" "auth-jwt-leeway" "acl" "auth-cert-names" "auth-anonymous" }}
{{- range $v.gateway.extraArgs }}
{{- if not (regexMatch "^--[a-z0-9][a-z0-9-]*(=.*)?$" (toString .)) }}
{{- fail (printf "gateway.extraArgs: %q is not one --flag or --flag=value token" (toString .)) }}
{{- end }}
{{- $name := regexReplaceAll "^--([a-z0-9-]+).*$" (toString .) "${1}" }}
{{- if has $name $managed }}
{{- fail (printf "gateway.extraArgs: --%s is set by the chart from its own value (docs/deploy.md lists which); set that value instead" $name) }}
{{- end }}
{{- end }}
{{- end }}
