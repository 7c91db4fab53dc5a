{{- define "stride.name" -}}{{ .Release.Name }}-stride{{- end -}}
{{- define "stride.labels" -}}
app.kubernetes.io/name: stride
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}
{{- define "stride.selector" -}}
app.kubernetes.io/name: stride
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}
{{/* Non-root, read-only root filesystem, no privileges: for every Stride container. */}}
{{- define "stride.containerSecurity" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
readOnlyRootFilesystem: true
allowPrivilegeEscalation: false
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end -}}
{{- define "stride.guidelinesDir" -}}
{{- if .Values.ruleSets }}/etc/stride/guidelines{{ else }}/app/guidelines{{ end -}}
{{- end -}}
