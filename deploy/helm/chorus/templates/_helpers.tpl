{{/* Names */}}
{{- define "chorus.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "chorus.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* values key -> service name used by `chorus serve` */}}
{{- define "chorus.serviceNames" -}}
licensing: licensing
election: election
pubsubGateway: pubsub-gateway
coordinator: coordinator
backbeat: backbeat
hap: hap
{{- end -}}

{{- define "chorus.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "chorus.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: chorus
{{- end -}}

{{- define "chorus.selectorLabels" -}}
app.kubernetes.io/name: {{ include "chorus.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "chorus.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "chorus.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "chorus.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "chorus.adminSecretName" -}}
{{- default (printf "%s-admin" (include "chorus.fullname" .)) .Values.adminToken.existingSecret -}}
{{- end -}}

{{/* The chart's own NATS: one user per service (files/nats-users.yaml, generated from
     chorus_cli.nats_users), passwords in this Secret keyed by user name. */}}
{{- define "chorus.natsUsersSecretName" -}}
{{- default (printf "%s-nats-users" (include "chorus.fullname" .)) .Values.nats.embedded.auth.existingSecret -}}
{{- end -}}

{{/* user name -> nats-server environment variable holding its password */}}
{{- define "chorus.natsUsers" -}}
{{- (.Files.Get "files/nats-users.yaml" | fromYaml).users | toYaml -}}
{{- end -}}

{{/* CHORUS_NATS_USER / CHORUS_NATS_PASSWORD of service .user against the chart's own NATS */}}
{{- define "chorus.natsUserEnv" -}}
{{- if .root.Values.nats.embedded.enabled -}}
- name: CHORUS_NATS_USER
  value: {{ .user | quote }}
- name: CHORUS_NATS_PASSWORD
  valueFrom:
    secretKeyRef: {name: {{ include "chorus.natsUsersSecretName" .root }}, key: {{ .user }}}
{{- end }}
{{- end -}}

{{/* The Secret with the license (keys license.json, issuer.pub): licensing.existingSecret, or
     the one the chart renders from licensing.license / licensing.issuerPub. */}}
{{- define "chorus.licenseSecretName" -}}
{{- default (printf "%s-license" (include "chorus.fullname" .)) .Values.licensing.existingSecret -}}
{{- end -}}

{{/* "true" when the values name a license (a Secret or the license inline), else empty */}}
{{- define "chorus.licenseConfigured" -}}
{{- if or .Values.licensing.existingSecret .Values.licensing.license -}}true{{- end -}}
{{- end -}}

{{/* Where the licensing pod mounts the license Secret: a directory, never a subPath, so an
     updated Secret reaches the running pod (the licensing service reloads the file). */}}
{{- define "chorus.licenseDir" -}}/etc/chorus/license{{- end -}}

{{/* CHORUS_LICENSE_REQUIRED of a service that holds a seat (every one but licensing);
     .svc is its services.<name> values: a CHORUS_LICENSE_REQUIRED in its env wins. */}}
{{- define "chorus.licenseRequiredEnv" -}}
{{- if not (hasKey .svc.env "CHORUS_LICENSE_REQUIRED") -}}
- name: CHORUS_LICENSE_REQUIRED
  value: {{ ternary "true" "false" .root.Values.licensing.required | quote }}
{{- end -}}
{{- end -}}

{{- define "chorus.natsUrl" -}}
{{- if .Values.nats.embedded.enabled -}}
{{- printf "nats://%s-nats:4222" (include "chorus.fullname" .) -}}
{{- else -}}
{{- .Values.nats.url -}}
{{- end -}}
{{- end -}}

{{- define "chorus.redisUrl" -}}
{{- if .Values.redis.embedded.enabled -}}
{{- printf "redis://%s-redis:6379/0" (include "chorus.fullname" .) -}}
{{- else -}}
{{- .Values.redis.url -}}
{{- end -}}
{{- end -}}

{{/* Environment shared by every CHORUS container. */}}
{{- define "chorus.env" -}}
- name: CHORUS_NODE_ID
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: CHORUS_ADMIN_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ include "chorus.adminSecretName" . }}
      key: admin-token
- name: CHORUS_READ_TOKENS
  valueFrom:
    secretKeyRef:
      name: {{ include "chorus.adminSecretName" . }}
      key: read-token
      optional: true
- name: CHORUS_PUBLIC_READ
  value: {{ .Values.config.publicRead | default false | quote }}
{{- /* the chart's own NATS has a user per service (chorus.natsUserEnv) instead */}}
{{- if not .Values.nats.embedded.enabled }}
{{- with .Values.nats.authSecret }}
- name: CHORUS_NATS_USER
  valueFrom:
    secretKeyRef: {name: {{ . }}, key: username, optional: true}
- name: CHORUS_NATS_PASSWORD
  valueFrom:
    secretKeyRef: {name: {{ . }}, key: password, optional: true}
- name: CHORUS_NATS_TOKEN
  valueFrom:
    secretKeyRef: {name: {{ . }}, key: token, optional: true}
{{- end }}
{{- if .Values.nats.credentialsSecret }}
- name: CHORUS_NATS_CREDS
  value: /etc/chorus/nats-creds/nats.creds
{{- end }}
{{- end }}
{{- if .Values.nats.tls.enabled }}
- name: CHORUS_NATS_TLS_CA
  value: /etc/chorus/nats-tls/ca.crt
- name: CHORUS_NATS_TLS_CERT
  value: /etc/chorus/nats-tls/tls.crt
- name: CHORUS_NATS_TLS_KEY
  value: /etc/chorus/nats-tls/tls.key
{{- end }}
{{- end -}}

{{- define "chorus.volumeMounts" -}}
- name: tmp
  mountPath: /tmp
{{- if .Values.nats.credentialsSecret }}
- name: nats-creds
  mountPath: /etc/chorus/nats-creds
  readOnly: true
{{- end }}
{{- if .Values.nats.tls.enabled }}
- name: nats-tls
  mountPath: /etc/chorus/nats-tls
  readOnly: true
{{- end }}
{{- end -}}

{{- define "chorus.volumes" -}}
- name: tmp
  emptyDir: {}
{{- if .Values.nats.credentialsSecret }}
- name: nats-creds
  secret:
    secretName: {{ .Values.nats.credentialsSecret }}
{{- end }}
{{- if .Values.nats.tls.enabled }}
- name: nats-tls
  secret:
    secretName: {{ .Values.nats.tls.secretName }}
{{- end }}
{{- end -}}

{{- define "chorus.probes" -}}
startupProbe:
  httpGet: {path: /health/live, port: http}
  periodSeconds: 2
  failureThreshold: 30
livenessProbe:
  httpGet: {path: /health/live, port: http}
  periodSeconds: 10
  timeoutSeconds: 3
  failureThreshold: 3
readinessProbe:
  httpGet: {path: /health/ready, port: http}
  periodSeconds: 5
  timeoutSeconds: 3
  failureThreshold: 2
{{- end -}}
