#!/usr/bin/env node
// The live-messaging workload (bench/README.md, "live"): N websockets signed in as synthetic
// patients on one Caregraph instance, each subscribed to its own thread; the demo doctor posts
// to those threads at a fixed rate through a second instance on the same PostgreSQL + Redis.
// Measured: latency from send to receipt, messages lost and misdelivered, each instance's RSS,
// and CPU µs per delivered message. The same job against ../shared/peers/apollo-ws (two
// instances, one Redis), stepping its rate down until it keeps up. Started by
// `bench/run.sh live`, which ensures the services, the tools and the open-files limit.
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';
import { cpuUs, dbUrl, gql, median, memKb, postgresCpuUs, psql, redisCleanup, run, sleep, waitHttp } from './lib.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
// CAREGRAPH_BIN: another build (or a wrapper, e.g. under a heap profiler) in its place.
const BIN = process.env.CAREGRAPH_BIN || path.join(root, 'target/release/caregraph');

function parseArgs(argv) {
  const o = { sockets: 10000, rate: 500, duration: 20, drain: 15, peerRates: null, smoke: false, peer: '../shared/peers/apollo-ws', out: path.join(root, 'bench/results') };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const val = () => argv[++i];
    if (a === '--smoke') o.smoke = true;
    else if (a === '--sockets') o.sockets = Number(val());
    else if (a === '--rate') o.rate = Number(val());
    else if (a === '--duration') o.duration = Number(val());
    else if (a === '--drain') o.drain = Number(val());
    else if (a === '--peer-rates') o.peerRates = val().split(',').map(Number).filter((n) => n > 0);
    else if (a === '--peer') o.peer = val();
    else if (a === '--no-peer') o.noPeer = true;
    else if (a === '--out') o.out = val();
    else if (a === '--help' || a === '-h') {
      console.log(`usage: bench/run.sh live [--sockets N] [--rate R] [--duration S] [--drain S] [--peer-rates R1,R2,…] [--smoke]
  --sockets     websockets, one synthetic patient each, on the subscribers' instance (default 10000)
  --rate        messages per second the sender posts through the other instance (default 500)
  --duration    seconds of sending per run (default 20); --drain: seconds to wait for the last
                deliveries afterwards (default 15)
  --peer-rates  rates tried on the Apollo peer, lowest first, until one it does not keep up
                with (default: a hundredth, a fiftieth, a twentieth, a tenth, a fifth, a half and
                all of --rate; a rate
                it fails leaves a backlog, so none is tried after it); Caregraph runs at the
                highest rate the peer kept up with, for the CPU ratio, and then at --rate
  --peer        the peer's directory (default ../shared/peers/apollo-ws); --no-peer: Caregraph alone
  --smoke       200 sockets, 50 messages/s for 3 s: proves the workload still works (CI)`);
      process.exit(0);
    } else throw new Error(`unknown argument ${a} (see --help)`);
  }
  if (o.smoke) Object.assign(o, { sockets: Math.min(o.sockets, 200), rate: Math.min(o.rate, 50), duration: 3, drain: 5 });
  if (!o.peerRates && o.smoke) o.peerRates = [o.rate];
  if (!o.peerRates) o.peerRates = [...new Set([100, 50, 20, 10, 5, 2, 1].map((d) => Math.max(1, Math.round(o.rate / d))))];
  if (!(o.sockets > 0 && o.rate > 0 && o.duration > 0)) throw new Error('--sockets, --rate and --duration must be positive');
  o.peer = path.resolve(root, o.peer);
  return o;
}

const opt = parseArgs(process.argv.slice(2));
const admin = process.env.TEST_DATABASE_URL;
const redisUrl = process.env.TEST_REDIS_URL;
if (!admin || !redisUrl) throw new Error('TEST_DATABASE_URL and TEST_REDIS_URL must be set (bench/run.sh does)');
const started = Date.now();
const log = (...a) => console.error(`bench live [${((Date.now() - started) / 1000).toFixed(0)} s]:`, ...a);
const children = [];
process.on('exit', () => children.forEach((c) => { try { c.kill('SIGTERM'); } catch {} }));
process.on('SIGINT', () => process.exit(130));
const f = (x, d = 1) => (Number.isFinite(x) ? x.toFixed(d) : '–');
const pct = (sorted, p) => (sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] : NaN);

