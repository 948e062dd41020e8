{{/*
Object names are fixed, whatever the release is called: the operator finds its Lease, Secrets,
Service and webhook configuration by these names (src/api/names.ts), and a cluster has one
install (the CRD and the admission objects are cluster-wide).
*/}}
{{- define "entitlement-operator.name" -}}entitlement-operator{{- end }}
{{- define "entitlement-operator.serviceAccountName" -}}entitlement-operator-controller-manager{{- end }}

{{/* The operator's account as the API server names it in requests. */}}
{{- define "entitlement-operator.username" -}}
system:serviceaccount:{{ .Release.Namespace }}:{{ include "entitlement-operator.serviceAccountName" . }}
{{- end }}

{{/* Labels of every object: the bundle's, and Helm's own (managed-by literally: EKS add-on
validation allows .Release.Name and .Release.Namespace only). */}}
{{- define "entitlement-operator.labels" -}}
app.kubernetes.io/name: entitlement-operator
app.kubernetes.io/part-of: entitlement-operator
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: Helm
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end }}

{{/* The operator's pods: what the Deployment, Services, budget and NetworkPolicy select. */}}
{{- define "entitlement-operator.selectorLabels" -}}
app.kubernetes.io/component: controller-manager
app.kubernetes.io/name: entitlement-operator
{{- end }}

{{/* Namespaces whose pods are never gated, as a YAML list (src/api/names.ts exemptNamespaces). */}}
{{- define "entitlement-operator.exemptNamespaces" -}}
{{- toYaml (uniq (concat (list "kube-system" .Release.Namespace) .Values.admission.exemptNamespaces)) }}
{{- end }}

{{/* The same, as a CEL list literal. */}}
{{- define "entitlement-operator.exemptNamespacesCel" -}}
[{{- range $i, $ns := uniq (concat (list "kube-system" .Release.Namespace) .Values.admission.exemptNamespaces) }}{{ if $i }}, {{ end }}'{{ $ns }}'{{- end }}]
{{- end }}

{{- define "entitlement-operator.namespaceSelector" -}}
matchExpressions:
  - key: kubernetes.io/metadata.name
    operator: NotIn
    values:
      {{- include "entitlement-operator.exemptNamespaces" . | nindent 6 }}
{{- end }}

{{- define "entitlement-operator.image" -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}
{{- end }}
