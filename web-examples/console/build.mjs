// Bundles the console into ../../src/http/console/ (console.js, console.css, index.html),
// which the server embeds. `node build.mjs --check` builds in memory and fails when the
// committed files differ from what these sources build.
import { createHash } from 'node:crypto';
import { readFile, writeFile, mkdir } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const here = dirname(fileURLToPath(import.meta.url));
const outDir = join(here, '../../src/http/console');
const check = process.argv.includes('--check');

const result = await build({
  entryPoints: [join(here, 'src/main.jsx')],
  outfile: join(outDir, 'console.js'),
  bundle: true,
  minify: true,
  format: 'iife',
  target: ['chrome111', 'edge111', 'firefox114', 'safari16.4'],
  jsx: 'automatic',
  define: { 'process.env.NODE_ENV': '"production"' },
  // GraphiQL's stylesheet embeds its fonts and images as data: URLs already.
  write: false,
  logLevel: 'warning',
});

const files = new Map(result.outputFiles.map((f) => [f.path, Buffer.from(f.contents)]));
const js = files.get(join(outDir, 'console.js'));
const css = files.get(join(outDir, 'console.css'));
if (!js || !css) throw new Error('esbuild did not write console.js and console.css');

// The assets are cached for a year; the page names them with their content hash.
const version = (b) => createHash('sha256').update(b).digest('hex').slice(0, 16);
const template = await readFile(join(here, 'src/index.html'), 'utf8');
const html = template
  .replace('{{js}}', `/graphql/console/console.js?v=${version(js)}`)
  .replace('{{css}}', `/graphql/console/console.css?v=${version(css)}`);
files.set(join(outDir, 'index.html'), Buffer.from(html));

if (check) {
  const stale = [];
  for (const [path, contents] of files) {
    const committed = await readFile(path).catch(() => null);
    if (!committed || !committed.equals(contents)) stale.push(path);
  }
  if (stale.length) {
    console.error(`stale console bundle (${stale.join(', ')}): run scripts/build-console.sh`);
    process.exit(1);
  }
} else {
  await mkdir(outDir, { recursive: true });
  for (const [path, contents] of files) await writeFile(path, contents);
}
for (const [path, contents] of files) {
  console.log(`${check ? 'up to date' : 'wrote'} ${path.slice(outDir.length + 1)} (${(contents.length / 1024).toFixed(1)} KiB)`);
}