/** Run `task(i)` for i in 0..n with at most `width` at once; log progress every `every`. */
async function pool(n, width, task, label, every = 1000) {
  let next = 0, done = 0;
  const worker = async () => {
    while (next < n) {
      const i = next++;
      await task(i);
      if (++done % every === 0) log(`${label}: ${done}/${n}`);
    }
  };
  await Promise.all(Array.from({ length: Math.min(width, n) }, worker));
}

/** CPU of the Redis server in µs (it moves the events of both stacks). */
function redisCpuUs() {
  let total = 0;
  for (const p of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(p)) continue;
    try { if (fs.readFileSync(`/proc/${p}/comm`, 'utf8').trim() === 'redis-server') total += cpuUs(p); } catch {}
  }
  return total;
}

// ---------- the subscribers ----------
/**
 * Open one graphql-transport-ws socket per entry of `subs` ({ init, query, variables, thread }),
 * `width` handshakes at a time; resolves once every one has its subscription sent. Each socket
 * counts what it receives into `sink.onNext(sub, payload)`; unexpected closes and errors are
 * counted on the returned object.
 */
async function openSockets(url, subs, sink, width = 100) {
  const state = { closed: 0, errors: 0, codes: {}, sockets: [] };
  await pool(subs.length, width, (i) => new Promise((resolve, reject) => {
    const s = subs[i];
    const ws = new WebSocket(url, 'graphql-transport-ws', { perMessageDeflate: false });
    state.sockets.push(ws);
    let acked = false;
    ws.on('open', () => ws.send(JSON.stringify({ type: 'connection_init', payload: s.init })));
    ws.on('message', (data) => {
      const m = JSON.parse(data);
      if (m.type === 'connection_ack') {
        acked = true;
        ws.send(JSON.stringify({ id: '1', type: 'subscribe', payload: { query: s.query, variables: s.variables } }));
        resolve();
      } else if (m.type === 'next') {
        if (m.payload.errors) { state.errors++; state.firstError ??= JSON.stringify(m.payload.errors).slice(0, 300); }
        else sink.onNext(s, m.payload.data);
      } else if (m.type === 'ping') ws.send('{"type":"pong"}');
      else if (m.type === 'error' || m.type === 'complete') { state.errors++; state.firstError ??= JSON.stringify(m).slice(0, 300); }
    });
    ws.on('error', (e) => { if (!acked) reject(new Error(`socket ${i}: ${e.message}`)); });
    ws.on('close', (code) => {
      if (!acked) reject(new Error(`socket ${i} closed with ${code} before its ack`));
      if (!state.closing) { state.closed++; state.codes[code] = (state.codes[code] ?? 0) + 1; }
    });
  }), 'sockets open', 2000);
  state.close = async () => {
    state.closing = true;
    for (const ws of state.sockets) ws.terminate();
    await sleep(500);
  };
  return state;
}

// ---------- one measured run ----------
/**
 * Post `rate` messages a second for `seconds` through `send(i)`, spread over the threads in
 * turn, and wait up to `drain` seconds for the last deliveries. `servers`: { label: pid } whose
 * CPU is counted over the whole window. Latency runs from just before the POST to the frame's
 * arrival on the subscriber's socket (one process, one clock).
 */
