{{- define "specops.operatorName" -}}
{{- printf "%s-specops-operator" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "specops.serviceAccountName" -}}
{{- default (include "specops.operatorName" .) .Values.serviceAccount.name -}}
{{- end -}}

{{- define "specops.labels" -}}
app.kubernetes.io/name: specops
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}
