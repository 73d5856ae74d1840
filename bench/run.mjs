#!/usr/bin/env node
// Benchmark driver: Caregraph (release, PostgreSQL + Redis, production settings) against the
// Apollo peer, same machine, same load. Started by bench/run.sh, which ensures the services
// and tools. Prints one markdown table per workload and appends JSON lines to
// bench/results/results.jsonl.
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { hostile } from './hostile.mjs';
import { cpuUs, dbUrl as dbUrlOf, gql, median, memKb, postgresCpuUs, psql, redisCleanup as redisCleanupOf, run, sleep, waitHttp } from './lib.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const BIN = path.join(root, 'target/release/caregraph');

/** The workloads, as bench/README.md names them. */
const WORKLOADS = ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h'];

function parseArgs(argv) {
  const o = { patients: 100000, duration: 10, warmup: 3, rounds: 3, connections: 64, rate: 1000, logins: 20, payRate: 20, smoke: false, only: null, peer: '../shared/peers/apollo', out: path.join(root, 'bench/results') };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const val = () => argv[++i];
    if (a === '--smoke') o.smoke = true;
    else if (a === '--patients') o.patients = Number(val());
    else if (a === '--duration') o.duration = Number(val());
    else if (a === '--warmup') o.warmup = Number(val());
    else if (a === '--rounds') o.rounds = Number(val());
    else if (a === '--connections') o.connections = Number(val());
    else if (a === '--rate') o.rate = Number(val());
    else if (a === '--pay-rate') o.payRate = Number(val());
    else if (a === '--only') {
      const list = (val() ?? '').split(',').map((w) => w.trim().toLowerCase()).filter(Boolean);
      const unknown = list.filter((w) => !WORKLOADS.includes(w));
      if (!list.length || unknown.length) throw new Error(`--only takes workloads from ${WORKLOADS.join(',')} (got ${unknown.join(',') || 'none'})`);
      o.only = new Set(list);
    } else if (a === '--peer') o.peer = val();
    else if (a === '--out') o.out = val();
    else if (a === '--help' || a === '-h') {
      console.log(`usage: bench/run.sh [--patients N] [--duration S] [--warmup S] [--rounds R] [--connections C] [--rate RPS] [--pay-rate RPS] [--only a,f] [--smoke]
  --patients     synthetic patients seeded into each Caregraph database (default 100000)
  --duration     seconds per measured run (default 10); --warmup seconds before it (default 3)
  --rounds       rounds per workload, servers alternating (default 3); tables show medians
  --connections  closed-loop connections (default 64); --rate fixed offered rate (default 1000)
  --pay-rate     (g): makePayment calls a second behind the fixed-rate reads (default 20)
  --only         run only these workloads, comma-separated (${WORKLOADS.join(', ')}; default all); the
                 peer and the SQLite server are started only when a selected workload uses them
  --smoke        tiny data and 2-second runs: proves the benchmark still works (CI)`);
      process.exit(0);
    } else throw new Error(`unknown argument ${a} (see --help)`);
  }
  if (o.smoke) Object.assign(o, { patients: Math.min(o.patients, 1500), duration: 2, warmup: 1, rounds: 1, rate: 300, payRate: 10 });
  o.peer = path.resolve(root, o.peer);
  return o;
}

const opt = parseArgs(process.argv.slice(2));
const want = (w) => !opt.only || opt.only.has(w);
const admin = process.env.TEST_DATABASE_URL;
const redisUrl = process.env.TEST_REDIS_URL;
if (!admin || !redisUrl) throw new Error('TEST_DATABASE_URL and TEST_REDIS_URL must be set (bench/run.sh does)');
fs.mkdirSync(opt.out, { recursive: true });
const log = (...a) => console.error('bench:', ...a);
const children = [];
process.on('exit', () => children.forEach((c) => { try { c.kill('SIGTERM'); } catch {} }));
process.on('SIGINT', () => process.exit(130));
const dbUrl = (name) => dbUrlOf(admin, name);
const redisCleanup = (prefix) => redisCleanupOf(redisUrl, prefix);

// ---------- servers ----------
function startCaregraph(name, port, env) {
  const child = spawn(BIN, ['serve'], { env: { ...process.env, ...env, BIND_ADDR: `127.0.0.1:${port}`, RUST_LOG: 'warn' }, stdio: ['ignore', 'ignore', 'inherit'] });
  children.push(child);
  return { name, pid: child.pid, url: `http://127.0.0.1:${port}/graphql`, child };
}

function auditStats(env) {
  const rows = run(BIN, ['audit', 'stats'], env, { quiet: true }).trim().split('\n').filter(Boolean).map((l) => JSON.parse(l));
  const r = rows.find((x) => x.action === 'patient.read' && x.outcome === 'SUCCESS');
  return r ? r.rows : 0;
}
function auditVerify(env) {
  const r = spawnSync(BIN, ['audit', 'verify'], { env: { ...process.env, ...env }, encoding: 'utf8' });
  return { ok: r.status === 0, text: r.stdout.trim() };
}

// ---------- load generators ----------
const READ = 'query($id: ID!) { patient(id: $id) { id givenName familyName birthDate } }';
/** Workload (f), the portal's home screen: the patient with their next 3 appointments, active
 * medications, allergies and last 5 lab results. The same text as `HOME` in
 * tests/api/record_statements.rs, whose test holds its statement count constant: change both
 * together. */
