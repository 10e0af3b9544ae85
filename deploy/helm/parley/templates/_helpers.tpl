{{- define "parley.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "parley.peers" -}}
{{- printf "%s-peers" (include "parley.fullname" .) -}}
{{- end -}}

{{- define "parley.selector" -}}
app.kubernetes.io/name: parley
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "parley.labels" -}}
{{ include "parley.selector" . }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* The link address of the first region's pod 0: the seed every node joins. */}}
{{- define "parley.seed" -}}
{{- $r := index .Values.regions 0 -}}
{{- printf "%s-%s-0.%s.%s.svc.%s:%d" (include "parley.fullname" .) $r.name (include "parley.peers" .) .Release.Namespace .Values.clusterDomain (int .Values.ports.raft) -}}
{{- end -}}
