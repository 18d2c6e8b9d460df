{{/* Chart name, truncated to the 63 characters of a DNS label. */}}
{{- define "machinist.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: the release name when it already contains the chart name, else "<release>-<chart>". */}}
{{- define "machinist.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "machinist.selectorLabels" -}}
app.kubernetes.io/name: {{ include "machinist.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "machinist.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "machinist.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "machinist.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "machinist.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The workload rules (files/clusterrole-rules.yaml), as a list. */}}
{{- define "machinist.rules" -}}
{{- (.Files.Get "files/clusterrole-rules.yaml" | fromYaml).rules | toYaml }}
{{- end }}

{{/* The same rules for a namespaced Role: machinist watches no Namespaces when namespaces are configured. */}}
{{- define "machinist.namespacedRules" -}}
{{- $rules := list }}
{{- range (.Files.Get "files/clusterrole-rules.yaml" | fromYaml).rules }}
{{- if not (has "namespaces" .resources) }}
{{- $rules = append $rules . }}
{{- end }}
{{- end }}
{{- $rules | toYaml }}
{{- end }}

{{- define "machinist.ecsEnabled" -}}
{{- if has "ecs" .Values.providers }}true{{ end }}
{{- end }}
