// The StreamSpace HTTP API as the browser sees it. Authentication is the
// HttpOnly `streamspace_token` cookie set by the login endpoint, so no token
// is ever held in JavaScript.
//
// The types are the API's own: api-schema.ts is generated from ui/openapi.json,
// the document the server serves at /api/v1/openapi.json (docs/UI.md says how
// to regenerate it), so `tsc` fails wherever the UI no longer fits the API.

import type { components } from './api-schema';

type Schemas = components['schemas'];

export type Role = Schemas['Role'];
export type User = Schemas['User'];
export type Phase = Schemas['Phase'];
export type DesiredState = Schemas['DesiredState'];
export type Session = Schemas['Session'];
export type PortSpec = Schemas['PortSpec'];
export type Template = Schemas['Template'];
export type Agent = Schemas['Agent'];
export type EnrollmentToken = Schemas['EnrollmentToken'];
export type Prepull = Schemas['Prepull'];
export type Group = Schemas['Group'];
export type Limits = Schemas['Limits'];
export type MfaStatus = Schemas['MfaStatus'];
export type TotpEnrolment = Schemas['TotpEnrolment'];
export type FileListing = Schemas['FileListing'];

/**
 * A template as the form sends it: the API's input, except that a port,
 * process limit or pool size that is not a number is sent as typed, so that
 * the API's message quotes it.
 */
export type TemplateDraftInput = Omit<Schemas['TemplateInput'], 'ports' | 'pids_limit' | 'warm_pool'> & {
  ports: (Omit<Schemas['PortInput'], 'port'> & { port: number | string })[];
  pids_limit?: number | string;
  warm_pool?: number | string;
};

/** A failed API call: the server's message, and the input field at fault if any. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly field?: string,
  ) {
    super(message);
    this.name = 'ApiError';
  }

  /** The message without the "field: " prefix the server puts on field errors. */
  get detail(): string {
    if (this.field && this.message.startsWith(`${this.field}: `)) {
      return this.message.slice(this.field.length + 2);
    }
    return this.message;
  }
}

type Listener = () => void;
const unauthorizedListeners = new Set<Listener>();

/** Called when any request answers 401: the login has expired or was revoked. */
export function onUnauthorized(listener: Listener): () => void {
  unauthorizedListeners.add(listener);
  return () => unauthorizedListeners.delete(listener);
}

