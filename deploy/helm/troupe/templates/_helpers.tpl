{{/*
Helpers shared by the templates. The gateway and crew templates reproduce what
crates/troupe-render emits (scripts/helm-check.sh compares them with `troupe render`), so
names, labels and variables follow crates/troupe-render/src/{labels,actor,platform}.rs.
*/}}

{{/* The Troupe image. */}}
{{- define "troupe.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{/* Labels Helm adds on top of the renderer's (release tracking). */}}
{{- define "troupe.helmLabels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
{{- end -}}

{{/*
Labels of a child, as labels.rs `child_labels` builds them; managed-by names Helm, which
manages these objects. Call with (dict "ctx" $ "name" NAME "component" COMPONENT).
*/}}
{{- define "troupe.labels" -}}
app.kubernetes.io/name: {{ .name }}
app.kubernetes.io/component: {{ .component }}
app.kubernetes.io/part-of: asya
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
{{- if or (eq .component "actor") (eq .component "crew") }}
asya.sh/actor: {{ .name }}
{{- end }}
{{ include "troupe.helmLabels" .ctx }}
{{- end -}}

{{/* The pod securityContext of every pod the chart ships. */}}
{{- define "troupe.podSecurityContext" -}}
{{- with .Values.podSecurityContext }}
securityContext:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* The securityContext of every container the chart ships. */}}
{{- define "troupe.securityContext" -}}
{{- with .Values.securityContext }}
securityContext:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* imagePullPolicy, when one is set (the renderer sets none). */}}
{{- define "troupe.pullPolicy" -}}
{{- with .Values.image.pullPolicy }}
imagePullPolicy: {{ . }}
{{- end }}
{{- end -}}

{{/*
ASYA_TRANSPORT (or the variable named by "var") and the broker's non-secret variables, as
actor.rs `transport_env`. Call with (dict "ctx" $ "var" NAME).
*/}}
{{- define "troupe.transportEnv" -}}
{{- $t := .ctx.Values.transport -}}
- name: {{ .var }}
  value: {{ $t.kind }}
{{- if eq $t.kind "rabbitmq" }}
- name: ASYA_RABBITMQ_EXCHANGE
  value: {{ $t.rabbitmq.exchange | quote }}
{{- else if eq $t.kind "sqs" }}
- name: ASYA_AWS_REGION
  value: {{ $t.sqs.region | quote }}
{{- with $t.sqs.endpoint }}
- name: ASYA_SQS_ENDPOINT
  value: {{ . | quote }}
{{- end }}
{{- else if eq $t.kind "pubsub" }}
- name: ASYA_PUBSUB_PROJECT_ID
  value: {{ $t.pubsub.project | quote }}
{{- with $t.pubsub.endpoint }}
- name: ASYA_PUBSUB_ENDPOINT
  value: {{ . | quote }}
{{- end }}
{{- end }}
{{- end -}}

{{/*
envFrom the Secret troupe-transport: required where the broker URL lives there (rabbitmq,
nats, redis), optional where pod identity may replace cloud keys (sqs, pubsub).
*/}}
{{- define "troupe.transportEnvFrom" -}}
envFrom:
- secretRef:
    name: troupe-transport
    {{- if has .Values.transport.kind (list "sqs" "pubsub") }}
    optional: true
    {{- end }}
{{- end -}}

{{/* A variable read from a Secret. Call with (dict "name" VAR "secret" SECRET "key" KEY). */}}
{{- define "troupe.secretVar" -}}
- name: {{ .name }}
  valueFrom:
    secretKeyRef:
      name: {{ .secret }}
      key: {{ .key }}
      {{- if .optional }}
      optional: true
      {{- end }}
{{- end -}}

{{/* Annotations of a ServiceAccount (the IRSA role). */}}
{{- define "troupe.saAnnotations" -}}
{{- with .Values.awsRoleArn }}
annotations:
  eks.amazonaws.com/role-arn: {{ . | quote }}
{{- end }}
{{- end -}}