async function measuredRun({ rate, seconds, drain, send, sink, servers, sockets }) {
  const planned = Math.round(rate * seconds);
  const sentAt = new Float64Array(planned).fill(NaN);
  const got = new Uint8Array(planned);
  const latencies = [], answered = [];
  let firstFailure = null;
  let delivered = 0, duplicates = 0, misdelivered = 0, ok = 0, failed = 0, inFlight = 0, maxInFlight = 0, skipped = 0;
  sink.onNext = (sub, data) => {
    const m = data?.messageReceived;
    const match = /^bench (\d+) /.exec(m?.body ?? '');
    if (!match) return;
    if (m.threadId !== sub.thread) { misdelivered++; return; }
    const i = Number(match[1]);
    if (i >= planned || !Number.isFinite(sentAt[i])) return;
    if (got[i]) { duplicates++; return; }
    got[i] = 1;
    delivered++;
    latencies.push(performance.now() - sentAt[i]);
  };
  const cpu0 = Object.fromEntries(Object.entries(servers).map(([k, pid]) => [k, cpuUs(pid)]));
  const pg0 = postgresCpuUs(), redis0 = redisCpuUs();
  const closed0 = sockets.closed;
  const t0 = performance.now();
  const pending = [];
  // Open loop: at each tick, start whatever the schedule says is due, never waiting for
  // answers; a sender more than 5,000 requests behind skips (and counts) the rest.
  for (let i = 0; i < planned;) {
    const due = Math.min(planned, Math.floor(((performance.now() - t0) / 1000) * rate));
    for (; i < due; i++) {
      if (inFlight >= 5000) { skipped++; continue; }
      inFlight++;
      maxInFlight = Math.max(maxInFlight, inFlight);
      sentAt[i] = performance.now();
      const at = sentAt[i];
      pending.push(send(i).then((r) => { answered.push(performance.now() - at); if (r) ok++; else failed++; }, (e) => { failed++; firstFailure ??= `${e.message}${e.cause ? ` (${e.cause.code ?? e.cause.message})` : ''}`; }).finally(() => { inFlight--; }));
    }
    await sleep(2);
  }
  const sendSeconds = (performance.now() - t0) / 1000;
  await Promise.all(pending);
  const deadline = performance.now() + drain * 1000;
  while (delivered < ok && performance.now() < deadline) await sleep(50);
  const window = (performance.now() - t0) / 1000;
  const cpu = Object.fromEntries(Object.entries(servers).map(([k, pid]) => [k, cpuUs(pid) - cpu0[k]]));
  const pg = postgresCpuUs() - pg0, redis = redisCpuUs() - redis0;
  await sleep(300);
  sink.onNext = () => {};
  latencies.sort((a, b) => a - b);
  answered.sort((a, b) => a - b);
  const n = Math.max(1, delivered);
  return {
    rate, planned, sent: ok, sendErrors: failed, skipped, sendSeconds, window, delivered, lost: ok - delivered, duplicates, misdelivered,
    socketsClosed: sockets.closed - closed0, socketErrors: sockets.errors, firstSocketError: sockets.firstError,
    p50: pct(latencies, 50), p90: pct(latencies, 90), p99: pct(latencies, 99), max: latencies[latencies.length - 1] ?? NaN,
    answeredP50: pct(answered, 50), answeredP99: pct(answered, 99),
    cpuUsPerDelivery: Object.fromEntries(Object.entries(cpu).map(([k, v]) => [k, v / n])),
    cpuUsPerDeliveryTotal: Object.values(cpu).reduce((a, b) => a + b, 0) / n,
    pgCpuUsPerDelivery: pg / n, redisCpuUsPerDelivery: redis / n,
    maxInFlight, firstFailure,
  };
}
/** Kept up: everything sent, nothing lost, nothing skipped, and p99 under a second. */
const keptUp = (r) => r.sent === r.planned && r.lost === 0 && r.skipped === 0 && r.sendErrors === 0 && r.p99 < 1000;

