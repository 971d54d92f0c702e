{{/* Labels every object carries; component names the part of the broker. */}}
{{- define "inferq.labels" -}}
app.kubernetes.io/name: inferq
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/part-of: inferq
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/version: {{ .root.Values.image.tag | quote }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* Selector labels: stable across upgrades (no version). */}}
{{- define "inferq.selector" -}}
app.kubernetes.io/name: inferq
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* An inferq image, repository:tag. The tag is required and never
     "latest": a tag that moves would let two pods of one Deployment run
     different code, and a rollback would not roll back. */}}
{{- define "inferq.image" -}}
{{- $tag := required "image.tag is required: the immutable tag you built and pushed (deploy/Dockerfile)" .root.Values.image.tag -}}
{{- if eq (toString $tag) "latest" -}}
{{- fail "image.tag must not be latest: use an immutable tag (a version or the commit)" -}}
{{- end -}}
{{- $repo := index .root.Values.image .image -}}
{{- if .root.Values.image.registry -}}{{ printf "%s/" .root.Values.image.registry }}{{- end -}}
{{ printf "%s:%s" $repo (toString $tag) }}
{{- end }}

{{/* The NATS URL every service gets: each node of the installed
     StatefulSet by its stable name, or the external URL. */}}
{{- define "inferq.natsURL" -}}
{{- if .Values.nats.install -}}
{{- $urls := list -}}
{{- range $i := until (int .Values.nats.replicas) -}}
{{- $urls = append $urls (printf "nats://nats-%d.nats:4222" $i) -}}
{{- end -}}
{{ join "," $urls }}
{{- else -}}
{{ required "nats.external.url is required when nats.install is false" .Values.nats.external.url }}
{{- end -}}
{{- end }}

{{/* Redis host:port/db without credentials. */}}
{{- define "inferq.redisAddr" -}}
{{- if .Values.redis.install -}}
redis:6379/0
{{- else -}}
{{ required "redis.external.address (host:port) is required when redis.install is false" .Values.redis.external.address }}/{{ .Values.redis.external.db | default 0 }}
{{- end -}}
{{- end }}

{{- define "inferq.redisScheme" -}}
{{- if and (not .Values.redis.install) .Values.redis.external.tls -}}rediss{{- else -}}redis{{- end -}}
{{- end }}

{{/* The Redis password and the URL that carries it, for ingress and
     resultsvc: the password comes from a Secret, never from the values. */}}
{{- define "inferq.redisEnv" -}}
- name: REDIS_PASSWORD
  valueFrom:
    secretKeyRef: {name: {{ .Values.redis.passwordSecret.name }}, key: {{ .Values.redis.passwordSecret.key }}}
- {name: INFERQ_REDIS_URL, value: "{{ include "inferq.redisScheme" . }}://:$(REDIS_PASSWORD)@{{ include "inferq.redisAddr" . }}"}
{{- end }}

{{/* A service's own NATS user and its password from Secret nats.secret. */}}
{{- define "inferq.natsEnv" -}}
- {name: INFERQ_NATS_USER, value: {{ .role }}}
- name: INFERQ_NATS_PASSWORD
  valueFrom:
    secretKeyRef: {name: {{ .root.Values.nats.secret }}, key: {{ .role }}-password}
{{- end }}

{{/* Pod annotations: the config checksum rolls the pods when inferq.yaml
     changes; prometheus.io/* for annotation-based scraping. */}}
{{- define "inferq.podAnnotations" -}}
checksum/config: {{ include (print .root.Template.BasePath "/config.yaml") .root | sha256sum }}
prometheus.io/scrape: "true"
prometheus.io/port: {{ .port | quote }}
prometheus.io/path: /metrics
{{- end }}

{{- define "inferq.podSecurity" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile: {type: RuntimeDefault}
{{- end }}

{{- define "inferq.containerSecurity" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities: {drop: [ALL]}
{{- end }}

{{/* The components that connect to NATS as clients: the services and
     every worker pool. */}}
{{- define "inferq.workerComponents" -}}
{{- $out := list -}}
{{- range .Values.workers -}}{{- $out = append $out (printf "worker-%s" .name) -}}{{- end -}}
{{ join "," $out }}
{{- end }}