const HOME = 'query($id: ID!, $now: DateTime!) { patient(id: $id) { id givenName familyName birthDate appointments(status: SCHEDULED, from: $now, first: 3) { edges { node { id startsAt endsAt status reason provider { id displayName } } } } medications(activeOnly: true) { id drug dose route frequency startOn } allergies { id substance reaction severity status } labResults(first: 5) { edges { node { id code display value unit referenceRange abnormal observedAt } } } } }';

/** Statements one request costs, from the server's own count: a Caregraph started with
 * `caregraph::sql` at trace level logs every statement it sends (the hook that feeds
 * `AppState::sql`, the counter the statement-count tests read), as JSON lines naming the
 * request's `http` span. This server runs beside the idle measured ones, only for the count. */
async function statementCounter(port, env) {
  const child = spawn(BIN, ['serve'], { env: { ...process.env, ...env, BIND_ADDR: `127.0.0.1:${port}`, LOG_FORMAT: 'json', RUST_LOG: 'warn,caregraph::sql=trace,caregraph::http=info' }, stdio: ['ignore', 'ignore', 'pipe'] });
  children.push(child);
  const lines = [];
  let rest = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (d) => {
    const parts = (rest + d).split('\n');
    rest = parts.pop();
    for (const l of parts) {
      try {
        const j = JSON.parse(l);
        if (j.target === 'caregraph::sql' && typeof j.sql === 'string') lines.push({ sql: j.sql, request: (j.spans ?? []).find((s) => s.name === 'http')?.request_id });
      } catch {}
    }
  });
  const url = `http://127.0.0.1:${port}/graphql`;
  await waitHttp(url.replace('/graphql', '/readyz'));
  return {
    url,
    stop: () => new Promise((resolve) => { child.once('close', resolve); child.kill('SIGTERM'); }),
    /** Send `bodies` one at a time (after `warm` unmeasured ones); per request: all data and
     * audit statements in the window (the batched readers and the audit writer run outside
     * the request's span, so totals are counted over the window), and the consent-scope
     * lookups (`FROM "consents"`) each request made, as min–max. */
    async count(token, bodies, warm = 20) {
      const post = async (body, id) => {
        const r = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${token}`, 'x-request-id': id }, body });
        const j = await r.json();
        if (j.errors) throw new Error(`statement count: ${JSON.stringify(j.errors)}`);
      };
      for (let i = 0; i < warm; i++) await post(bodies[i % bodies.length], `warm-${i}`);
      await sleep(300);
      const from = lines.length;
      const ids = bodies.map((_, i) => `count-${process.pid}-${i}`);
      for (let i = 0; i < bodies.length; i++) await post(bodies[i], ids[i]);
      await sleep(300);
      const seen = lines.slice(from);
      const n = bodies.length;
      const isAudit = (l) => l.sql.includes('audit_'); // as SqlStats::observe splits them
      const consent = ids.map((id) => seen.filter((l) => l.request === id && l.sql.includes('FROM "consents"')).length);
      // Not `audit`: result lines with an `audit` field are audit checks.
      return { requests: n, dataStatements: seen.filter((l) => !isAudit(l)).length / n, auditStatements: seen.filter(isAudit).length / n, consentMin: Math.min(...consent), consentMax: Math.max(...consent), consentMean: consent.reduce((a, b) => a + b, 0) / n };
    },
  };
}

/** Closed loop with bench/read.lua: the patient read, or `op` ({ query, vars }: another
 * operation taking the random id as $id, and more variables). */
function wrk(url, idsFile, token, seconds, connections, op) {
  const env = { BENCH_IDS: idsFile, BENCH_TOKEN: token };
  if (op) Object.assign(env, { BENCH_QUERY_JSON: JSON.stringify(op.query), BENCH_VARS_JSON: Object.entries(op.vars ?? {}).map(([k, v]) => `,${JSON.stringify(k)}:${JSON.stringify(v)}`).join(''), BENCH_EXTRA_JSON: op.extra ?? '' });
  const out = run('wrk', ['-t2', `-c${connections}`, `-d${seconds}s`, '--timeout', '5s', '-s', path.join(root, 'bench/read.lua'), url], env, { quiet: true });
  const line = out.split('\n').find((l) => l.startsWith('WRKJSON '));
  const j = JSON.parse(line.slice(8));
  return { requests: j.requests, rps: j.requests / (j.duration_us / 1e6), ok: j.ok, errors: j.errors + j.socket_errors, p50: j.p50 / 1000, p90: j.p90 / 1000, p99: j.p99 / 1000, max: j.max / 1000 };
}

function ohaArgs(url, token, seconds, rate, bodiesFile, extra = []) {
  return ['-z', `${seconds}s`, '-q', String(rate), '--latency-correction', '-c', String(Math.min(opt.connections, Math.max(4, Math.ceil(rate / 50)))), '--no-tui', '--output-format', 'json', '-m', 'POST', '-H', 'content-type: application/json', ...(token ? ['-H', `authorization: Bearer ${token}`] : []), '-Z', bodiesFile, ...extra, url];
}
function parseOha(stdout) {
  const j = JSON.parse(stdout);
  const codes = j.statusCodeDistribution ?? {};
  // Requests cut off by the end of the run are not errors of the server.
  const failures = Object.entries(j.errorDistribution ?? {}).filter(([k]) => !k.includes('deadline'));
  const total = Object.values(codes).reduce((a, b) => a + b, 0) + failures.reduce((a, [, n]) => a + n, 0);
  const okCount = codes['200'] ?? 0;
  const p = j.latencyPercentiles ?? {};
  return { requests: total, rps: j.summary.requestsPerSec, ok: okCount, errors: total - okCount, p50: p.p50 * 1000, p90: p.p90 * 1000, p95: p.p95 * 1000, p99: p.p99 * 1000, max: j.summary.slowest * 1000 };
}
function ohaAsync(args) {
  return new Promise((resolve, reject) => {
    const c = spawn('oha', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '', err = '';
    c.stdout.on('data', (d) => { out += d; });
    c.stderr.on('data', (d) => { err += d; });
    c.on('close', (code) => (code === 0 ? resolve(parseOha(out)) : reject(new Error(`oha failed: ${err}`))));
  });
}

// ---------- measurement ----------
/** The disk probe (bench/diskprobe.mjs) for the length of one round. */
function startDiskProbe() {
  const c = spawn(process.execPath, [path.join(root, 'bench/diskprobe.mjs'), probeDir], { stdio: ['ignore', 'pipe', 'inherit'] });
  children.push(c);
  let out = '';
  c.stdout.on('data', (d) => { out += d; });
  const closed = new Promise((resolve) => c.on('close', () => resolve()));
  return async () => {
    c.kill('SIGTERM');
    await closed;
    try { return JSON.parse(out); } catch { return undefined; }
  };
}
let probeDir = os.tmpdir();

async function measure(server, pgServer, fn) {
  const stopProbe = startDiskProbe();
  const c0 = cpuUs(server.pid), p0 = pgServer ? postgresCpuUs() : 0;
  const res = await fn();
  const c1 = cpuUs(server.pid), p1 = pgServer ? postgresCpuUs() : 0;
  const disk = await stopProbe();
  const n = Math.max(1, res.requests);
  return { ...res, cpuUsPerReq: (c1 - c0) / n, pgCpuUsPerReq: pgServer ? (p1 - p0) / n : NaN, peakRssMb: memKb(server.pid, 'VmHWM') / 1024, disk };
}

/** Run fn on Caregraph with the audit check around it. */
async function measureAudited(server, env, fn, { allowance }) {
  await sleep(500); // let the warm-up's last requests finish (and be audited) first
  const before = auditStats(env);
  const res = await measure(server, env.DATABASE_URL, fn);
  await sleep(300);
  const rows = auditStats(env) - before;
  const verify = auditVerify(env);
  // Requests in flight when the load generator stopped may have been answered (and
  // audited) without being counted: up to one per connection.
  const lost = rows < res.ok;
  const extra = rows - res.ok;
  const limit = typeof allowance === 'function' ? allowance() : allowance;
  res.audit = { rows, successfulReads: res.ok, ok: !lost && extra <= limit && verify.ok, chain: verify.text };
  if (!res.audit.ok) log(`AUDIT CHECK FAILED on ${server.name}: ${rows} patient.read rows for ${res.ok} successful reads; ${verify.text}`);
  return res;
}

const results = [];
const jsonl = path.join(opt.out, 'results.jsonl');
const runId = new Date().toISOString();
function record(workload, server, round, r) {
  const line = { run: runId, workload, server, round, patients: opt.patients, ...r };
  results.push(line);
  fs.appendFileSync(jsonl, JSON.stringify(line) + '\n');
}

const f = (x, d = 1) => (Number.isFinite(x) ? x.toFixed(d) : '–');
/** Slow flushes the disk probe saw, round by round, and the slowest one. */
function diskCell(runs) {
  const probes = runs.map((r) => r.disk).filter(Boolean);
  if (!probes.length) return '–';
  return `${probes.map((p) => p.over10Ms).join(' / ')} (max ${f(Math.max(...probes.map((p) => p.maxMs)), 0)} ms)`;
}
function table(title, rows, ratioOf) {
  const lines = [`\n### ${title}\n`, '| server | req/s | p50 ms | p90 ms | p99 ms | max ms | errors | server CPU µs/req | PostgreSQL CPU µs/req | peak RSS MB | ratio | audit | disk flushes > 10 ms |', '|---|---|---|---|---|---|---|---|---|---|---|---|---|'];
  for (const [name, runs] of rows) {
    const m = (k) => median(runs.map((r) => r[k]));
    const ratio = ratioOf && name !== ratioOf.base ? m('rps') / ratioOf.value : NaN;
    const audit = runs.every((r) => !r.audit) ? '–' : runs.every((r) => r.audit?.ok) ? 'ok' : 'FAILED';
    lines.push(`| ${name} | ${f(m('rps'), 0)} | ${f(m('p50'), 2)} | ${f(m('p90'), 2)} | ${f(m('p99'), 2)} | ${f(m('max'), 1)} | ${runs.reduce((a, r) => a + r.errors, 0)} | ${f(m('cpuUsPerReq'), 0)} | ${f(m('pgCpuUsPerReq'), 0)} | ${f(m('peakRssMb'), 0)} | ${Number.isFinite(ratio) ? f(ratio, ratioOf.digits ?? 1) + '×' : ''} | ${audit} | ${diskCell(runs)} |`);
  }
  const text = lines.join('\n');
  console.log(text);
  return text;
}

// ---------- main ----------
async function main() {
  log(`${opt.patients} patients, ${opt.rounds} round(s) of ${opt.duration}s (+${opt.warmup}s warm-up), ${os.cpus().length} cores${opt.only ? `, workloads ${[...opt.only].join(',')}` : ''}`);
  // The peer serves (a), (b) and (d)'s yardstick; the embedded server (d) and (h).
  const usePeer = want('a') || want('b') || want('d');
  const useLite = want('d') || want('h');
  const pgDb = 'cg_bench', peerDb = 'apollo_bench';
  for (const d of [pgDb, peerDb]) {
    psql(admin, `DROP DATABASE IF EXISTS ${d} WITH (FORCE)`);
    psql(admin, `CREATE DATABASE ${d}`);
  }
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'caregraph-bench-'));
  probeDir = work;
  const keysFile = path.join(work, 'keys.json');
  run(BIN, ['keys', 'generate', '--out', keysFile], {}, { quiet: true });
  const prefix = `cgbench:${process.pid}:`;
  const pgEnv = { DATABASE_URL: dbUrl(pgDb), REDIS_URL: redisUrl, REDIS_KEY_PREFIX: prefix, CAREGRAPH_KEYS_FILE: keysFile, DATA_DIR: path.join(work, 'pg'), DATABASE_POOL_SIZE: '32' };
  const sqliteEnv = { CAREGRAPH_KEYS_FILE: keysFile, DATA_DIR: path.join(work, 'sqlite') };

  const peerUrl = dbUrl(peerDb);
  if (usePeer) {
    log('loading the peer schema');
    const r = spawnSync('psql', [peerUrl, '-v', 'ON_ERROR_STOP=1', '-q', '-f', path.join(opt.peer, 'schema.sql')], { stdio: 'inherit' });
    if (r.status !== 0) throw new Error('loading the peer schema failed');
    // Caregraph's seed-demo ends with VACUUM (ANALYZE); the peer's bulk load gets the same.
    psql(peerUrl, 'VACUUM (ANALYZE)');
  }
  const seededPg = path.join(work, 'seeded-pg.txt'), seededLite = path.join(work, 'seeded-lite.txt');
  // (g) pays as synthetic patients: they get portal accounts (and statements) on PostgreSQL.
  const accountsPg = path.join(work, 'accounts-pg.tsv');
  const seed = (name, env, file, accounts) => {
    log(`seeding Caregraph on ${name}`);
    const t0 = Date.now();
    run(BIN, ['seed-demo', '--patients', String(opt.patients), '--ids-out', file, ...(accounts ? ['--portal-accounts', '--accounts-out', accounts] : [])], env);
    const s = (Date.now() - t0) / 1000;
    log(`seeded ${opt.patients} patients with their charts and visits on ${name} in ${f(s, 1)} s`);
    fs.appendFileSync(jsonl, JSON.stringify({ run: runId, workload: 'seed', server: name, patients: opt.patients, seconds: s }) + '\n');
  };
  seed('PostgreSQL', pgEnv, seededPg, want('g') && accountsPg);
  if (useLite) seed('SQLite', sqliteEnv, seededLite);

  const prodEnv = { ...pgEnv, APP_ENV: 'production', MFA_REQUIRED_ROLES: 'ADMIN', LOG_FORMAT: 'json', PERSISTED_QUERIES: 'apq' };
  const cg = startCaregraph('Caregraph', 18080, prodEnv);
  const embeddedEnv = { ...sqliteEnv, GRAPHIQL: 'false', INTROSPECTION: 'false', SEED_DEMO: 'false', LOG_FORMAT: 'json' };
  const cgLite = useLite ? startCaregraph('Caregraph (SQLite)', 18081, embeddedEnv) : null;
  let peer = null, peerToken = null;
  if (usePeer) {
    const u = new URL(admin);
    const peerChild = spawn('node', ['server.js'], { cwd: opt.peer, env: { ...process.env, NODE_ENV: 'production', PORT: '14400', HOST: '127.0.0.1', WORKERS: '1', PG_POOL_SIZE: '20', PGHOST: u.hostname, PGPORT: u.port || '5432', PGUSER: decodeURIComponent(u.username || 'postgres'), PGDATABASE: peerDb }, stdio: ['ignore', 'ignore', 'inherit'] });
    children.push(peerChild);
    peer = { name: 'Apollo', pid: peerChild.pid, url: 'http://127.0.0.1:14400/' };
  }
  await waitHttp(cg.url.replace('/graphql', '/readyz'));
  if (cgLite) await waitHttp(cgLite.url.replace('/graphql', '/readyz'));
  const idleRssMb = memKb(cg.pid, 'VmRSS') / 1024;
  if (peer) {
    peerToken = spawnSync('node', ['gen-token.js', 'doctor', '86400'], { cwd: opt.peer, encoding: 'utf8' }).stdout.trim();
    await waitHttp(peer.url, JSON.stringify({ query: READ, variables: { id: '00000000-0000-4000-8000-000000000000' } }), { authorization: `Bearer ${peerToken}` });
  }

  const LOGIN = 'mutation($e: String!, $p: String!) { login(email: $e, password: $p) { accessToken } }';
  const creds = { e: 'doctor@caregraph.dev', p: 'caregraph-demo' };
  const token = (await gql(cg.url, LOGIN, creds)).login.accessToken;
  const liteToken = cgLite ? (await gql(cgLite.url, LOGIN, creds)).login.accessToken : null;

  // The ids the seeding wrote (every one on the doctor's care team, with consent), checked
  // and a sample of family names taken through the API itself.
  async function visible(url, tok, file) {
    const ids = fs.readFileSync(file, 'utf8').split('\n').filter(Boolean);
    if (ids.length !== opt.patients) throw new Error(`seeding wrote ${ids.length} ids, expected ${opt.patients}`);
    const names = [];
    for (let i = 0; i < Math.min(300, ids.length); i++) {
      const d = await gql(url, 'query($id: ID!) { patient(id: $id) { familyName } }', { id: ids[Math.floor(Math.random() * ids.length)] }, tok);
      names.push(d.patient.familyName);
    }
    return { ids, names };
  }
  log('sampling the seeded patients through the API');
  const pgSet = await visible(cg.url, token, seededPg);
  const liteSet = cgLite ? await visible(cgLite.url, liteToken, seededLite) : null;
  const peerIds = peer ? psql(peerUrl, 'SELECT id FROM patients').split('\n') : [];
  const write = (name, lines) => { const p = path.join(work, name); fs.writeFileSync(p, lines.join('\n') + '\n'); return p; };
  const idsPg = write('ids-pg.txt', pgSet.ids), idsLite = liteSet && write('ids-lite.txt', liteSet.ids), idsPeer = peer && write('ids-peer.txt', peerIds);
  const shuffle = (xs) => { const a = [...xs]; for (let i = a.length - 1; i > 0; i--) { const j = Math.floor(Math.random() * (i + 1)); [a[i], a[j]] = [a[j], a[i]]; } return a; };
  const readBodies = (ids, n) => Array.from({ length: n }, () => JSON.stringify({ query: READ, variables: { id: ids[Math.floor(Math.random() * ids.length)] } }));
  const lines = opt.rate * (opt.duration + opt.warmup + 2);
  const bodiesPg = write('bodies-pg.txt', readBodies(pgSet.ids, Math.min(lines, 200000)));
  const bodiesPeer = peer && write('bodies-peer.txt', readBodies(peerIds, Math.min(lines, 200000)));
  log(`idle RSS after start: ${f(idleRssMb, 1)} MB`);

  const W = opt.duration, WU = opt.warmup, C = opt.connections;
  const tables = [];

  // (a) closed loop, and (b) fixed rate: both servers, alternating; (f) on Caregraph right
  // after each round's (a), so the two are read against the same minutes of the machine.
  const a = { Caregraph: [], Apollo: [] }, b = { Caregraph: [], Apollo: [] }, fHome = [], aPersisted = [];
  // (a) again with the document by its APQ hash instead of its text (registered once here).
  const readHash = createHash('sha256').update(READ).digest('hex');
  const persistedQuery = JSON.stringify({ persistedQuery: { version: 1, sha256Hash: readHash } });
  if (want('a')) {
    const r = await fetch(cg.url, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` }, body: JSON.stringify({ query: READ, variables: { id: pgSet.ids[0] }, extensions: JSON.parse(persistedQuery) }) });
    const j = await r.json();
    if (j.errors) throw new Error(`registering the persisted read: ${JSON.stringify(j.errors)}`);
  }
  const byHash = { query: '', extra: `,"extensions":${persistedQuery}` };
  // Upcoming visits from now: every seeded patient has two (seed::bulk_chart).
  const home = { query: HOME, vars: { now: new Date().toISOString() } };
  for (let round = 1; round <= opt.rounds && (want('a') || want('b') || want('f')); round++) {
    const order = (round % 2 ? [['Caregraph', cg, idsPg, token], ['Apollo', peer, idsPeer, peerToken]] : [['Apollo', peer, idsPeer, peerToken], ['Caregraph', cg, idsPg, token]]).filter(([, srv]) => srv);
    for (const [name, srv, ids, tok] of want('a') ? order : []) {
      wrk(srv.url, ids, tok, WU, C);
      const fn = async () => wrk(srv.url, ids, tok, W, C);
      const res = name === 'Caregraph' ? await measureAudited(srv, pgEnv, fn, { allowance: C }) : await measure(srv, true, fn);
      record('a', name, round, res);
      a[name].push(res);
      if (name === 'Caregraph') {
        wrk(srv.url, ids, tok, WU, C, byHash);
        const persisted = await measureAudited(srv, pgEnv, async () => wrk(srv.url, ids, tok, W, C, byHash), { allowance: C });
        record('a.persisted', name, round, persisted);
        aPersisted.push(persisted);
      }
    }
    if (want('f')) {
      // One patient.read row per home screen (its lists add appointment.read and record.read
      // rows, which this check does not count).
      wrk(cg.url, idsPg, token, WU, C, home);
      const res = await measureAudited(cg, pgEnv, async () => wrk(cg.url, idsPg, token, W, C, home), { allowance: C });
      record('f', 'Caregraph', round, res);
      fHome.push(res);
    }
    for (const [name, srv, , tok] of want('b') ? order : []) {
      const bodies = name === 'Caregraph' ? bodiesPg : bodiesPeer;
      await ohaAsync(ohaArgs(srv.url, tok, WU, opt.rate, bodies));
      const fn = () => ohaAsync(ohaArgs(srv.url, tok, W, opt.rate, bodies));
      const res = name === 'Caregraph' ? await measureAudited(srv, pgEnv, fn, { allowance: C }) : await measure(srv, true, fn);
      record('b', name, round, res);
      b[name].push(res);
    }
  }
  const apolloA = median(a.Apollo.map((r) => r.rps));
  if (want('a')) tables.push(table(`(a) patient read, closed loop, ${C} connections; Caregraph also with the document by its persisted (APQ) hash instead of its text`, [['Caregraph', a.Caregraph], ['Caregraph, by persisted hash', aPersisted], ['Apollo', a.Apollo]], { base: 'Apollo', value: apolloA }));
  if (want('f')) {
    const caregraphA = median(a.Caregraph.map((r) => r.rps));
    const rows = [['Caregraph (f) home screen', fHome]];
    if (a.Caregraph.length) rows.push(['Caregraph (a) patient read, same rounds', a.Caregraph]);
    tables.push(table(`(f) the portal's home screen in one query (patient, next 3 appointments, active medications, allergies, last 5 lab results), closed loop, ${C} connections. Caregraph only: the peers in ../shared/peers serve patient(id) alone, with no appointments, medications, allergies or lab results; the ratio is (f) ÷ Caregraph's (a)`, rows, a.Caregraph.length ? { base: 'Caregraph (a) patient read, same rounds', value: caregraphA, digits: 2 } : undefined));
    console.log('| Apollo | not implemented: the peer has no appointments or records |');
    log('counting statements per request on a separate Caregraph with statement tracing');
    const counter = await statementCounter(18082, prodEnv);
    const counterToken = (await gql(counter.url, LOGIN, creds)).login.accessToken;
    const pick = () => pgSet.ids[Math.floor(Math.random() * pgSet.ids.length)];
    const n = opt.smoke ? 50 : 200;
    const perHome = await counter.count(counterToken, Array.from({ length: n }, () => JSON.stringify({ query: HOME, variables: { id: pick(), ...home.vars } })));
    const perRead = await counter.count(counterToken, Array.from({ length: n }, () => JSON.stringify({ query: READ, variables: { id: pick() } })));
    await counter.stop();
    record('f.statements', 'Caregraph', 1, perHome);
    record('a.statements', 'Caregraph', 1, perRead);
    const stmtLines = ['\n### SQL statements per request (PostgreSQL, one request at a time, from the server\'s statement log)\n', '| workload | requests | data statements / request | of which consent-scope lookups (min–max per request) | audit statements / request |', '|---|---|---|---|---|'];
    for (const [name, c] of [['(f) home screen', perHome], ['(a) patient read', perRead]]) stmtLines.push(`| ${name} | ${c.requests} | ${f(c.dataStatements, 2)} | ${f(c.consentMean, 2)} (${c.consentMin}–${c.consentMax}) | ${f(c.auditStatements, 2)} |`);
    const stmtText = stmtLines.join('\n');
    console.log(stmtText);
    tables.push(stmtText);
    const ratio = median(fHome.map((r) => r.rps)) / caregraphA;
    console.log(`\n(f) ÷ (a): ${f(ratio, 2)} (target ≥ 0.33); ${f(perHome.dataStatements, 2)} data statements per home screen, ${f(perHome.dataStatements - perHome.consentMean, 2)} besides the consent-scope lookups`);
    const verify = auditVerify(pgEnv);
    if (!verify.ok) {
      log(`AUDIT CHECK FAILED after the statement count: ${verify.text}`);
      results.push({ audit: { ok: false } });
    }
  }
  if (want('b')) tables.push(table(`(b) patient read at a fixed ${opt.rate} req/s`, [['Caregraph', b.Caregraph], ['Apollo', b.Apollo]], { base: 'Apollo', value: median(b.Apollo.map((r) => r.rps)) }));

  // (c) the mix, Caregraph alone: three generators at 80/15/5 % of the rate.
  const FILTER = 'query($n: String!) { patients(filter: { familyName: $n }, first: 10) { edges { node { id familyName birthDate } } } }';
  const UPDATE = 'mutation($id: ID!) { updatePatient(id: $id, expectedVersion: 1, input: { consentToContact: true }) { version } }';
  const filterBodies = write('bodies-filter.txt', Array.from({ length: 5000 }, () => JSON.stringify({ query: FILTER, variables: { n: pgSet.names[Math.floor(Math.random() * pgSet.names.length)] } })));
  const updatable = shuffle(pgSet.ids.slice(1)); // never the demo patient, whose version moved
  let next = 0;
  const updateBodies = (seconds) => {
    const n = Math.ceil(opt.rate * 0.05 * (seconds + 1));
    const ids = updatable.slice(next, next + n); next += n;
    if (ids.length < n) throw new Error('not enough patients for distinct updates: raise --patients');
    return write(`bodies-update-${next}.txt`, ids.map((id) => JSON.stringify({ query: UPDATE, variables: { id } })));
  };
  const c = { reads: [], filters: [], writes: [] };
  for (let round = 1; round <= opt.rounds && want('c'); round++) {
    const mix = (seconds) => Promise.all([
      ohaAsync(ohaArgs(cg.url, token, seconds, Math.round(opt.rate * 0.8), bodiesPg)),
      ohaAsync(ohaArgs(cg.url, token, seconds, Math.round(opt.rate * 0.15), filterBodies)),
      ohaAsync(ohaArgs(cg.url, token, seconds, Math.max(1, Math.round(opt.rate * 0.05)), updateBodies(seconds))),
    ]);
    await mix(WU);
    let parts;
    // Every patient a filter returns is a PHI read too (up to 10 a query): the check here is
    // that no read lost its row, with room for the filters' rows on top.
    const res = await measureAudited(cg, pgEnv, async () => {
      parts = await mix(W);
      return { ...parts[0], requests: parts.reduce((s, p) => s + p.requests, 0) };
    }, { allowance: () => C + 10 * parts[1].ok });
    const [reads, filters, writes] = parts;
    for (const [k, v] of [['reads', reads], ['filters', filters], ['writes', writes]]) {
      const row = { ...v, cpuUsPerReq: res.cpuUsPerReq, pgCpuUsPerReq: res.pgCpuUsPerReq, peakRssMb: res.peakRssMb, audit: k === 'reads' ? res.audit : undefined, disk: k === 'reads' ? res.disk : undefined };
      record(`c.${k}`, 'Caregraph', round, row);
      c[k].push(row);
    }
  }
  if (want('c')) tables.push(table(`(c) mix at ${opt.rate} req/s: 80 % reads, 15 % familyName filter, 5 % updatePatient (CPU per request over the whole mix)`, [['reads', c.reads], ['familyName filter', c.filters], ['updatePatient', c.writes]]));
  if (want('c')) console.log(`\np95: reads ${f(median(c.reads.map((r) => r.p95)), 2)} ms, filters ${f(median(c.filters.map((r) => r.p95)), 2)} ms, writes ${f(median(c.writes.map((r) => r.p95)), 2)} ms`);

  // (d) embedded backend, closed loop.
  const d = [];
  for (let round = 1; round <= opt.rounds && want('d'); round++) {
    wrk(cgLite.url, idsLite, liteToken, WU, C);
    const res = await measureAudited(cgLite, embeddedEnv, async () => wrk(cgLite.url, idsLite, liteToken, W, C), { allowance: C });
    record('d', 'Caregraph (SQLite)', round, res);
    d.push(res);
  }
  if (want('d')) tables.push(table(`(d) patient read on the embedded backend (SQLite, in-process stores), ${C} connections; ratio against Apollo's (a)`, [['Caregraph (SQLite)', d], ['Apollo (a)', a.Apollo]], { base: 'Apollo (a)', value: apolloA }));

  // (e) 20 logins per second behind the closed-loop read. Each round first measures the read
  // alone, right before, so the growth compares neighbouring minutes of this machine rather
  // than (a)'s rounds, taken minutes earlier at whatever speed the machine had then.
  const loginBody = write('bodies-login.txt', [JSON.stringify({ query: LOGIN, variables: creds })]);
  const e = [], alone = [], logins = [];
  for (let round = 1; round <= opt.rounds && want('e'); round++) {
    wrk(cg.url, idsPg, token, WU, C);
    const solo = await measureAudited(cg, pgEnv, async () => wrk(cg.url, idsPg, token, W, C), { allowance: C });
    record('e.alone', 'Caregraph', round, solo);
    alone.push(solo);
    let loginRes;
    const res = await measureAudited(cg, pgEnv, async () => {
      const bg = ohaAsync(ohaArgs(cg.url, null, W, opt.logins, loginBody));
      const fg = wrk(cg.url, idsPg, token, W, C);
      loginRes = await bg;
      return fg;
    }, { allowance: C });
    record('e', 'Caregraph', round, res);
    record('e.logins', 'Caregraph', round, loginRes);
    e.push(res);
    logins.push(loginRes);
  }
  if (want('e')) tables.push(table(`(e) patient read, closed loop, with ${opt.logins} logins/s in the background; each round right after the same read alone`, [['reads alone', alone], ['reads with logins', e], [`logins (${opt.logins}/s)`, logins]]));
  const growths = e.map((r, i) => r.p99 / alone[i].p99);
  const growth = median(growths);
  if (want('e')) console.log(`\nread p99 with logins ÷ without: ${f(growth, 2)}× (median of the rounds: ${growths.map((g) => f(g, 2)).join(', ')}; against (a)'s median p99: ${f(median(e.map((r) => r.p99)) / median(a.Caregraph.map((r) => r.p99)), 2)}×); idle RSS after start ${f(idleRssMb, 1)} MB; peak RSS ${f(Math.max(...results.filter((r) => r.server.startsWith('Caregraph') && Number.isFinite(r.peakRssMb)).map((r) => r.peakRssMb)), 1)} MB`);
  // (g) makePayment at a fixed rate (open loop, from this process) behind the fixed-rate
  // reads (oha), as synthetic patients paying their own statements 1.00 at a time; then the
  // ledger is checked for double charges and overdrawn statements.
  const gRuns = [];
  let ledger = null;
  if (want('g')) {
    const payers = fs.readFileSync(accountsPg, 'utf8').split('\n').filter(Boolean).slice(0, 50).map((l) => { const [email, , , statement] = l.split('\t'); return { email, statement }; });
    for (const p of payers) p.token = (await gql(cg.url, LOGIN, { e: p.email, p: creds.p })).login.accessToken;
    const PAY = 'mutation($s: ID!, $k: String!) { makePayment(statementId: $s, amountCents: 100, paymentMethodToken: "tok_sandbox_approve", idempotencyKey: $k) { id status amountCents } }';
    let succeeded = 0, payN = 0;
    const pay = async (i) => {
      const p = payers[i % payers.length];
      const t = performance.now();
      const r = await fetch(cg.url, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${p.token}` }, body: JSON.stringify({ query: PAY, variables: { s: p.statement, k: `bench-${process.pid}-${i}` } }) });
      const j = await r.json();
      const ok = !j.errors && j.data?.makePayment?.status === 'SUCCEEDED';
      if (ok) succeeded++;
      return { ok, ms: performance.now() - t };
    };
    const payLoop = async (seconds) => {
      const planned = Math.round(opt.payRate * seconds), out = [];
      const t0 = performance.now();
      for (let i = 0; i < planned;) {
        const due = Math.min(planned, Math.floor(((performance.now() - t0) / 1000) * opt.payRate));
        for (; i < due; i++) out.push(pay(payN++));
        await sleep(5);
      }
      const done = await Promise.all(out);
      const ms = done.map((d) => d.ms).sort((x, y) => x - y);
      const at = (q) => ms[Math.min(ms.length - 1, Math.floor(q * ms.length))];
      return { requests: done.length, rps: done.length / seconds, ok: done.filter((d) => d.ok).length, errors: done.filter((d) => !d.ok).length, p50: at(0.5), p90: at(0.9), p95: at(0.95), p99: at(0.99), max: ms[ms.length - 1] };
    };
    for (let round = 1; round <= opt.rounds; round++) {
      await Promise.all([ohaAsync(ohaArgs(cg.url, token, WU, opt.rate, bodiesPg)), payLoop(WU)]);
      let reads, pays;
      const res = await measureAudited(cg, pgEnv, async () => {
        [reads, pays] = await Promise.all([ohaAsync(ohaArgs(cg.url, token, W, opt.rate, bodiesPg)), payLoop(W)]);
        // The audit check counts the reads' patient.read rows; CPU is over both.
        return { ...pays, requests: pays.requests + reads.requests, ok: reads.ok };
      }, { allowance: C });
      const shared = { cpuUsPerReq: res.cpuUsPerReq, pgCpuUsPerReq: res.pgCpuUsPerReq, peakRssMb: res.peakRssMb, disk: res.disk };
      const payRow = { ...pays, ...shared };
      const readRow = { ...reads, ...shared, audit: res.audit };
      record('g.payments', 'Caregraph', round, payRow);
      record('g.reads', 'Caregraph', round, readRow);
      gRuns.push({ pay: payRow, reads: readRow });
    }
    tables.push(table(`(g) makePayment at ${opt.payRate}/s (sandbox gateway, 1.00 each, 50 patients paying their own statements) behind patient reads at ${opt.rate} req/s; CPU per request over both`, [['makePayment', gRuns.map((r) => r.pay)], [`patient reads (${opt.rate}/s)`, gRuns.map((r) => r.reads)]]));
    const db = pgEnv.DATABASE_URL;
    const q = (sql) => Number(psql(db, sql));
    ledger = {
      succeeded,
      payments: q("SELECT count(*) FROM payments WHERE status = 'SUCCEEDED'"),
      charges: q("SELECT count(*) FROM sandbox_charges WHERE outcome = 'APPROVED'"),
      ledgerPayments: q("SELECT count(*) FROM ledger_entries WHERE kind = 'PAYMENT'"),
      doubleEntries: q("SELECT count(*) FROM (SELECT payment_id FROM ledger_entries WHERE kind = 'PAYMENT' GROUP BY payment_id HAVING count(*) > 1) x"),
      unbacked: q("SELECT count(*) FROM payments p WHERE p.status = 'SUCCEEDED' AND NOT EXISTS (SELECT 1 FROM ledger_entries l WHERE l.payment_id = p.id AND l.kind = 'PAYMENT')"),
      overdrawn: q('SELECT count(*) FROM (SELECT statement_id FROM ledger_entries GROUP BY statement_id HAVING sum(amount_cents) < 0) x'),
      chargedCents: q("SELECT coalesce(sum(amount_cents), 0) FROM sandbox_charges WHERE outcome = 'APPROVED'"),
      ledgerCents: q("SELECT coalesce(-sum(amount_cents), 0) FROM ledger_entries WHERE kind = 'PAYMENT'"),
    };
    ledger.ok = ledger.payments === ledger.succeeded && ledger.charges === ledger.payments && ledger.ledgerPayments === ledger.payments && ledger.doubleEntries === 0 && ledger.unbacked === 0 && ledger.overdrawn === 0 && ledger.chargedCents === ledger.ledgerCents;
    record('g.ledger', 'Caregraph', 1, ledger);
    console.log(`\n(g) makePayment p95 ${f(median(gRuns.map((r) => r.pay.p95)), 2)} ms (target ≤ 30); ledger afterwards: ${ledger.succeeded} SUCCEEDED answers, ${ledger.payments} SUCCEEDED payments, ${ledger.charges} approved gateway charges, ${ledger.ledgerPayments} PAYMENT entries (${ledger.doubleEntries} doubled, ${ledger.unbacked} missing), ${ledger.chargedCents} cents charged = ${ledger.ledgerCents} cents in the ledger, ${ledger.overdrawn} statements below zero: ${ledger.ok ? 'no double charge' : 'CHECK FAILED'}`);
  }
  // (h) hostile shapes against both Caregraph servers: refused by their limits, the process
  // alive and its memory flat afterwards.
  let hostileOk = true;
  for (const srv of want('h') ? [cg, cgLite] : []) {
    log(`hostile shapes against ${srv.name}`);
    const h = await hostile({ url: srv.url, pid: srv.pid, count: opt.smoke ? 20 : 200, parallel: 8, cpuUs, memKb, log });
    for (const row of h.rows) record('h', srv.name, 1, row);
    tables.push(h.text);
    hostileOk &&= h.ok;
  }
  const failed = results.filter((r) => r.audit && !r.audit.ok);
  if (!hostileOk) failed.push({ hostile: true });
  if (ledger && !ledger.ok) failed.push({ ledger });
  fs.appendFileSync(jsonl, JSON.stringify({ run: runId, summary: true, patients: opt.patients, idleRssMb, readP99GrowthWithLogins: growth, auditFailures: failed.length }) + '\n');

  log(`removed ${await redisCleanup(prefix)} Redis keys`);
  for (const ch of children) ch.kill('SIGTERM');
  await sleep(500);
  for (const db of [pgDb, peerDb]) psql(admin, `DROP DATABASE IF EXISTS ${db} WITH (FORCE)`);
  fs.rmSync(work, { recursive: true, force: true });
  if (failed.length) {
    console.log(`\nFAILED: ${failed.length} run(s) lost or invented audit rows (see above)`);
    process.exit(1);
  }
  console.log(`\nresults appended to ${path.relative(root, jsonl)}`);
}

main().catch((err) => { console.error('bench failed:', err.message); process.exit(1); });