// ---------- the peer's JWTs (HS256, as its gen-token.js signs them) ----------
const PEER_SECRET = 'bench-live-peer-secret-0123456789abcdef';
/** The sender on the peer (its messages table keeps the sender as a uuid). */
const PEER_DOCTOR = '22222222-2222-4222-8222-222222222222';
function peerToken(sub, threads) {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const now = Math.floor(Date.now() / 1000);
  const head = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64({ sub, threads, iat: now, exp: now + 7200 })}`;
  return `${head}.${crypto.createHmac('sha256', PEER_SECRET).update(head).digest('base64url')}`;
}

// ---------- main ----------
async function main() {
  const cores = os.cpus().length;
  log(`${opt.sockets} sockets, ${opt.rate} messages/s for ${opt.duration} s (+${opt.drain} s drain), ${cores} cores`);
  fs.mkdirSync(opt.out, { recursive: true });
  const jsonl = path.join(opt.out, 'results.jsonl');
  const runId = new Date().toISOString();
  const record = (server, r) => fs.appendFileSync(jsonl, JSON.stringify({ run: runId, workload: 'live', server, sockets: opt.sockets, ...r }) + '\n');
  const cgDb = 'cg_live_bench', peerDb = 'peer_ws_live_bench';
  for (const d of [cgDb, peerDb]) {
    psql(admin, `DROP DATABASE IF EXISTS ${d} WITH (FORCE)`);
    psql(admin, `CREATE DATABASE ${d}`);
  }
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'caregraph-live-'));
  const keysFile = path.join(work, 'keys.json');
  run(BIN, ['keys', 'generate', '--out', keysFile], {}, { quiet: true });
  const prefix = `cglive:${process.pid}:`;
  const base = { DATABASE_URL: dbUrl(admin, cgDb), REDIS_URL: redisUrl, REDIS_KEY_PREFIX: prefix, CAREGRAPH_KEYS_FILE: keysFile, DATA_DIR: path.join(work, 'data') };

  // The synthetic accounts share one password hash, made with cheap argon2 parameters: the
  // workload measures delivery, and 10,000 sign-ins at the production cost would take minutes.
  log(`seeding ${opt.sockets} synthetic patients with portal accounts, threads and statements`);
  const accountsFile = path.join(work, 'accounts.tsv');
  const t0 = Date.now();
  run(BIN, ['seed-demo', '--patients', String(opt.sockets), '--portal-accounts', '--accounts-out', accountsFile], { ...base, PASSWORD_HASH_M_COST_KIB: '64', PASSWORD_HASH_T_COST: '1' });
  log(`seeded in ${f((Date.now() - t0) / 1000, 1)} s`);
  const accounts = fs.readFileSync(accountsFile, 'utf8').split('\n').filter(Boolean).map((l) => {
    const [email, patient, thread] = l.split('\t');
    return { email, patient, thread };
  });
  if (accounts.length !== opt.sockets) throw new Error(`seeding wrote ${accounts.length} accounts, expected ${opt.sockets}`);

  const peerDbUrl = dbUrl(admin, peerDb);
  const peerSchema = spawn('psql', [peerDbUrl, '-v', 'ON_ERROR_STOP=1', '-q', '-f', path.join(opt.peer, 'schema.sql')], { stdio: 'inherit' });
  await new Promise((resolve, reject) => peerSchema.on('close', (c) => (c === 0 ? resolve() : reject(new Error('loading the peer schema failed')))));

  const prod = { ...base, APP_ENV: 'production', MFA_REQUIRED_ROLES: 'ADMIN', LOG_FORMAT: 'json', DATABASE_POOL_SIZE: '16', RUST_LOG: 'warn', PERSISTED_QUERIES: 'apq' };
  const startCg = (port) => {
    const c = spawn(BIN, ['serve'], { env: { ...process.env, ...prod, BIND_ADDR: `127.0.0.1:${port}` }, stdio: ['ignore', 'ignore', 'inherit'] });
    children.push(c);
    return c;
  };
  const pgUser = new URL(admin);
  const startPeer = (port) => {
    const c = spawn('node', ['server.js'], { cwd: opt.peer, env: { ...process.env, NODE_ENV: 'production', PORT: String(port), HOST: '127.0.0.1', REDIS_URL: redisUrl, CHANNEL_PREFIX: prefix, JWT_SECRET: PEER_SECRET, PG_POOL_SIZE: '10', PGHOST: pgUser.hostname, PGPORT: pgUser.port || '5432', PGUSER: decodeURIComponent(pgUser.username || 'postgres'), PGDATABASE: peerDb }, stdio: ['ignore', 'ignore', 'inherit'] });
    children.push(c);
    return c;
  };
  const results = [];
  let peerRate = null;
  const bodyOf = (i) => `bench ${i} ${crypto.randomBytes(6).toString('hex')}`;
  /** A `send(i)` for measuredRun: `query` POSTed to `url` with the `{ token, variables }`
   * that `request(i)` gives; true when it answered a message id. The first error is logged. */
  const sender = (label, url, query, request) => {
    let logged = false;
    return async (i) => {
      const { token, variables } = request(i);
      const r = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` }, body: JSON.stringify({ query, variables }) });
      const j = await r.json();
      if (j.errors && !logged) { logged = true; log(`${label} sendMessage: ${JSON.stringify(j.errors).slice(0, 300)}`); }
      return !j.errors && j.data?.sendMessage?.id;
    };
  };
  /** Measure one server at each of `rates` in turn, recording each run, until a rate it does
   * not keep up with; returns the highest it kept up with (null if none). */
  const climb = async ({ name, server, rates, send, sink, pids, sockets }) => {
    let best = null;
    for (const rate of rates) {
      log(`${name} at ${rate} messages/s`);
      const r = await measuredRun({ rate, seconds: opt.duration, drain: opt.drain, send, sink, servers: pids, sockets });
      r.rss = { send: memKb(pids.send, 'VmHWM') / 1024, subs: memKb(pids.subs, 'VmHWM') / 1024 };
      r.keptUp = keptUp(r);
      results.push([name, r]);
      record(server, r);
      log(`${name} at ${rate}/s: ${r.delivered}/${r.sent} delivered, p99 ${f(r.p99, 1)} ms (sends answered: p50 ${f(r.answeredP50, 1)}, p99 ${f(r.answeredP99, 1)} ms)${r.keptUp ? '' : ' — did not keep up'}${r.socketErrors ? `; ${r.socketErrors} socket errors, first: ${r.firstSocketError}` : ''}${r.firstFailure ? `; a send failed: ${r.firstFailure}` : ''}`);
      if (!r.keptUp) break;
      best = rate;
      await sleep(1000);
    }
    return best;
  };

  // ----- the peer first: find the rate it keeps up with -----
  if (!opt.noPeer) {
  const peerSend = startPeer(14111), peerSubs = startPeer(14112);
  for (const port of [14111, 14112]) await waitHttp(`http://127.0.0.1:${port}/graphql`, JSON.stringify({ query: '{ ping }' }), { authorization: `Bearer ${peerToken('probe', [])}` });
  const peerSink = { onNext: () => {} };
  log(`opening ${opt.sockets} sockets on the peer`);
  const PEER_SUB = 'subscription($t: ID) { messageReceived(threadId: $t) { id threadId body sentAt sender } }';
  const peerSockets = await openSockets('ws://127.0.0.1:14112/graphql/ws', accounts.map((a) => ({ thread: a.thread, init: { authorization: `Bearer ${peerToken(a.patient, [a.thread])}` }, query: PEER_SUB, variables: { t: a.thread } })), peerSink);
  await sleep(2000);
  const peerRss = { send: memKb(peerSend.pid, 'VmRSS') / 1024, subs: memKb(peerSubs.pid, 'VmRSS') / 1024 };
  log(`peer RSS with ${opt.sockets} sockets: ${f(peerRss.subs, 0)} MB (subscribers), ${f(peerRss.send, 0)} MB (sender)`);
  const PEER_SEND = 'mutation($t: ID!, $b: String!) { sendMessage(threadId: $t, body: $b) { id } }';
  const peerTokens = new Map();
  const peerSendOne = sender('peer', 'http://127.0.0.1:14111/graphql', PEER_SEND, (i) => {
    const a = accounts[i % accounts.length];
    if (!peerTokens.has(a.thread)) peerTokens.set(a.thread, peerToken(PEER_DOCTOR, [a.thread]));
    return { token: peerTokens.get(a.thread), variables: { t: a.thread, b: bodyOf(i) } };
  });
  peerRate = await climb({ name: 'Apollo peer (graphql-ws + Redis)', server: 'Apollo-ws', rates: opt.peerRates, send: peerSendOne, sink: peerSink, pids: { send: peerSend.pid, subs: peerSubs.pid }, sockets: peerSockets });
  await peerSockets.close();
  for (const c of [peerSend, peerSubs]) c.kill('SIGTERM');
  }

  // ----- Caregraph -----
  const cgSend = startCg(18091), cgSubs = startCg(18092);
  for (const port of [18091, 18092]) await waitHttp(`http://127.0.0.1:${port}/readyz`);
  const LOGIN = 'mutation($e: String!, $p: String!) { login(email: $e, password: $p) { accessToken } }';
  const doctor = (await gql('http://127.0.0.1:18091/graphql', LOGIN, { e: 'doctor@caregraph.dev', p: 'caregraph-demo' })).login.accessToken;
  log(`signing in ${opt.sockets} patients`);
  const tokens = new Array(accounts.length);
  await pool(accounts.length, 16, async (i) => {
    tokens[i] = (await gql('http://127.0.0.1:18092/graphql', LOGIN, { e: accounts[i].email, p: 'caregraph-demo' })).login.accessToken;
  }, 'signed in', 2000);
  const cgSink = { onNext: () => {} };
  const SUB = 'subscription($t: ID!) { messageReceived(threadId: $t) { id threadId body cursor sender { role } } }';
  const rssBefore = memKb(cgSubs.pid, 'VmRSS') / 1024;
  log(`opening ${opt.sockets} sockets on Caregraph`);
  const cgSockets = await openSockets('ws://127.0.0.1:18092/graphql/ws', accounts.map((a, i) => ({ thread: a.thread, init: { authorization: `Bearer ${tokens[i]}` }, query: SUB, variables: { t: a.thread } })), cgSink);
  await sleep(2000);
  const cgRss = { send: memKb(cgSend.pid, 'VmRSS') / 1024, subs: memKb(cgSubs.pid, 'VmRSS') / 1024 };
  log(`Caregraph RSS with ${opt.sockets} sockets: ${f(cgRss.subs, 0)} MB (subscribers; ${f(rssBefore, 0)} MB before), ${f(cgRss.send, 0)} MB (sender)`);
  const SEND = 'mutation($t: ID!, $b: String!, $k: String) { sendMessage(threadId: $t, body: $b, idempotencyKey: $k) { id } }';
  const cgSendOne = sender('Caregraph', 'http://127.0.0.1:18091/graphql', SEND, (i) => {
    const a = accounts[i % accounts.length];
    return { token: doctor, variables: { t: a.thread, b: bodyOf(i), k: crypto.randomUUID() } };
  });
  // Up the same ladder from the peer's best (or its first rung): each rate until one that
  // Caregraph does not keep up with.
  const ladder = [...new Set([...opt.peerRates, opt.rate])].sort((x, y) => x - y).filter((r) => r >= (peerRate ?? 0));
  await climb({ name: 'Caregraph', server: 'Caregraph', rates: ladder, send: cgSendOne, sink: cgSink, pids: { send: cgSend.pid, subs: cgSubs.pid }, sockets: cgSockets });
  await cgSockets.close();

  // ----- the table -----
  const lines = [`\n### live: ${opt.sockets} websockets (one synthetic patient each, subscribed to their own thread) on one instance; messages posted through a second instance; ${opt.duration} s a run\n`,
    '| server | rate msg/s | sent | delivered | lost | misdelivered | p50 ms | p90 ms | p99 ms | max ms | CPU µs/delivery: sender + subscribers = total | PostgreSQL / Redis µs/delivery | RSS MB (subscribers / sender, peak) | kept up |',
    '|---|---|---|---|---|---|---|---|---|---|---|---|---|---|'];
  for (const [name, r] of results) {
    lines.push(`| ${name} | ${r.rate} | ${r.sent}${r.skipped ? ` (+${r.skipped} skipped)` : ''}${r.sendErrors ? ` (${r.sendErrors} errors)` : ''} | ${r.delivered} | ${r.lost} | ${r.misdelivered} | ${f(r.p50, 1)} | ${f(r.p90, 1)} | ${f(r.p99, 1)} | ${f(r.max, 0)} | ${f(r.cpuUsPerDelivery.send, 0)} + ${f(r.cpuUsPerDelivery.subs, 0)} = ${f(r.cpuUsPerDeliveryTotal, 0)} | ${f(r.pgCpuUsPerDelivery, 0)} / ${f(r.redisCpuUsPerDelivery, 0)} | ${f(r.rss.subs, 0)} / ${f(r.rss.send, 0)} | ${r.keptUp ? 'yes' : 'no'} |`);
  }
  console.log(lines.join('\n'));
  const cgAt = (rate) => results.find(([n, r]) => n === 'Caregraph' && r.rate === rate)?.[1];
  const peerAt = peerRate && results.find(([n, r]) => n !== 'Caregraph' && r.rate === peerRate)?.[1];
  const mine = results.filter(([n]) => n === 'Caregraph').map(([, r]) => r);
  const best = mine.filter((r) => r.keptUp).pop();
  const top = mine[mine.length - 1];
  console.log(`\nCaregraph kept up with ${best ? `${best.rate} messages/s (p99 ${f(best.p99, 1)} ms, lost ${best.lost})` : 'none of the rates'}; at ${top.rate}/s: p99 ${f(top.p99, 1)} ms (target ≤ 50 at ${opt.rate}/s), lost ${top.lost} (target 0), misdelivered ${top.misdelivered}; subscribers' RSS ${f(top.rss.subs, 0)} MB with ${opt.sockets} sockets (target ≤ 300)`);
  if (peerAt) {
    const same = cgAt(peerRate);
    console.log(`at ${peerRate}/s, the highest rate the peer kept up with: CPU per delivered message Caregraph ${f(same.cpuUsPerDeliveryTotal, 0)} µs (subscribers' instance ${f(same.cpuUsPerDelivery.subs, 0)}), peer ${f(peerAt.cpuUsPerDeliveryTotal, 0)} µs (${f(peerAt.cpuUsPerDelivery.subs, 0)}): ${f(same.cpuUsPerDeliveryTotal / peerAt.cpuUsPerDeliveryTotal, 2)} of the peer's (target ≤ 0.20)`);
  } else console.log(`the peer kept up with none of ${opt.peerRates.join(', ')} messages/s`);

  log(`removed ${await redisCleanup(redisUrl, prefix)} Redis keys`);
  for (const c of children) c.kill('SIGTERM');
  await sleep(500);
  for (const d of [cgDb, peerDb]) psql(admin, `DROP DATABASE IF EXISTS ${d} WITH (FORCE)`);
  fs.rmSync(work, { recursive: true, force: true });
  // A rate Caregraph cannot keep up with is a figure, not a failure; a message lost,
  // duplicated or delivered to the wrong socket at a rate it keeps up with is.
  const failed = results.some(([n, r]) => n === 'Caregraph' && (r.misdelivered > 0 || r.duplicates > 0 || (r.sendErrors === 0 && r.skipped === 0 && r.lost > 0)));
  if (failed) {
    console.log('\nFAILED: Caregraph lost, duplicated or misdelivered messages (see above)');
    process.exit(1);
  }
}

main().catch((err) => { console.error('bench live failed:', err.message); process.exit(1); });
