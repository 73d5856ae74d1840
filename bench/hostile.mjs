// Workload (h): the hostile shapes of issue 11, sent anonymously to a running Caregraph.
// Each shape is sent `count` times one at a time, then `count` times from `parallel` loops
// at once; the table shows each shape's latency, the server's CPU per request, and its RSS
// and peak RSS before and after (the unchecked shapes crashed the process or grew it to
// tens of GB). Imported by run.mjs; also runs alone: node bench/hostile.mjs URL PID.
import fs from 'node:fs';

const nest = (open, close, n, around) => around.replace('OPEN', open.repeat(n)).replace('CLOSE', close.repeat(n));

function fanOut(levels, fan) {
  let q = 'query { ...F0 }\n';
  for (let i = 0; i < levels; i++) q += `fragment F${i} on Query { ${Array(fan).fill(`...F${i + 1}`).join(' ')} }\n`;
  return q + `fragment F${levels} on Query { me { role } }\n`;
}

function deepVariables(n) {
  let v = 1;
  for (let i = 0; i < n; i++) v = [v];
  return v;
}

/** [name, body] pairs: each body is one JSON request of at most ~250 KB. */
export function shapes() {
  const N = 30000;
  const body = (query, variables = {}) => JSON.stringify({ query, variables });
  return [
    ['nested list argument, 30,000 deep', body(nest('[', ']', N, '{ patient(id: OPEN"x"CLOSE) { id } }'))],
    ['nested input object, 30,000 deep', body(nest('{a: ', '}', N, 'mutation { createPatient(input: OPEN1CLOSE) { patient { id } } }'))],
    ['nested variable default, 30,000 deep', body(nest('[', ']', N, 'query($v: [Int] = OPEN1CLOSE) { me { role } }'))],
    ['nested selections, 30,000 deep', body(nest('me { ', '}', N, '{ OPENCLOSE }'))],
    ['fragments 2 x 60 levels (2^60 fields)', body(fanOut(60, 2))],
    ['fragments 4 x 14 levels (4^14 fields)', body(fanOut(14, 4))],
    ['fragments 10 x 10 levels (10^10 fields)', body(fanOut(10, 10))],
    ['fragment cycle', body('{ ...A } fragment A on Query { ...B ...B ...B } fragment B on Query { ...A ...A }')],
    ['JSON variables 120 deep', body('query($v: [Int]) { me { role } }', { v: deepVariables(120) })],
    ['10,000 tokens of aliases', body(`{ ${Array.from({ length: 5100 }, (_, i) => `a${i}: me`).join(' ')} }`)],
    ['a 200 KB unknown field name', body(`{ ${'x'.repeat(200000)} }`)],
  ];
}

const pct = (xs, p) => { const s = [...xs].sort((a, b) => a - b); return s[Math.min(s.length - 1, Math.floor(p * s.length))]; };

/** Send `body` `count` times from `parallel` loops; latencies in ms and refusals by limit. */
async function send(url, body, count, parallel) {
  const lat = [];
  const limits = new Map();
  let sent = 0, wrong = 0;
  const loop = async () => {
    while (sent < count) {
      sent++;
      const t0 = performance.now();
      const r = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
      const j = await r.json();
      lat.push(performance.now() - t0);
      const e = j.errors?.[0];
      const key = e?.extensions?.limit ?? e?.extensions?.code ?? 'none';
      limits.set(key, (limits.get(key) ?? 0) + 1);
      if (e?.extensions?.code !== 'VALIDATION') wrong++;
    }
  };
  await Promise.all(Array.from({ length: parallel }, loop));
  return { lat, limits, wrong };
}

export async function hostile({ url, pid, count, parallel, cpuUs, memKb, log }) {
  const rows = [];
  for (const [name, body] of shapes()) {
    const rssBefore = memKb(pid, 'VmRSS') / 1024, peakBefore = memKb(pid, 'VmHWM') / 1024;
    const c0 = cpuUs(pid);
    // One at a time (the latency of a refusal), then `parallel` at once (memory under load).
    const alone = await send(url, body, count, 1);
    const c1 = cpuUs(pid);
    const many = await send(url, body, count, parallel);
    const limits = new Map(alone.limits);
    for (const [k, v] of many.limits) limits.set(k, (limits.get(k) ?? 0) + v);
    const wrong = alone.wrong + many.wrong;
    const alive = await fetch(url.replace('/graphql', '/healthz')).then((r) => r.ok, () => false);
    rows.push({ name, bytes: body.length, p50: pct(alone.lat, 0.5), p99: pct(alone.lat, 0.99), p50Parallel: pct(many.lat, 0.5), max: Math.max(...alone.lat, ...many.lat), cpuUsPerReq: (c1 - c0) / count, rssBefore, rssAfter: memKb(pid, 'VmRSS') / 1024, peakBefore, peakAfter: memKb(pid, 'VmHWM') / 1024, refusedBy: [...limits.entries()].map(([k, v]) => `${k} ${v}`).join(', '), wrong, alive });
    if (!alive) throw new Error(`the server stopped answering after "${name}"`);
  }
  const f = (x, d = 1) => (Number.isFinite(x) ? x.toFixed(d) : '–');
  const lines = [`\n### (h) hostile shapes, anonymous: ${count} of each one at a time, then ${count} from ${parallel} loops at once\n`, `| shape | bytes | refused by | p50 ms | p99 ms | p50 ms, ${parallel} at once | max ms | server CPU µs/req | RSS MB before → after | peak RSS MB before → after |`, '|---|---|---|---|---|---|---|---|---|---|'];
  for (const r of rows) lines.push(`| ${r.name} | ${r.bytes} | ${r.refusedBy}${r.wrong ? ` (**${r.wrong} not VALIDATION**)` : ''} | ${f(r.p50, 2)} | ${f(r.p99, 2)} | ${f(r.p50Parallel, 2)} | ${f(r.max, 1)} | ${f(r.cpuUsPerReq, 0)} | ${f(r.rssBefore)} → ${f(r.rssAfter)} | ${f(r.peakBefore)} → ${f(r.peakAfter)} |`);
  const text = lines.join('\n');
  console.log(text);
  const wrongTotal = rows.reduce((a, r) => a + r.wrong, 0);
  if (wrongTotal) log(`HOSTILE CHECK FAILED: ${wrongTotal} answers were not VALIDATION refusals`);
  return { rows, text, ok: wrongTotal === 0 };
}

// Stand-alone: node bench/hostile.mjs URL PID [count] [parallel]
if (process.argv[1] && import.meta.url.endsWith(process.argv[1].split('/').pop())) {
  const [url, pid, count = '200', parallel = '8'] = process.argv.slice(2);
  const memKb = (p, field) => Number(fs.readFileSync(`/proc/${p}/status`, 'utf8').match(new RegExp(`${field}:\\s+(\\d+)`))?.[1]);
  const tck = 100;
  const cpuUs = (p) => { const s = fs.readFileSync(`/proc/${p}/stat`, 'utf8'); const x = s.slice(s.lastIndexOf(')') + 2).split(' '); return ((Number(x[11]) + Number(x[12])) * 1e6) / tck; };
  hostile({ url, pid: Number(pid), count: Number(count), parallel: Number(parallel), cpuUs, memKb, log: console.error }).then((r) => process.exit(r.ok ? 0 : 1));
}
