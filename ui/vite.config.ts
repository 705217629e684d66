import { defineConfig } from 'vite';
import preact from '@preact/preset-vite';

// `npm run dev` proxies the API and the VNC WebSocket to a local
// `streamspace up` (default 127.0.0.1:8080, or STREAMSPACE_URL).
const backend = process.env.STREAMSPACE_URL ?? 'http://127.0.0.1:8080';

export default defineConfig({
  plugins: [preact()],
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    // noVNC uses top-level await (WebCodecs probe).
    target: 'es2022',
    chunkSizeWarningLimit: 600,
  },
  server: {
    proxy: {
      '/api': { target: backend, changeOrigin: false },
      '/vnc': { target: backend, ws: true, changeOrigin: false },
      '/healthz': { target: backend },
    },
  },
});
