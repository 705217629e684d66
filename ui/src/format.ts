import { useEffect, useState } from 'preact/hooks';
import type { Phase } from './api';

/** "just now", "5 min ago", "3 h ago", "2 d ago". */
export function ago(iso: string | null | undefined, now = Date.now()): string {
  if (!iso) return 'never';
  const t = Date.parse(iso);
  if (Number.isNaN(t)) return '—';
  const s = Math.max(0, Math.round((now - t) / 1000));
  if (s < 10) return 'just now';
  if (s < 60) return `${s} s ago`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ago`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h} h ago`;
  return `${Math.floor(h / 24)} d ago`;
}

/** A duration since `iso`, without "ago": "12 min", "3 h 5 min". */
export function age(iso: string, now = Date.now()): string {
  const t = Date.parse(iso);
  if (Number.isNaN(t)) return '—';
  const m = Math.max(0, Math.floor((now - t) / 60000));
  if (m < 1) return '< 1 min';
  if (m < 60) return `${m} min`;
  const h = Math.floor(m / 60);
  if (h < 48) return m % 60 ? `${h} h ${m % 60} min` : `${h} h`;
  return `${Math.floor(h / 24)} d`;
}

export function absolute(iso: string | null | undefined): string {
  if (!iso) return '';
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? iso : d.toLocaleString();
}

export function bytes(n: number): string {
  if (!Number.isFinite(n) || n <= 0) return '0 B';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${n >= 10 || i === 0 ? Math.round(n) : n.toFixed(1)} ${units[i]}`;
}

/** Re-renders the caller every `ms` so relative times stay true. */
export function useNow(ms = 15000): number {
  const [now, setNow] = useState(Date.now());
  useEffect(() => {
    const t = setInterval(() => setNow(Date.now()), ms);
    return () => clearInterval(t);
  }, [ms]);
  return now;
}

export type Tone = 'green' | 'blue' | 'amber' | 'grey' | 'red' | 'violet';

export function phaseTone(phase: Phase): Tone {
  switch (phase) {
    case 'Running':
      return 'green';
    case 'Pending':
    case 'Pulling':
    case 'Starting':
    case 'Waking':
      return 'blue';
    case 'Hibernating':
    case 'Hibernated':
      return 'violet';
    case 'Stopping':
    case 'Terminated':
      return 'grey';
    case 'Failed':
      return 'red';
  }
}

/** Phases in which the session is on its way somewhere. */
export function isTransitional(phase: Phase): boolean {
  return ['Pending', 'Pulling', 'Starting', 'Waking', 'Hibernating', 'Stopping'].includes(phase);
}

const UNITS: Record<string, number> = {
  '': 1,
  k: 1e3,
  M: 1e6,
  G: 1e9,
  T: 1e12,
  Ki: 2 ** 10,
  Mi: 2 ** 20,
  Gi: 2 ** 30,
  Ti: 2 ** 40,
};

/** A Kubernetes-style memory quantity ("24682416Ki") made readable ("23.5 GiB"). */
export function memory(q: string | undefined): string {
  if (!q) return '';
  const m = /^(\d+(?:\.\d+)?)([kMGT]i?|Ki)?$/.exec(q.trim());
  if (!m) return q;
  return bytes(Number(m[1]) * (UNITS[m[2] ?? ''] ?? 1));
}
