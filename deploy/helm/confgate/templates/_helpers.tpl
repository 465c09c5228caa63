{{/* Names, labels and the image reference. */}}

{{- define "confgate.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The release's resource name. Truncated so that "<fullname>-headless" and
"<fullname>-admin" still fit a Service name (63 characters).
*/}}
{{- define "confgate.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 54 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 54 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 54 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "confgate.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels that select this release's gateways: never change them, a
Deployment's selector is immutable. */}}
{{- define "confgate.selectorLabels" -}}
app.kubernetes.io/name: {{ include "confgate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: gateway
{{- end }}

{{/* Labels of every object but the pods, which add confgate.selectorLabels
instead of name and instance; each object adds its component. */}}
{{- define "confgate.labels" -}}
app.kubernetes.io/name: {{ include "confgate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{ include "confgate.metaLabels" . }}
{{- end }}

{{- define "confgate.metaLabels" -}}
helm.sh/chart: {{ include "confgate.chart" . }}
app.kubernetes.io/version: {{ include "confgate.tag" . | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: confgate
{{- end }}

{{/* The pods' labels: podLabels, then the chart's (which win). */}}
{{- define "confgate.podLabels" -}}
{{- $l := merge (include "confgate.selectorLabels" . | fromYaml) (include "confgate.metaLabels" . | fromYaml) (deepCopy (.Values.podLabels | default dict)) }}
{{- toYaml $l }}
{{- end }}

{{- define "confgate.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "confgate.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "confgate.tag" -}}
{{- default .Chart.AppVersion .Values.image.tag }}
{{- end }}

{{- define "confgate.image" -}}
{{- $ref := printf "%s:%s" .Values.image.repository (include "confgate.tag" .) }}
{{- with .Values.image.digest }}
{{- $ref = printf "%s@%s" $ref . }}
{{- end }}
{{- $ref }}
{{- end }}

{{/* Whether the admin Service exists: asked for, or scraped. */}}
{{- define "confgate.adminService" -}}
{{- if or .Values.adminService.enabled .Values.serviceMonitor.enabled }}true{{ end }}
{{- end }}

{{/* Whether callers must authenticate: then /metrics needs a credential. */}}
{{- define "confgate.authOn" -}}
{{- $a := .Values.auth }}
{{- if or $a.tokens.secret $a.tokens.configMap $a.jwks.secret $a.jwks.configMap .Values.tls.clientCA.secret .Values.tls.clientCA.configMap }}true{{ end }}
{{- end }}

{{/* What the termination grace period leaves after the preStop sleep and
--shutdown-grace: after the grace the gateway still closes its admin
listener (up to 1 s), its Kafka clients and its fleet watch before it
exits, and the kubelet's SIGKILL would cut that short. */}}
{{- define "confgate.stopMarginSeconds" -}}10{{- end }}

{{/* The least terminationGracePeriodSeconds: preStop sleep + shutdown
grace + the margin. */}}
{{- define "confgate.minTerminationGrace" -}}
{{- $d := .Values.drain }}
{{- add (int $d.preStopSleepSeconds) (int $d.shutdownGraceSeconds) (int (include "confgate.stopMarginSeconds" .)) }}
{{- end }}

{{/* terminationGracePeriodSeconds: the least unless given. */}}
{{- define "confgate.terminationGrace" -}}
{{- $d := .Values.drain }}
{{- if kindIs "invalid" $d.terminationGracePeriodSeconds }}
{{- include "confgate.minTerminationGrace" . }}
{{- else }}
{{- int $d.terminationGracePeriodSeconds }}
{{- end }}
{{- end }}

{{/*
The files the gateway reads, each a volume of its own mounted read-only
under /etc/confgate/<name>: a list of {name, flag, secret|configMap, key}.
*/}}
{{- define "confgate.files" -}}
{{- $files := list }}
{{- $v := .Values }}
{{- if $v.tls.secretName }}
{{- $files = append $files (dict "name" "tls" "secret" $v.tls.secretName "items" (list (dict "flag" "tls-cert" "key" $v.tls.certKey) (dict "flag" "tls-key" "key" $v.tls.keyKey))) }}
{{- end }}
{{- range list (list "tls-client-ca" $v.tls.clientCA) (list "auth-tokens" $v.auth.tokens) (list "auth-jwks" $v.auth.jwks) (list "acl" $v.auth.acl) }}
{{- $flag := index . 0 }}
{{- $s := index . 1 }}
{{- if or $s.secret $s.configMap }}
{{- $files = append $files (dict "name" $flag "secret" $s.secret "configMap" $s.configMap "items" (list (dict "flag" $flag "key" $s.key))) }}
{{- end }}
{{- end }}
{{- $k := $v.kafka.tls.secret }}
{{- if $k.name }}
{{- $items := list }}
{{- range $flag, $key := dict "kafka-tls-ca" $k.caKey "kafka-tls-cert" $k.certKey "kafka-tls-key" $k.keyKey }}
{{- if $key }}
{{- $items = append $items (dict "flag" $flag "key" $key) }}
{{- end }}
{{- end }}
{{- $files = append $files (dict "name" "kafka-tls" "secret" $k.name "items" $items) }}
{{- end }}
{{- toJson $files }}
{{- end }}

{{/*
A kafka.topicConfig value as Kafka reads it. helm reads every number of a
values file as a float64, which prints as 3.6e+06 once it has seven
digits: whole ones print as integers (confgate.validate refuses those too
large for a float64 to hold exactly). Numbers from --set are int64
already, and fractions print as Kafka's doubles parse them.
*/}}
{{- define "confgate.kafkaConfigValue" -}}
{{- if and (kindIs "float64" .) (eq . (floor .)) }}{{ int64 . }}{{ else }}{{ . }}{{ end }}
{{- end }}

{{/*
--topic-config's value: key=value items joined by commas, as pflag's
string-to-string flag reads them. pflag splits the list as CSV, so an item
holding a comma is quoted (CSV, as the gateway's own config file loader
does); the item then cannot hold a quote, which confgate.validate refuses
(Kafka's settings never need one). A value may hold "=": pflag splits an
item at its first.
*/}}
{{- define "confgate.topicConfig" -}}
{{- $items := list }}
{{- range $k, $val := . }}
{{- $item := printf "%s=%s" $k (include "confgate.kafkaConfigValue" $val) }}
{{- if contains "," $item }}
{{- $item = printf "\"%s\"" $item }}
{{- end }}
{{- $items = append $items $item }}
{{- end }}
{{- join "," $items }}
{{- end }}

{{/* The container's arguments: `confgate serve` and its flags, one
--flag=value token each. */}}
{{- define "confgate.args" -}}
{{- $v := .Values }}
{{- $args := list "serve"
  (printf "--brokers=%s" (join "," $v.kafka.brokers))
  (printf "--topic=%s" $v.kafka.topic)
  (printf "--listen=:%d" (int $v.ports.grpc))
  (printf "--admin-listen=:%d" (int $v.ports.admin))
  (printf "--shutdown-grace=%ds" (int $v.drain.shutdownGraceSeconds))
  (printf "--log-level=%s" $v.gateway.logLevel)
  (printf "--output=%s" $v.gateway.logFormat) }}
{{- if and $v.gateway.maxConnectionAge (ne (toString $v.gateway.maxConnectionAge) "0") }}
{{- $args = append $args (printf "--max-connection-age=%s" $v.gateway.maxConnectionAge) }}
{{- $args = append $args (printf "--max-connection-age-grace=%s" $v.gateway.maxConnectionAgeGrace) }}
{{- end }}
{{- if not $v.gateway.fleet }}
{{- $args = append $args "--fleet=false" }}
{{- end }}
{{- if $v.kafka.createTopic }}
{{- $args = append $args "--create-topic" }}
{{- $args = append $args (printf "--partitions=%d" (int $v.kafka.partitions)) }}
{{- $args = append $args (printf "--replication-factor=%d" (int $v.kafka.replicationFactor)) }}
{{- with $v.kafka.topicConfig }}
{{- $args = append $args (printf "--topic-config=%s" (include "confgate.topicConfig" .)) }}
{{- end }}
{{- end }}
{{- if $v.kafka.tls.enabled }}
{{- $args = append $args "--kafka-tls" }}
{{- end }}
{{- with $v.kafka.tls.serverName }}
{{- $args = append $args (printf "--kafka-tls-server-name=%s" .) }}
{{- end }}
{{- with $v.kafka.sasl.mechanism }}
{{- $args = append $args (printf "--kafka-sasl-mechanism=%s" .) }}
{{- $args = append $args (printf "--kafka-sasl-user=%s" $v.kafka.sasl.user) }}
{{- end }}
{{- range $f := include "confgate.files" . | fromJsonArray }}
{{- range $f.items }}
{{- $args = append $args (printf "--%s=/etc/confgate/%s/%s" .flag $f.name .key) }}
{{- end }}
{{- end }}
{{- if $v.tls.adminTLS }}
{{- $args = append $args "--admin-tls" }}
{{- end }}
{{- with $v.auth.jwt }}
{{- with .issuer }}{{ $args = append $args (printf "--auth-jwt-issuer=%s" .) }}{{ end }}
{{- range .audiences }}{{ $args = append $args (printf "--auth-jwt-audience=%s" .) }}{{ end }}
{{- with .subjectPrefix }}{{ $args = append $args (printf "--auth-jwt-subject-prefix=%s" .) }}{{ end }}
{{- with .groupsClaim }}{{ $args = append $args (printf "--auth-jwt-groups-claim=%s" .) }}{{ end }}
{{- with .leeway }}{{ $args = append $args (printf "--auth-jwt-leeway=%s" .) }}{{ end }}
{{- end }}
{{- with $v.auth.certNames }}
{{- $args = append $args (printf "--auth-cert-names=%s" (join "," .)) }}
{{- end }}
{{- if $v.auth.anonymous }}
{{- $args = append $args "--auth-anonymous" }}
{{- end }}
{{- range $v.gateway.extraArgs }}
{{- $args = append $args . }}
{{- end }}
{{- toJson $args }}
{{- end }}
