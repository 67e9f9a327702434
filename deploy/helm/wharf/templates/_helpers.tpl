{{/* Chart name. */}}
{{- define "wharf.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Fully qualified app name: the release name, with the chart name unless it contains it. */}}
{{- define "wharf.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "wharf.selectorLabels" -}}
app.kubernetes.io/name: {{ include "wharf.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "wharf.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "wharf.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "wharf.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}

{{/*
Wharf's configuration, before credentials are inserted: fixed listeners and data_dir,
[cache] from .Values.cache, then .Values.config, then [tls] when enabled.
*/}}
{{- define "wharf.config" -}}
listen = "0.0.0.0:{{ .Values.service.registryPort }}"
admin_listen = "0.0.0.0:{{ .Values.service.metricsPort }}"
data_dir = "/var/lib/wharf"

[cache]
max_size = {{ .Values.cache.maxSize | toString | toJson }}
high_watermark = {{ .Values.cache.highWatermark }}
low_watermark = {{ .Values.cache.lowWatermark }}
pin = {{ .Values.cache.pin | default list | toJson }}

{{ .Values.config }}
{{- if .Values.tls.enabled }}

[tls]
cert_file = "/etc/wharf/tls/tls.crt"
key_file = "/etc/wharf/tls/tls.key"
{{- end }}
{{- end -}}
