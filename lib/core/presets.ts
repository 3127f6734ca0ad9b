/**
 * What stands in front of the server, as published by each vendor. Plain data: the planner reads
 * it, the docs table (docs/presets.md) lists it, and test/presets-doc.test.ts checks both agree.
 *
 * kind:
 *  - 'proxy': an L7 proxy that pools connections to the server and reuses idle ones; the server
 *    must keep an idle connection open longer than the proxy does, so the proxy closes first.
 *  - 'l4': a pass-through balancer that drops idle flows (silently, or with a RST on the next packet);
 *    the server must close first.
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
    settings: 'idle_timeout.timeout_seconds (connection idle timeout, default 60 s, for client and target connections; a target silent that long gets a 504 from the ALB, a target that closes a connection the ALB reuses gets a 502)'
  },
  'aws-nlb': {
    title: 'AWS Network Load Balancer (TCP)',
    kind: 'l4',
    idleTimeout: 350_000,
    source: 'https://docs.aws.amazon.com/elasticloadbalancing/latest/network/update-idle-timeout.html',
    settings: 'listener attribute tcp.idle_timeout.seconds (default 350 s, 60 to 6000 s; fixed 350 s on TLS listeners); after it the NLB answers a late packet with a TCP RST'
  },
  'gcp-https-lb': {
    title: 'Google Cloud external Application Load Balancer',
    kind: 'proxy',
    idleTimeout: 600_000,
    responseTimeout: 30_000,
    source: 'https://cloud.google.com/load-balancing/docs/https#timeouts_and_retries',
    settings: 'backend HTTP keepalive timeout 600 s (fixed, not configurable; Google asks for a server keep-alive longer than 600 s); backend service timeout (default 30 s)'
  },
  'azure-app-gateway': {
    title: 'Azure Application Gateway',
    kind: 'proxy',
    idleTimeout: 120_000,
    responseTimeout: 20_000,
    source: 'https://learn.microsoft.com/en-us/azure/application-gateway/configuration-http-settings#request-timeout',
    settings: 'backend setting "Request time-out" (default 20 s; then v1 answers 502, v2 retries once on another backend and answers 504); the idle timeout of pooled backend connections is not documented, 120 s is a conservative assumption'
  },
  'azure-lb': {
    title: 'Azure Load Balancer',
    kind: 'l4',
    idleTimeout: 240_000,
    source: 'https://learn.microsoft.com/en-us/azure/load-balancer/load-balancer-tcp-idle-timeout',
    settings: 'rule idleTimeoutInMinutes (default 4 min, 4 to 100); by default an idle flow is dropped silently, enable "TCP reset" (enableTcpReset) to get a RST instead'
  },
  nginx: {
    title: 'nginx (upstream keepalive)',
    kind: 'proxy',
    idleTimeout: 60_000,
    responseTimeout: 60_000,
    source: 'https://nginx.org/en/docs/http/ngx_http_upstream_module.html#keepalive_timeout',
    settings: 'upstream keepalive_timeout (default 60 s); proxy_read_timeout (default 60 s, between two reads, then 504)',
    note: 'Applies only with the `keepalive` directive in the upstream block (plus `proxy_http_version 1.1` and `proxy_set_header Connection ""`). Without it nginx opens a new connection per request and closes it after the response, so there is no reuse race and keepAliveTimeout does not matter for nginx.'
  },
  haproxy: {
    title: 'HAProxy',
    kind: 'proxy',
    idleTimeout: 60_000,
    responseTimeout: 30_000,
    source: 'https://docs.haproxy.org/3.2/configuration.html#5.2-pool-purge-delay',
    settings: 'no idle timeout on pooled server connections (HAProxy >= 2.4): pool-purge-delay (default 5 s) closes half of the surplus idle connections each period, so an idle connection is gone within a few periods; 60 s covers 12 periods. timeout server (no default, 30 s assumed; then 504) bounds the wait for a response, not idle connections',
    note: 'If you raise pool-purge-delay, describe HAProxy by hand with an idleTimeout of about 12 times it. http-reuse safe (the default) never sends the first request of a client connection over a pooled connection, and retry-on empty-response lets HAProxy resend a request that met a connection the server had just closed.'
  },
  envoy: {
    title: 'Envoy',
    kind: 'proxy',
    idleTimeout: 3_600_000,
    responseTimeout: 15_000,
    deadlineHeader: 'x-envoy-expected-rq-timeout-ms',
    source: 'https://www.envoyproxy.io/docs/envoy/latest/faq/configuration/timeouts',
    settings: 'cluster HttpProtocolOptions common_http_protocol_options.idle_timeout (default 1 h); route timeout (default 15 s, then 504 "upstream request timeout")',
    note: "Set the cluster's common_http_protocol_options.idle_timeout (HttpProtocolOptions, default 1 h) below the server's keepAliveTimeout."
  },
  istio: {
    title: 'Istio (Envoy sidecar)',
    kind: 'proxy',
    idleTimeout: 3_600_000,
    deadlineHeader: 'x-envoy-expected-rq-timeout-ms',
    source: 'https://istio.io/latest/docs/reference/config/networking/destination-rule/#ConnectionPoolSettings-HTTPSettings',
    settings: 'DestinationRule trafficPolicy.connectionPool.http.idleTimeout (default 1 h; Sidecar inboundConnectionPool for the sidecar next to the server); VirtualService http[].timeout (default: disabled)',
    note: "Set connectionPool.http.idleTimeout (DestinationRule trafficPolicy, or the Sidecar's inboundConnectionPool for the sidecar in front of this server) below the server's keepAliveTimeout."
  },
  cloudflare: {
    title: 'Cloudflare (proxied origin)',
    kind: 'proxy',
    idleTimeout: 900_000,
    responseTimeout: 100_000,
    source: 'https://developers.cloudflare.com/fundamentals/reference/connection-limits/',
    settings: 'Proxy Idle Timeout 900 s (origin keep-alive reuse, not configurable; 520 on a reset); Proxy Read Timeout 100 s (then error 524; Enterprise can raise it)'
  },
  traefik: {
    title: 'Traefik',
    kind: 'proxy',
    idleTimeout: 90_000,
    source: 'https://doc.traefik.io/traefik/reference/routing-configuration/http/load-balancing/serverstransport/',
    settings: 'serversTransport forwardingTimeouts.idleConnTimeout (default 90 s); forwardingTimeouts.responseHeaderTimeout (default 0 s: none)'
  },
  caddy: {
    title: 'Caddy',
    kind: 'proxy',
    idleTimeout: 120_000,
    source: 'https://caddyserver.com/docs/caddyfile/directives/reverse_proxy#keepalive',
    settings: 'reverse_proxy transport http keepalive (idle timeout, default 2 min); response_header_timeout (default: none)'
  },
  'ingress-nginx': {
    title: 'Kubernetes ingress-nginx',
    kind: 'proxy',
    idleTimeout: 60_000,
    responseTimeout: 60_000,
    source: 'https://kubernetes.github.io/ingress-nginx/user-guide/nginx-configuration/configmap/#upstream-keepalive-timeout',
    settings: 'ConfigMap upstream-keepalive-timeout (default 60 s), proxy-read-timeout (default 60 s, then 504); upstream keepalive is on by default (upstream-keepalive-connections 320)'
  }
} as const satisfies Record<string, Preset>

export type PresetName = keyof typeof PRESETS

export const PRESET_NAMES = Object.freeze(Object.keys(PRESETS)) as readonly PresetName[]
