{{/* Object names: <release>-<chart>, cut to 63 characters (a DNS label). */}}
{{- define "modelyard.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "modelyard.fullname" -}}
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

{{/* The name of one part, e.g. "registry", refusing names past 63 characters. */}}
{{- define "modelyard.part" -}}
{{- $name := printf "%s-%s" (include "modelyard.fullname" .root) .part }}
{{- if gt (len $name) 63 }}
{{- fail (printf "object name %q is longer than 63 characters: shorten the release name, fullnameOverride or the model's name" $name) }}
{{- end }}
{{- $name }}
{{- end }}

{{- define "modelyard.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels of every object. */}}
{{- define "modelyard.labels" -}}
helm.sh/chart: {{ include "modelyard.chart" . }}
{{ include "modelyard.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "modelyard.selectorLabels" -}}
app.kubernetes.io/name: {{ include "modelyard.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels of one component: (dict "root" $ "component" "gateway"). */}}
{{- define "modelyard.componentLabels" -}}
{{ include "modelyard.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "modelyard.componentSelector" -}}
{{ include "modelyard.selectorLabels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "modelyard.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "modelyard.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "modelyard.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The shape: "true" for the scaled one (PostgreSQL and S3 set), empty for the single pod
running `modelyard serve` (the schema refuses one without the other). */}}
{{- define "modelyard.scaled" -}}
{{- if or .Values.database.url .Values.database.existingSecret .Values.artifacts.url }}true{{ end }}
{{- end }}

{{/* The chart's own Secret holds whatever secret was given inline (and, in the single-pod
shape, the generated admin token). */}}
{{- define "modelyard.secretName" -}}
{{- include "modelyard.fullname" . }}
{{- end }}

{{- define "modelyard.databaseSecret" -}}
{{- default (include "modelyard.secretName" .) .Values.database.existingSecret }}
{{- end }}

{{- define "modelyard.databaseKey" -}}
{{- if .Values.database.existingSecret }}{{ .Values.database.existingSecretKey }}{{ else }}database-url{{ end }}
{{- end }}

{{- define "modelyard.adminSecret" -}}
{{- default (include "modelyard.secretName" .) .Values.adminToken.existingSecret }}
{{- end }}

{{- define "modelyard.adminKey" -}}
{{- if .Values.adminToken.existingSecret }}{{ .Values.adminToken.existingSecretKey }}{{ else }}admin-token{{ end }}
{{- end }}

{{- define "modelyard.s3Secret" -}}
{{- default (include "modelyard.secretName" .) .Values.artifacts.s3.existingSecret }}
{{- end }}

{{/* S3 keys come from a Secret when one is named or both keys are given inline. */}}
{{- define "modelyard.s3Keys" -}}
{{- $s3 := .Values.artifacts.s3 }}
{{- if or $s3.existingSecret (and $s3.accessKeyId $s3.secretAccessKey) }}true{{ end }}
{{- end }}

{{- define "modelyard.inlineSecrets" -}}
{{- $s3 := .Values.artifacts.s3 }}
{{- if not (include "modelyard.scaled" .) }}
{{- if not .Values.adminToken.existingSecret }}true{{ end }}
{{- else if or (and .Values.database.url (not .Values.database.existingSecret)) (and .Values.adminToken.value (not .Values.adminToken.existingSecret)) (and $s3.accessKeyId (not $s3.existingSecret)) }}true{{ end }}
{{- end }}

{{/* The admin token of the single-pod shape: the value given, else the one the Secret already
holds (`lookup` finds it on upgrades), else a new random one (on install). */}}
{{- define "modelyard.servedToken" -}}
{{- if .Values.adminToken.value }}
{{- .Values.adminToken.value }}
{{- else }}
{{- $found := lookup "v1" "Secret" .Release.Namespace (include "modelyard.secretName" .) }}
{{- $data := default (dict) (get (default (dict) $found) "data") }}
{{- if hasKey $data "admin-token" }}
{{- index $data "admin-token" | b64dec }}
{{- else }}
{{- printf "myd_%s" (randAlphaNum 43) }}
{{- end }}
{{- end }}
{{- end }}

{{/* The registry's in-cluster URL, which the gateways follow. */}}
{{- define "modelyard.registryUrl" -}}
{{- printf "http://%s.%s.svc:%d" (include "modelyard.part" (dict "root" . "part" "registry")) .Release.Namespace (int .Values.registry.port) }}
{{- end }}

{{/* A model version's Service URL: the `endpoint` to register it with. */}}
{{- define "modelyard.modelUrl" -}}
{{- $port := int (default .root.Values.modelDefaults.port .model.port) }}
{{- printf "http://%s.%s.svc:%d" (include "modelyard.part" (dict "root" .root "part" (printf "model-%s" .model.name))) .root.Release.Namespace $port }}
{{- end }}

{{/* Pod-level settings shared by registry and gateway: (dict "root" $ "values" .Values.gateway). */}}
{{- define "modelyard.podPlacement" -}}
{{- with .values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- if .values.topologySpreadConstraints }}
topologySpreadConstraints:
{{- range .values.topologySpreadConstraints }}
  - {{ toYaml (merge (deepCopy .) (dict "labelSelector" (dict "matchLabels" (fromYaml (include "modelyard.componentSelector" $))))) | indent 4 | trim }}
{{- end }}
{{- end }}
{{- end }}

{{/* Labels naming a model server and the registered version it serves. */}}
{{- define "modelyard.modelLabels" -}}
modelyard.io/model-server: {{ .name }}
modelyard.io/model: {{ .model | quote }}
modelyard.io/version: {{ .version | toString | quote }}
{{- end }}

{{/* The secretKeyRef of the token gateways and version pods use on the registry: a deployer
token's Secret (gateway.registryToken.existingSecret), else the admin token's. */}}
{{- define "modelyard.registryTokenRef" -}}
{{- $token := .Values.gateway.registryToken }}
{{- if $token.existingSecret }}
name: {{ $token.existingSecret }}
key: {{ $token.existingSecretKey }}
{{- else }}
name: {{ include "modelyard.adminSecret" . }}
key: {{ include "modelyard.adminKey" . }}
{{- end }}
{{- end }}
