#!/usr/bin/env node
// The disk beside a measured round: every 20 ms, one 4 KiB write and fdatasync in DIR (the
// kind of flush every audit batch and every PostgreSQL commit waits for). On SIGTERM it
// prints one JSON line: how many flushes, their p50 and max, and how many took over 10 ms.
// A round whose latency tail lines up with slow flushes here was held up by the disk, not by
// the server. The probe adds 50 small flushes a second, against the ~1,000 of a busy round.
//
//   node bench/diskprobe.mjs DIR
import fs from 'node:fs';
import path from 'node:path';

const dir = process.argv[2] ?? '.';
const file = path.join(dir, `diskprobe-${process.pid}.tmp`);
const fd = fs.openSync(file, 'w');
const block = Buffer.alloc(4096, 0x5a);
const lat = [];
let slot = 0;

const timer = setInterval(() => {
  const t0 = process.hrtime.bigint();
  fs.writeSync(fd, block, 0, block.length, (slot++ % 256) * block.length);
  fs.fdatasyncSync(fd);
  lat.push(Number(process.hrtime.bigint() - t0) / 1e6);
}, 20);

process.on('SIGTERM', () => {
  clearInterval(timer);
  fs.closeSync(fd);
  fs.rmSync(file, { force: true });
  const s = [...lat].sort((a, b) => a - b);
  const at = (q) => (s.length ? s[Math.min(s.length - 1, Math.floor(q * s.length))] : NaN);
  process.stdout.write(JSON.stringify({ flushes: s.length, p50Ms: at(0.5), maxMs: s.length ? s[s.length - 1] : NaN, over10Ms: s.filter((x) => x > 10).length }) + '\n');
  process.exit(0);
});
