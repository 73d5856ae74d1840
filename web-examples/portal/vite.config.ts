// `npm run build` writes dist/, which Caregraph serves at /portal/ (PORTAL_DIR).
// `npm run dev` serves the app on http://localhost:5173/portal/ and forwards the API to a
// running Caregraph (CAREGRAPH_URL, default http://127.0.0.1:8080), so the page, its
// GraphQL calls and the refresh cookie all share one origin, as they do in production.
import { defineConfig } from 'vite';

const api = process.env.CAREGRAPH_URL ?? 'http://127.0.0.1:8080';

export default defineConfig({
  base: '/portal/',
  oxc: { jsx: { runtime: 'automatic' } },
  build: { outDir: 'dist', sourcemap: false, chunkSizeWarningLimit: 1024 },
  server: {
    port: 5173,
    strictPort: true,
    proxy: {
      '/graphql': { target: api, ws: true },
      '/auth': { target: api },
    },
  },
});
