{{/* Chart name, truncated to the 63 characters a label value allows. */}}
{{- define "floe-operator.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Release-qualified name for the operator's own objects. */}}
{{- define "floe-operator.fullname" -}}
{{- if contains .Chart.Name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "floe-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "floe-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "floe-operator.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "floe-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "floe-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "floe-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "floe-operator.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/*
What the operator does in a watched namespace: reconcile StreamClusters into
the objects below. No list/watch on anything but StreamClusters and broker
Deployments; Secrets are only read by name (to check the credentials exist).
*/}}
{{- define "floe-operator.namespacedRules" -}}
- apiGroups: [floe.dev]
  resources: [streamclusters]
  verbs: [get, list, watch, patch, update]
- apiGroups: [floe.dev]
  resources: [streamclusters/status]
  verbs: [get, patch, update]
- apiGroups: [floe.dev]
  resources: [streamclusters/finalizers]
  verbs: [update]
# StreamUsers: their finalizer (kopf keeps it in metadata, hence patch) and status.
- apiGroups: [floe.dev]
  resources: [streamusers]
  verbs: [get, list, watch, patch, update]
- apiGroups: [floe.dev]
  resources: [streamusers/status]
  verbs: [get, patch, update]
- apiGroups: [floe.dev]
  resources: [streamusers/finalizers]
  verbs: [update]
# StreamLinks: the same (finalizer, status); their source credentials go to a
# Secret the brokers mount (secrets below), the link itself to the brokers' admin API.
- apiGroups: [floe.dev]
  resources: [streamlinks]
  verbs: [get, list, watch, patch, update]
- apiGroups: [floe.dev]
  resources: [streamlinks/status]
  verbs: [get, patch, update]
- apiGroups: [floe.dev]
  resources: [streamlinks/finalizers]
  verbs: [update]
# StreamTopics: as StreamUsers; list also finds another StreamTopic naming the same topic.
- apiGroups: [floe.dev]
  resources: [streamtopics]
  verbs: [get, list, watch, patch, update]
- apiGroups: [floe.dev]
  resources: [streamtopics/status]
  verbs: [get, patch, update]
- apiGroups: [floe.dev]
  resources: [streamtopics/finalizers]
  verbs: [update]
- apiGroups: [""]
  resources: [events]
  verbs: [create, patch]
- apiGroups: [events.k8s.io]
  resources: [events]
  verbs: [create, patch]
# Secrets: read the storage and TLS Secrets; create each cluster's Secret (once)
# and each StreamUser's, and add a key that went missing; read a StreamLink's
# password and CA and apply its keys of the cluster's link Secret.
- apiGroups: [""]
  resources: [secrets]
  verbs: [get, create, patch]
# The rebalance loop finds broker pods by label and keeps their
# controller.kubernetes.io/pod-deletion-cost annotation.
- apiGroups: [""]
  resources: [pods]
  verbs: [get, list, patch]
- apiGroups: [""]
  resources: [configmaps, services, serviceaccounts]
  verbs: [get, create, patch, delete]
- apiGroups: [apps]
  resources: [deployments]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [autoscaling]
  resources: [horizontalpodautoscalers]
  verbs: [get, create, patch, delete]
- apiGroups: [policy]
  resources: [poddisruptionbudgets]
  verbs: [get, create, patch, delete]
{{- end }}
