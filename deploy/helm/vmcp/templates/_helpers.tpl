{{/* Names and labels. */}}
{{- define "vmcp.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "vmcp.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "vmcp.selectorLabels" -}}
app.kubernetes.io/name: {{ include "vmcp.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "vmcp.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "vmcp.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "vmcp.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "vmcp.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/*
vmcp.configDict: .Values.config with server.host and server.port filled,
checked for what the chart needs, as YAML (fromYaml it back). Fails with the
name of the value to set.
*/}}
{{- define "vmcp.configDict" -}}
{{- $c := deepCopy (.Values.config | default dict) -}}
{{- $auth := get $c "incomingAuth" | default dict -}}
{{- $type := required "config.incomingAuth.type is required: set it to oidc (with config.incomingAuth.oidc: issuer, audience, resource), or to anonymous with config.incomingAuth.allowAnonymousNetwork: true (vmcp listens on 0.0.0.0 in the pod, so anyone who reaches the Service is a client)" (get $auth "type") -}}
{{- if and (eq $type "anonymous") (not (get $auth "allowAnonymousNetwork")) -}}
{{- fail "config.incomingAuth.type anonymous needs config.incomingAuth.allowAnonymousNetwork: true in a pod (vmcp listens on 0.0.0.0); or use type oidc" -}}
{{- end -}}
{{- if not (get $c "backends") -}}
{{- fail "config.backends is required: list at least one backend, e.g. {name: github, transport: streamable-http, url: https://mcp.github.internal/mcp}" -}}
{{- end -}}
{{- $server := get $c "server" | default dict -}}
{{- $host := get $server "host" | default "0.0.0.0" | toString -}}
{{- if has $host (list "127.0.0.1" "localhost" "::1" "[::1]") -}}
{{- fail (printf "config.server.host %q is loopback: in a pod vmcp must listen on 0.0.0.0 (leave it unset)" $host) -}}
{{- end -}}
{{- $_ := set $server "host" $host -}}
{{- $_ = set $server "port" (get $server "port" | default 4483 | int) -}}
{{- $hosts := get $server "allowedHosts" | default list -}}
{{- if and $hosts .Values.allowServiceHosts -}}
{{- $svc := include "vmcp.fullname" . -}}
{{- $ns := .Release.Namespace -}}
{{- range (list $svc (printf "%s.%s" $svc $ns) (printf "%s.%s.svc" $svc $ns) (printf "%s.%s.svc.cluster.local" $svc $ns)) -}}
{{- if not (has . $hosts) -}}{{- $hosts = append $hosts . -}}{{- end -}}
{{- end -}}
{{- $_ = set $server "allowedHosts" $hosts -}}
{{- end -}}
{{- $_ = set $c "server" $server -}}
{{- $replicas := .Values.replicaCount | int -}}
{{- if .Values.autoscaling.enabled -}}{{- $replicas = .Values.autoscaling.maxReplicas | int -}}{{- end -}}
{{- if gt $replicas 1 -}}
{{- $sessions := get $c "sessions" | default dict -}}
{{- if ne (get $sessions "store" | toString) "redis" -}}
{{- fail "more than one replica needs config.sessions.store: redis (and config.redis): in-memory sessions live in one process, so a session's next request on another replica would get 404" -}}
{{- end -}}
{{- $redis := get $c "redis" | default dict -}}
{{- if not (get $redis "address") -}}
{{- fail "more than one replica with config.sessions.store: redis needs config.redis.address: the Redis every replica keeps sessions (and rate limits) in, e.g. config.redis: {address: redis-master.mcp.svc:6379, passwordEnv: VMCP_REDIS_PASSWORD}" -}}
{{- end -}}
{{- end -}}
{{- toYaml $c -}}
{{- end -}}

{{- define "vmcp.port" -}}
{{- (include "vmcp.configDict" . | fromYaml).server.port | int -}}
{{- end -}}

{{/*
vmcp.durationSeconds: a Go duration ("5s", "1m30s", "250ms") or {duration: 5s},
rounded up to whole seconds. Call with (list VALUE DEFAULT NAME).
*/}}
{{- define "vmcp.durationSeconds" -}}
{{- $v := index . 0 | default (index . 1) -}}
{{- $name := index . 2 -}}
{{- if kindIs "map" $v -}}{{- $v = get $v "duration" | default (index . 1) -}}{{- end -}}
{{- $s := toString $v | trim -}}
{{- $num := "[0-9]+(\\.[0-9]*)?|\\.[0-9]+" -}}
{{- $term := printf "(%s)(ns|us|µs|μs|ms|s|m|h)" $num -}}
{{- if not (or (eq $s "0") (regexMatch (printf "^(%s)+$" $term) $s)) -}}
{{- fail (printf "%s: %q is not a Go duration (e.g. 5s, 1m30s)" $name $s) -}}
{{- end -}}
{{- $unit := dict "ns" 0.000000001 "us" 0.000001 "µs" 0.000001 "μs" 0.000001 "ms" 0.001 "s" 1.0 "m" 60.0 "h" 3600.0 -}}
{{- $total := 0.0 -}}
{{- range regexFindAll $term $s -1 -}}
{{- $n := regexFind (printf "^(%s)" $num) . -}}
{{- $total = addf $total (mulf (float64 $n) (get $unit (trimPrefix $n .))) -}}
{{- end -}}
{{- ceil $total | int -}}
{{- end -}}

{{/*
vmcp.terminationGrace: the pod's terminationGracePeriodSeconds; see values.yaml.
*/}}
{{- define "vmcp.terminationGrace" -}}
{{- $server := (include "vmcp.configDict" . | fromYaml).server -}}
{{- $drain := include "vmcp.durationSeconds" (list (get $server "drainGrace") "5s" "config.server.drainGrace") | int -}}
{{- $shutdown := include "vmcp.durationSeconds" (list (get $server "shutdownTimeout") "15s" "config.server.shutdownTimeout") | int -}}
{{- $needed := add (.Values.preStopSleepSeconds | int) $drain $shutdown | int -}}
{{- if kindIs "invalid" .Values.terminationGracePeriodSeconds -}}
{{- add $needed (.Values.terminationGraceMarginSeconds | int) -}}
{{- else if le (.Values.terminationGracePeriodSeconds | int) $needed -}}
{{- fail (printf "terminationGracePeriodSeconds %d must exceed preStopSleepSeconds + config.server.drainGrace + config.server.shutdownTimeout = %d s, or Kubernetes kills vmcp while it drains" (.Values.terminationGracePeriodSeconds | int) $needed) -}}
{{- else -}}
{{- .Values.terminationGracePeriodSeconds | int -}}
{{- end -}}
{{- end -}}