export async function request<T>(method: string, path: string, body?: unknown): Promise<T> {
  let response: Response;
  try {
    response = await fetch(`/api/v1${path}`, {
      method,
      credentials: 'same-origin',
      headers: body === undefined ? {} : { 'Content-Type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch {
    throw new ApiError(0, 'Cannot reach the StreamSpace server. Check your connection and try again.');
  }
  if (response.status === 204) return undefined as T;
  const text = await response.text();
  let data: unknown = undefined;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = undefined;
    }
  }
  if (!response.ok) {
    const err = data as { error?: string; field?: string } | undefined;
    const message =
      err?.error ?? `The server answered ${response.status} ${response.statusText || ''}`.trim();
    if (response.status === 401 && !path.startsWith('/auth/login')) {
      unauthorizedListeners.forEach((l) => l());
    }
    throw new ApiError(response.status, message, err?.field);
  }
  return data as T;
}

export const api = {
  login: (username: string, password: string) =>
    request<Schemas['LoginOutcome']>('POST', '/auth/login', { username, password } satisfies Schemas['Login']),
  logout: () => request<void>('POST', '/auth/logout'),
  providers: () => request<Schemas['Providers']>('GET', '/auth/providers'),
  logoutAll: () => request<void>('POST', '/auth/logout-all'),
  changePassword: (current_password: string, new_password: string) =>
    request<void>('PUT', '/users/me/password', { current_password, new_password } satisfies Schemas['PasswordChange']),
  me: () => request<User>('GET', '/users/me'),

  // MFA (docs/MFA.md): the login's second step, and one's own enrolment.
  loginMfa: (challenge: string, code: string) =>
    request<Schemas['LoginAnswer']>('POST', '/auth/login/mfa', { challenge, code } satisfies Schemas['MfaLogin']),
  myMfa: () => request<MfaStatus>('GET', '/users/me/mfa'),
  startTotp: () => request<TotpEnrolment>('POST', '/users/me/mfa/totp'),
  confirmTotp: (code: string) =>
    request<Schemas['RecoveryCodes']>('POST', '/users/me/mfa/totp/confirm', { code } satisfies Schemas['CodeInput']),
  newRecoveryCodes: (code: string) =>
    request<Schemas['RecoveryCodes']>('POST', '/users/me/mfa/recovery-codes', { code } satisfies Schemas['CodeInput']),
  disableMfa: (password: string, code: string) =>
    request<void>('DELETE', '/users/me/mfa', { password, code } satisfies Schemas['DisableInput']),

  templates: () => request<Template[]>('GET', '/templates'),
  template: (id: string) => request<Template>('GET', `/templates/${encodeURIComponent(id)}`),
  createTemplate: (t: TemplateDraftInput) => request<Template>('POST', '/templates', t),
  updateTemplate: (id: string, t: TemplateDraftInput) =>
    request<Template>('PUT', `/templates/${encodeURIComponent(id)}`, t),
  deleteTemplate: (id: string) => request<void>('DELETE', `/templates/${encodeURIComponent(id)}`),
  prepull: (id: string) => request<Prepull>('POST', `/templates/${encodeURIComponent(id)}/prepull`),
  prepullStatus: (id: string) => request<Prepull>('GET', `/templates/${encodeURIComponent(id)}/prepull`),

  sessions: (opts: { all?: boolean; includeTerminated?: boolean } = {}) => {
    const q = new URLSearchParams();
    if (opts.all) q.set('all', 'true');
    if (opts.includeTerminated) q.set('include_terminated', 'true');
    const qs = q.toString();
    return request<Session[]>('GET', `/sessions${qs ? `?${qs}` : ''}`);
  },
  session: (id: string) => request<Session>('GET', `/sessions/${encodeURIComponent(id)}`),
  launch: (template: string) =>
    request<Session>('POST', '/sessions', { template } satisfies Schemas['NewSessionInput']),
  setState: (id: string, state: DesiredState) =>
    request<Session>('PUT', `/sessions/${encodeURIComponent(id)}/state`, { state } satisfies Schemas['StateInput']),
  terminate: (id: string) => request<Session>('DELETE', `/sessions/${encodeURIComponent(id)}`),
  files: (id: string, path = '') =>
    request<FileListing>('GET', `/sessions/${encodeURIComponent(id)}/files?path=${encodeURIComponent(path)}`),
  /** Where a file of the session's files folder is downloaded from (GET) and uploaded to (PUT). */
  fileUrl: (id: string, path: string) =>
    `/api/v1/sessions/${encodeURIComponent(id)}/files/${encodeURIComponent(path)}`,

  agents: () => request<Agent[]>('GET', '/agents'),
  deleteAgent: (id: string) => request<void>('DELETE', `/agents/${encodeURIComponent(id)}`),
  drain: (id: string) => request<Agent>('POST', `/agents/${encodeURIComponent(id)}/drain`),
  undrain: (id: string) => request<Agent>('POST', `/agents/${encodeURIComponent(id)}/undrain`),
  enrollmentToken: (ttl?: string, pool?: string) =>
    request<EnrollmentToken>(
      'POST',
      '/agents/enrollment-tokens',
      { ...(ttl ? { ttl } : {}), ...(pool ? { pool } : {}) } satisfies Schemas['TokenRequest'],
    ),
  setAgentPool: (id: string, pool: string) =>
    request<Agent>('PATCH', `/agents/${encodeURIComponent(id)}`, { pool } satisfies Schemas['AgentUpdate']),

  groups: () => request<Group[]>('GET', '/groups'),
  createGroup: (g: Schemas['NewGroup']) => request<Group>('POST', '/groups', g),
  updateGroup: (id: string, g: Schemas['GroupUpdate']) =>
    request<Group>('PATCH', `/groups/${encodeURIComponent(id)}`, g),
  deleteGroup: (id: string, force = false) =>
    request<void>('DELETE', `/groups/${encodeURIComponent(id)}${force ? '?force=true' : ''}`),
  addGroupMember: (id: string, userId: string) =>
    request<Group>('PUT', `/groups/${encodeURIComponent(id)}/members/${encodeURIComponent(userId)}`),
  removeGroupMember: (id: string, userId: string, force = false) =>
    request<Group>(
      'DELETE',
      `/groups/${encodeURIComponent(id)}/members/${encodeURIComponent(userId)}${force ? '?force=true' : ''}`,
    ),

  users: () => request<User[]>('GET', '/users'),
  createUser: (u: Schemas['NewUser']) => request<User>('POST', '/users', u),
  updateUser: (id: string, u: Schemas['UserUpdate']) =>
    request<User>('PUT', `/users/${encodeURIComponent(id)}`, u),
  deleteUser: (id: string) => request<void>('DELETE', `/users/${encodeURIComponent(id)}`),
};

/** A readable message for anything a promise may reject with. */
export function errorMessage(err: unknown): string {
  if (err instanceof ApiError) return err.message;
  if (err instanceof Error) return err.message;
  return String(err);
}

export type ApiToken = Schemas['ApiToken'];
export type CreatedApiToken = Schemas['CreatedToken'];

/** Your API tokens (`/users/me/tokens`): the secret comes only from `create`. */
export const tokenApi = {
  list: () => request<ApiToken[]>('GET', '/users/me/tokens'),
  create: (name: string, expires_in: string) =>
    request<CreatedApiToken>('POST', '/users/me/tokens', { name, expires_in } satisfies Schemas['NewToken']),
  revoke: (id: string) => request<void>('DELETE', `/users/me/tokens/${encodeURIComponent(id)}`),
};

export type Share = Schemas['Share'];
export type ShareMode = Schemas['ShareMode'];
export type SessionShares = Schemas['SessionShares'];
export type SharedSession = Schemas['SharedSession'];
export type CreatedShare = Schemas['CreatedShare'];

/** Session sharing (docs/SHARING.md): the owner's shares, and the sessions shared with you. */
export const shareApi = {
  list: (session: string) => request<SessionShares>('GET', `/sessions/${encodeURIComponent(session)}/shares`),
  create: (session: string, input: Schemas['ShareInput']) =>
    request<CreatedShare>('POST', `/sessions/${encodeURIComponent(session)}/shares`, input),
  end: (session: string, share: string) =>
    request<void>('DELETE', `/sessions/${encodeURIComponent(session)}/shares/${encodeURIComponent(share)}`),
  sharedWithMe: () => request<SharedSession[]>('GET', '/shared-sessions'),
  join: (token: string) =>
    request<Schemas['JoinedSession']>('POST', '/share-links/join', { token } satisfies Schemas['JoinLink']),
};
