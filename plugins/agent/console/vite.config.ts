import { defineConfig } from 'vite';

// Served by the agent at /console/ under `Content-Security-Policy: default-src 'self'`:
// every asset is a hashed file under assets/, nothing is inlined as a data: URL, and no
// inline script or style is emitted.
export default defineConfig({
  base: '/console/',
  // JSX without a Babel plugin: Vite's own transformer, automatic runtime from Preact.
  oxc: {
    jsx: { runtime: 'automatic', importSource: 'preact' },
  },
  build: {
    outDir: 'dist',
    assetsDir: 'assets',
    assetsInlineLimit: 0,
    modulePreload: { polyfill: false },
    target: 'es2022',
    sourcemap: false,
    emptyOutDir: true,
  },
});
