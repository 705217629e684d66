// The audit log's part of the API: the admin's filtered pages and export,
// a user's own recent logins. Kept beside api.ts so the pages that use it
// import only what they need.

import type { components } from './api-schema';
import { request } from './api';

type Schemas = components['schemas'];

export type AuditEvent = Schemas['AuditEventView'];
export type AuditPage = Schemas['AuditPage'];

/** The filters of the Audit page, as the API names them; empty means any. */
export type AuditFilters = {
  actor: string;
  kind: string;
  target: string;
  /** `datetime-local` values, read as the browser's local time. */
  since: string;
  until: string;
};

export const NO_FILTERS: AuditFilters = { actor: '', kind: '', target: '', since: '', until: '' };

/** The query string for `filters` (and a cursor, a limit), without `?`. */
export function auditQuery(filters: AuditFilters, extra: Record<string, string> = {}): string {
  const q = new URLSearchParams();
  for (const key of ['actor', 'kind', 'target'] as const) {
    const value = filters[key].trim();
    if (value) q.set(key, value);
  }
  for (const key of ['since', 'until'] as const) {
    // The API takes UTC; the form shows local time.
    if (filters[key]) q.set(key, new Date(filters[key]).toISOString());
  }
  for (const [key, value] of Object.entries(extra)) q.set(key, value);
  return q.toString();
}

export const auditApi = {
  page: (filters: AuditFilters, cursor?: string) =>
    request<AuditPage>('GET', `/audit?${auditQuery(filters, cursor ? { cursor } : {})}`),
  /** Where the browser downloads the export from (the cookie authenticates it). */
  exportUrl: (filters: AuditFilters) => {
    const q = auditQuery(filters);
    return `/api/v1/audit/export${q ? `?${q}` : ''}`;
  },
  myLogins: () => request<Schemas['MyLogins']>('GET', '/users/me/logins'),
};

export type Settings = Schemas['Settings'];

/** The run-time settings admins change (the Settings page). */
export const settingsApi = {
  get: () => request<Settings>('GET', '/settings'),
  put: (s: Settings) => request<Settings>('PUT', '/settings', s),
};
