/**
 * What stands in front of the server, as published by each vendor. Plain data: the planner reads
 * it, the docs table (docs/presets.md) lists it, and test/presets.test.ts checks both agree.
 *
 * kind:
 *  - 'proxy': an L7 proxy that pools connections to the server and reuses idle ones; the server
 *    must keep an idle connection open longer than the proxy does, so the proxy closes first.
 *  - 'l4': a pass-through balancer that silently drops idle flows; the server must close first.
 */
export type UpstreamKind = 'proxy' | 'l4'

export interface Preset {
  /** Human name, used in reasons and errors. */
  readonly title: string
  readonly kind: UpstreamKind
  /** How long the upstream keeps an idle connection to the server (ms). */
  readonly idleTimeout: number
  /** How long the upstream waits for the server's response before answering with its own error (ms), if it has such a limit. */
  readonly responseTimeout?: number
  /** Header through which the upstream tells the server the time the client has left (ms). */
  readonly deadlineHeader?: string
  /** Where the figures come from (the vendor's documentation). */
  readonly source: string
  /** The setting names, for advice and docs. */
  readonly settings: string
  /** Something to change on the upstream side, when the server alone cannot make the pair safe. */
  readonly note?: string
}

export const PRESETS = {
  'aws-alb': {
    title: 'AWS Application Load Balancer',
    kind: 'proxy',
    idleTimeout: 60_000,
    responseTimeout: 60_000,
    source: 'https://docs.aws.amazon.com/elasticloadbalancing/latest/application/edit-load-balancer-attributes.html#connection-idle-timeout',
    settings: 'idle_timeout.timeout_seconds (connection idle timeout, default 60 s; also the longest a target may stay silent before the ALB answers 504)'
  },
  'aws-nlb': {
    title: 'AWS Network Load Balancer (TCP)',
    kind: 'l4',
    idleTimeout: 350_000,
    source: 'https://docs.aws.amazon.com/elasticloadbalancing/latest/network/update-idle-timeout.html',
    settings: 'tcp.idle_timeout.seconds (default 350 s); after it the NLB answers a late packet with RST'
  },
  'gcp-https-lb': {
    title: 'Google Cloud external Application Load Balancer',
    kind: 'proxy',
    idleTimeout: 600_000,
    responseTimeout: 30_000,
    source: 'https://cloud.google.com/load-balancing/docs/https#timeouts_and_retries',
    settings: 'HTTP keepalive timeout to backends 600 s (fixed); backend service timeout (default 30 s)'
  },
  'azure-app-gateway': {
    title: 'Azure Application Gateway',
    kind: 'proxy',
    idleTimeout: 120_000,
    responseTimeout: 20_000,
    source: 'https://learn.microsoft.com/en-us/azure/application-gateway/configuration-http-settings#request-timeout',
    settings: 'backend setting "Request time-out" (default 20 s); idle backend connections kept up to 2 min'
  },
  'azure-lb': {
    title: 'Azure Load Balancer',
    kind: 'l4',
    idleTimeout: 240_000,
    source: 'https://learn.microsoft.com/en-us/azure/load-balancer/load-balancer-tcp-idle-timeout',
    settings: 'idleTimeoutInMinutes (default 4 min, 4 to 100); enable "TCP reset on idle" to get a RST instead of a silent drop'
  },
  nginx: {
    title: 'nginx (upstream keepalive)',
    kind: 'proxy',
    idleTimeout: 60_000,
    responseTimeout: 60_000,
    source: 'https://nginx.org/en/docs/http/ngx_http_upstream_module.html#keepalive_timeout',
    settings: 'upstream keepalive_timeout (default 60 s), proxy_read_timeout (default 60 s)',
    note: 'Only with the upstream `keepalive` directive (and proxy_http_version 1.1, Connection ""). Without it nginx opens a connection per request and there is no reuse race.'
  },
  haproxy: {
    title: 'HAProxy',
    kind: 'proxy',
    idleTimeout: 30_000,
    responseTimeout: 30_000,
    source: 'https://docs.haproxy.org/2.8/configuration.html#4-timeout%20server',
    settings: 'timeout server (response, and the longest a pooled idle connection is kept; commonly 30 s), pool-purge-delay (default 5 s)'
  },
  envoy: {
    title: 'Envoy',
    kind: 'proxy',
    idleTimeout: 3_600_000,
    responseTimeout: 15_000,
    deadlineHeader: 'x-envoy-expected-rq-timeout-ms',
    source: 'https://www.envoyproxy.io/docs/envoy/latest/faq/configuration/timeouts',
    settings: 'cluster common_http_protocol_options.idle_timeout (default 1 h); route timeout (default 15 s)',
    note: "Envoy keeps idle upstream connections for 1 h; set the cluster's common_http_protocol_options.idle_timeout below the server's keepAliveTimeout."
  },
  istio: {
    title: 'Istio (Envoy sidecar)',
    kind: 'proxy',
    idleTimeout: 3_600_000,
    responseTimeout: 15_000,
    deadlineHeader: 'x-envoy-expected-rq-timeout-ms',
    source: 'https://istio.io/latest/docs/reference/config/networking/destination-rule/#ConnectionPoolSettings-HTTPSettings',
    settings: 'DestinationRule trafficPolicy.connectionPool.http.idleTimeout (default 1 h); VirtualService timeout',
    note: "Set the DestinationRule's connectionPool.http.idleTimeout below the server's keepAliveTimeout."
  },
  cloudflare: {
    title: 'Cloudflare (proxied origin)',
    kind: 'proxy',
    idleTimeout: 900_000,
    responseTimeout: 100_000,
    source: 'https://developers.cloudflare.com/fundamentals/reference/connection-limits/',
    settings: 'origin keep-alive idle 900 s; proxy read timeout 100 s (then error 524)'
  },
  traefik: {
    title: 'Traefik',
    kind: 'proxy',
    idleTimeout: 90_000,
    source: 'https://doc.traefik.io/traefik/routing/services/#forwardingtimeouts',
    settings: 'serversTransport forwardingTimeouts.idleConnTimeout (default 90 s); responseHeaderTimeout (default 0: none)'
  },
  caddy: {
    title: 'Caddy',
    kind: 'proxy',
    idleTimeout: 120_000,
    source: 'https://caddyserver.com/docs/caddyfile/directives/reverse_proxy#keepalive',
    settings: 'reverse_proxy transport http keepalive (idle, default 2 min)'
  },
  'ingress-nginx': {
    title: 'Kubernetes ingress-nginx',
    kind: 'proxy',
    idleTimeout: 60_000,
    responseTimeout: 60_000,
    source: 'https://kubernetes.github.io/ingress-nginx/user-guide/nginx-configuration/configmap/#upstream-keepalive-timeout',
    settings: 'ConfigMap upstream-keepalive-timeout (default 60 s), proxy-read-timeout (default 60 s); upstream keepalive is on by default'
  }
} as const satisfies Record<string, Preset>

export type PresetName = keyof typeof PRESETS

export const PRESET_NAMES = Object.freeze(Object.keys(PRESETS)) as readonly PresetName[]
