// Helpers the benchmark drivers share (bench/run.mjs, bench/live.mjs): processes, CPU and
// memory from /proc, PostgreSQL through psql, GraphQL over fetch, Redis key cleanup.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';

export function dbUrl(admin, name) {
  const u = new URL(admin);
  u.pathname = '/' + name;
  return u.toString();
}
export function psql(url, sql) {
  const r = spawnSync('psql', [url, '-v', 'ON_ERROR_STOP=1', '-Atq', '-c', sql], { encoding: 'utf8', maxBuffer: 1 << 30 });
  if (r.status !== 0) throw new Error(`psql failed: ${r.stderr}`);
  return r.stdout.trim();
}
export function run(cmd, args, env = {}, { quiet = false } = {}) {
  const r = spawnSync(cmd, args, { env: { ...process.env, ...env }, encoding: 'utf8', stdio: ['ignore', 'pipe', quiet ? 'pipe' : 'inherit'], maxBuffer: 1 << 30 });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.status}): ${r.stderr ?? ''}`);
  return r.stdout;
}
export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
export const median = (xs) => { const s = [...xs].sort((a, b) => a - b); return s.length ? (s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2) : NaN; };
const CLK_TCK = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim() || 100);

export function statFields(pid) {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  return stat.slice(stat.lastIndexOf(')') + 2).split(' '); // fields from 3 (state) on
}
/** CPU time of a process in µs (user + system). */
export function cpuUs(pid) {
  try {
    const f = statFields(pid);
    return ((Number(f[11]) + Number(f[12])) * 1e6) / CLK_TCK;
  } catch { return 0; }
}
/** CPU time of the PostgreSQL server in µs: every live server process, plus what exited
 * backends left in their postmaster's children totals (so connections that come and go
 * during a run are neither lost nor counted negative). */
export function postgresCpuUs() {
  const comm = (p) => { try { return fs.readFileSync(`/proc/${p}/comm`, 'utf8').trim(); } catch { return ''; } };
  let total = 0;
  for (const p of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(p) || comm(p) !== 'postgres') continue;
    try {
      const f = statFields(p);
      total += ((Number(f[11]) + Number(f[12])) * 1e6) / CLK_TCK;
      if (comm(f[1]) !== 'postgres') total += ((Number(f[13]) + Number(f[14])) * 1e6) / CLK_TCK; // postmaster: reaped children
    } catch {}
  }
  return total;
}
export function memKb(pid, field) {
  try {
    const m = fs.readFileSync(`/proc/${pid}/status`, 'utf8').match(new RegExp(`${field}:\\s+(\\d+)`));
    return m ? Number(m[1]) : NaN;
  } catch { return NaN; }
}

export async function waitHttp(url, body, headers = {}, timeoutMs = 60000) {
  const t0 = Date.now();
  for (;;) {
    try {
      const r = await fetch(url, { method: body ? 'POST' : 'GET', headers: { 'content-type': 'application/json', ...headers }, body });
      if (r.ok) return;
    } catch {}
    if (Date.now() - t0 > timeoutMs) throw new Error(`${url} did not come up`);
    await sleep(200);
  }
}

export async function gql(url, query, variables, token) {
  const r = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) }, body: JSON.stringify({ query, variables }) });
  const j = await r.json();
  if (j.errors) throw new Error(`${query.slice(0, 40)}…: ${JSON.stringify(j.errors)}`);
  return j.data;
}

/** Delete this run's Redis keys: a minimal RESP client (SCAN + DEL), no dependencies. */
export async function redisCleanup(redisUrl, prefix) {
  const u = new URL(redisUrl);
  const sock = net.connect(Number(u.port || 6379), u.hostname);
  let buf = '';
  sock.setEncoding('utf8');
  const cmd = (...args) => new Promise((resolve) => {
    buf = '';
    const onData = (d) => { buf += d; if (complete(buf)) { sock.off('data', onData); resolve(buf); } };
    sock.on('data', onData);
    sock.write(`*${args.length}\r\n` + args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join(''));
  });
  const complete = (s) => { try { parse(s, 0); return true; } catch { return false; } };
  function parse(s, i) {
    const end = s.indexOf('\r\n', i); if (end < 0) throw 0;
    const t = s[i], line = s.slice(i + 1, end);
    if (t === '+' || t === '-' || t === ':') return [line, end + 2];
    if (t === '$') { const n = Number(line); if (n < 0) return [null, end + 2]; if (s.length < end + 2 + n + 2) throw 0; return [s.substr(end + 2, n), end + 4 + n]; }
    if (t === '*') { let j = end + 2; const out = []; for (let k = 0; k < Number(line); k++) { const [v, nj] = parse(s, j); out.push(v); j = nj; } return [out, j]; }
    throw 0;
  }
  await new Promise((r) => sock.once('connect', r));
  let cursor = '0', deleted = 0;
  do {
    const [[next, keys]] = parse(await cmd('SCAN', cursor, 'MATCH', `${prefix}*`, 'COUNT', '1000'), 0);
    cursor = next;
    if (keys.length) { await cmd('DEL', ...keys); deleted += keys.length; }
  } while (cursor !== '0');
  sock.end();
  return deleted;
}
