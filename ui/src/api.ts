// The StreamSpace HTTP API as the browser sees it. Authentication is the
// HttpOnly `streamspace_token` cookie set by the login endpoint, so no token
// is ever held in JavaScript.

export type Role = 'user' | 'admin';

export interface User {
  id: string;
  username: string;
  role: Role;
}

export type Phase =
  | 'Pending'
  | 'Starting'
  | 'Running'
  | 'Hibernating'
  | 'Hibernated'
  | 'Waking'
  | 'Stopping'
  | 'Terminated'
  | 'Failed';

export type DesiredState = 'running' | 'hibernated' | 'terminated';

export interface Resources {
  cpu?: string;
  memory?: string;
}

export interface Session {
  id: string;
  user: string;
  user_id: string;
  template: string;
  agent_id: string | null;
  agent_name: string | null;
  /** What the session uses now, e.g. `{cpu: "120m", memory: "18Mi"}`, when measured. */
  usage: { cpu: string; memory: string } | null;
  platform: string;
  state: DesiredState;
  phase: Phase;
  message: string | null;
  url: string;
  resources: Resources;
  /** Whether the session's agent is reachable; `offline` means changes wait for it. */
  agent_status: 'online' | 'offline' | 'draining' | null;
  idle_timeout: string | null;
  created_at: string;
  updated_at: string;
  last_activity: string;
}

export interface PortSpec {
  name: string;
  port: number;
  protocol: 'vnc' | 'http';
}

export interface TemplateSpec {
  name: string;
  display_name: string;
  description: string;
  category: string;
  icon: string;
  image: string;
  ports: PortSpec[];
  /** Shown to admins only (empty for others), like `secret_env`. */
  env: Record<string, string>;
  secret_env: Record<string, string>;
  resources: Resources;
  /** The most users may ask for; unset: the template's own `resources`. */
  max_resources: Resources;
  /** Variables users may set when starting a session. */
  user_env: string[];
  user_idle_timeout: boolean;
  persistent_home: boolean;
  home_path: string;
  idle_timeout: string | null;
  platforms: string[];
  pids_limit: number;
  capabilities: string[];
}

export interface Template extends TemplateSpec {
  id: string;
  created_at: string;
  updated_at: string;
}

export interface Agent {
  id: string;
  name: string;
  platform: string;
  region: string | null;
  labels: Record<string, string>;
  status: 'online' | 'offline' | 'draining';
  draining: boolean;
  version: string | null;
  last_heartbeat: string | null;
  capacity: { max_sessions: number; cpu?: string; memory?: string };
  capabilities: { hibernation: boolean; persistent_storage: boolean; gpu: boolean };
  session_count: number;
  metrics: {
    sessions_running: number;
    cpu_percent: number;
    memory_used_bytes: number;
    memory_total_bytes: number;
  } | null;
  created_at: string;
  /** What its last inventory held that is in nobody's list (see docs/SECURITY.md). */
  unverified_sessions: UnverifiedSession[];
}

export interface UnverifiedSession {
  session_id: string;
  phase: string;
  claimed_user: string | null;
  claimed_template: string | null;
  reason: string;
}

export interface EnrollmentToken {
  token: string;
  expires_at: string;
  command: string;
}

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

async function request<T>(method: string, path: string, body?: unknown): Promise<T> {
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
    if (response.status === 401 && path !== '/auth/login') {
      unauthorizedListeners.forEach((l) => l());
    }
    throw new ApiError(response.status, message, err?.field);
  }
  return data as T;
}

export const api = {
  login: (username: string, password: string) =>
    request<{ user: User; expires_at: string }>('POST', '/auth/login', { username, password }),
  logout: () => request<void>('POST', '/auth/logout'),
  logoutAll: () => request<void>('POST', '/auth/logout-all'),
  changePassword: (current_password: string, new_password: string) =>
    request<void>('PUT', '/users/me/password', { current_password, new_password }),
  me: () => request<User>('GET', '/users/me'),

  templates: () => request<Template[]>('GET', '/templates'),
  template: (id: string) => request<Template>('GET', `/templates/${encodeURIComponent(id)}`),
  createTemplate: (t: unknown) => request<Template>('POST', '/templates', t),
  updateTemplate: (id: string, t: unknown) =>
    request<Template>('PUT', `/templates/${encodeURIComponent(id)}`, t),
  deleteTemplate: (id: string) => request<void>('DELETE', `/templates/${encodeURIComponent(id)}`),

  sessions: (opts: { all?: boolean; includeTerminated?: boolean } = {}) => {
    const q = new URLSearchParams();
    if (opts.all) q.set('all', 'true');
    if (opts.includeTerminated) q.set('include_terminated', 'true');
    const qs = q.toString();
    return request<Session[]>('GET', `/sessions${qs ? `?${qs}` : ''}`);
  },
  session: (id: string) => request<Session>('GET', `/sessions/${encodeURIComponent(id)}`),
  launch: (template: string) => request<Session>('POST', '/sessions', { template }),
  setState: (id: string, state: DesiredState) =>
    request<Session>('PUT', `/sessions/${encodeURIComponent(id)}/state`, { state }),
  terminate: (id: string) => request<Session>('DELETE', `/sessions/${encodeURIComponent(id)}`),

  agents: () => request<Agent[]>('GET', '/agents'),
  deleteAgent: (id: string) => request<void>('DELETE', `/agents/${encodeURIComponent(id)}`),
  drain: (id: string) => request<Agent>('POST', `/agents/${encodeURIComponent(id)}/drain`),
  undrain: (id: string) => request<Agent>('POST', `/agents/${encodeURIComponent(id)}/undrain`),
  enrollmentToken: (ttl?: string) =>
    request<EnrollmentToken>('POST', '/agents/enrollment-tokens', ttl ? { ttl } : {}),

  users: () => request<User[]>('GET', '/users'),
  createUser: (u: { username: string; password: string; role: Role }) =>
    request<User>('POST', '/users', u),
  updateUser: (id: string, u: { role?: Role; password?: string }) =>
    request<User>('PUT', `/users/${encodeURIComponent(id)}`, u),
  deleteUser: (id: string) => request<void>('DELETE', `/users/${encodeURIComponent(id)}`),
};

/** A readable message for anything a promise may reject with. */
export function errorMessage(err: unknown): string {
  if (err instanceof ApiError) return err.message;
  if (err instanceof Error) return err.message;
  return String(err);
}
