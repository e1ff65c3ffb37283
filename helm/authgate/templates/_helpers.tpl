{{/* Names and labels shared by every template. */}}
{{- define "authgate.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "authgate.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else if contains (include "authgate.name" .) .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name (include "authgate.name" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "authgate.selectorLabels" -}}
app.kubernetes.io/name: {{ include "authgate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "authgate.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "authgate.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "authgate.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "authgate.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "authgate.secretName" -}}
{{- default (include "authgate.fullname" .) .Values.secrets.existingSecret }}
{{- end }}

{{/* The configuration file: the user's `config`, the listeners from `ports`, and the
     bundled Redis's address when it is enabled. */}}
{{- define "authgate.config" -}}
{{- $config := deepCopy .Values.config }}
{{- $_ := required "config.providerURL is required: the issuer URL of your OpenID Provider" $config.providerURL }}
{{- $_ := required "config.clientID is required: the client id registered at the provider" $config.clientID }}
{{- $_ := set $config "grpcAddress" (printf "0.0.0.0:%d" (int .Values.ports.grpc)) }}
{{- $_ := set $config "httpAddress" (printf "0.0.0.0:%d" (int .Values.ports.http)) }}
{{- $_ := set $config "adminAddress" (printf "0.0.0.0:%d" (int .Values.ports.admin)) }}
{{- if .Values.redis.enabled }}
{{- $redis := default (dict) $config.redis }}
{{- $_ := set $redis "enabled" true }}
{{- $_ := set $redis "address" (printf "%s-redis:6379" (include "authgate.fullname" .)) }}
{{- $_ := set $config "redis" $redis }}
{{- end }}
{{- toYaml $config }}
{{- end }}
