{{/* Names, labels and the few derived values every template shares. */}}

{{- define "opsbot.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "opsbot.fullname" -}}
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

{{- define "opsbot.selectorLabels" -}}
app.kubernetes.io/name: {{ include "opsbot.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "opsbot.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "opsbot.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "opsbot.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "opsbot.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "opsbot.secretName" -}}
{{- default (include "opsbot.fullname" .) .Values.secret.name }}
{{- end }}

{{- define "opsbot.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag }}
{{- if .Values.image.digest }}
{{- printf "%s:%s@%s" .Values.image.repository $tag .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{/* The namespaces opsbot acts in: those of environments in this cluster (no kube_context), once each. */}}
{{- define "opsbot.managedNamespaces" -}}
{{- $namespaces := list }}
{{- range $name, $env := (include "opsbot.configFile" . | fromYaml).environments }}
{{- if not $env.kube_context }}
{{- $namespaces = append $namespaces $env.namespace }}
{{- end }}
{{- end }}
{{- $namespaces | uniq | sortAlpha | toJson }}
{{- end }}

{{/* The secret variables the pod reads: name -> optional (true when opsbot starts without it). */}}
{{- define "opsbot.secretVariables" -}}
{{- $vars := dict "SLACK_BOT_TOKEN" false "OPSBOT_ALERTMANAGER_TOKEN" true "ARGOCD_TOKEN" true }}
{{- if eq .Values.slack.mode "socket" }}
{{- $_ := set $vars "SLACK_APP_TOKEN" false }}
{{- else }}
{{- $_ := set $vars "SLACK_SIGNING_SECRET" false }}
{{- end }}
{{- if eq .Values.database.type "postgresql" }}
{{- $_ := set $vars "OPSBOT_DATABASE_URL" false }}
{{- end }}
{{- $vars | toJson }}
{{- end }}

{{/* opsbot.yaml: the config value; without environments, one in the release namespace; with extra
runbooks, their directory added. */}}
{{- define "opsbot.configFile" -}}
{{- $config := deepCopy .Values.config }}
{{- if not $config.environments }}
{{- $_ := set $config "environments" (dict "default" (dict "namespace" .Release.Namespace)) }}
{{- $_ := set $config "default_environment" (default "default" $config.default_environment) }}
{{- end }}
{{- if .Values.runbooks }}
{{- $dirs := default (list) $config.runbook_dirs }}
{{- $_ := set $config "runbook_dirs" (append $dirs "/etc/opsbot/runbooks") }}
{{- end }}
{{- toYaml $config }}
{{- end }}

{{- define "opsbot.ruleSelector" -}}
{{- default (printf "job=%q,namespace=%q" (include "opsbot.fullname" .) .Release.Namespace) .Values.prometheusRule.selector }}
{{- end }}
