/** nginx and HAProxy from Debian, run unprivileged from a temporary prefix, stopped by PID. */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { mkdtempSync, mkdirSync, writeFileSync, rmSync, readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import net from 'node:net'
import { once } from 'node:events'
import { setTimeout as sleep } from 'node:timers/promises'

export function have (bin: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${bin}`]).status === 0
}

export async function freePort (): Promise<number> {
  const s = net.createServer()
  s.listen(0, '127.0.0.1')
  await once(s, 'listening')
  const port = (s.address() as net.AddressInfo).port
  await new Promise((resolve) => s.close(resolve))
  return port
}

async function waitForPort (port: number, child: ChildProcess, log: () => string): Promise<void> {
  const until = performance.now() + 10_000
  while (performance.now() < until) {
    if (child.exitCode !== null) throw new Error(`proxy exited with ${child.exitCode}: ${log()}`)
    const ok = await new Promise<boolean>((resolve) => {
      const c = net.connect(port, '127.0.0.1')
      c.on('connect', () => { c.destroy(); resolve(true) })
      c.on('error', () => resolve(false))
    })
    if (ok) return
    await sleep(25)
  }
  throw new Error(`proxy did not listen on ${port}: ${log()}`)
}

export interface Proxy { port: number, stop: () => Promise<void> }

async function stop (child: ChildProcess, dir: string): Promise<void> {
  if (child.exitCode === null && child.signalCode === null) {
    child.kill('SIGTERM')
    const timer = setTimeout(() => child.kill('SIGKILL'), 5000)
    await once(child, 'exit')
    clearTimeout(timer)
  }
  rmSync(dir, { recursive: true, force: true })
}

/** nginx in front of 127.0.0.1:upstreamPort. `upstream` holds lines for the upstream block, `location` for the location. */
export async function startNginx (upstreamPort: number, upstream: string, location: string): Promise<Proxy> {
  const dir = mkdtempSync(join(tmpdir(), 'hg-nginx-'))
  mkdirSync(join(dir, 'tmp'))
  const port = await freePort()
  writeFileSync(join(dir, 'nginx.conf'), `
daemon off;
master_process off;
worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log info;
events { worker_connections 128; }
http {
  access_log off;
  client_body_temp_path ${dir}/tmp; proxy_temp_path ${dir}/tmp; fastcgi_temp_path ${dir}/tmp; uwsgi_temp_path ${dir}/tmp; scgi_temp_path ${dir}/tmp;
  upstream app { server 127.0.0.1:${upstreamPort}; ${upstream} }
  server {
    listen 127.0.0.1:${port};
    location / { proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection ""; ${location} }
  }
}
`)
  const child = spawn('nginx', ['-p', dir, '-c', join(dir, 'nginx.conf'), '-e', join(dir, 'error.log')], { stdio: 'ignore' })
  const log = (): string => { try { return readFileSync(join(dir, 'error.log'), 'utf8') } catch { return '' } }
  await waitForPort(port, child, log)
  return { port, stop: () => stop(child, dir) }
}

/** HAProxy in front of 127.0.0.1:upstreamPort; `defaults` lines go in the defaults section. */
export async function startHaproxy (upstreamPort: number, defaults: string): Promise<Proxy> {
  const dir = mkdtempSync(join(tmpdir(), 'hg-haproxy-'))
  const port = await freePort()
  writeFileSync(join(dir, 'haproxy.cfg'), `
global
  maxconn 200
defaults
  mode http
  timeout connect 2s
  timeout client 10s
${defaults}
frontend fe
  bind 127.0.0.1:${port}
  default_backend be
backend be
  http-reuse always
  server s1 127.0.0.1:${upstreamPort}
`)
  let out = ''
  const child = spawn('haproxy', ['-db', '-f', join(dir, 'haproxy.cfg')], { stdio: ['ignore', 'pipe', 'pipe'] })
  child.stdout?.on('data', (d) => { out += String(d) })
  child.stderr?.on('data', (d) => { out += String(d) })
  await waitForPort(port, child, () => out)
  return { port, stop: () => stop(child, dir) }
}
