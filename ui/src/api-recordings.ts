// Session recordings (admins): list, download for playback, delete
// (docs/RECORDING.md). Kept beside api.ts so only the recordings page loads it.

import type { components } from './api-schema';
import { ApiError, request } from './api';

export type RecordingView = components['schemas']['RecordingView'];

export const recordingsApi = {
  list: (sessionId?: string) =>
    request<RecordingView[]>('GET', `/recordings${sessionId ? `?session_id=${encodeURIComponent(sessionId)}` : ''}`),
  remove: (id: string) => request<void>('DELETE', `/recordings/${encodeURIComponent(id)}`),
  /** The URL of the file, for a download link. */
  fileUrl: (id: string) => `/api/v1/recordings/${encodeURIComponent(id)}`,
  /** The file's bytes, for the player. */
  async file(id: string): Promise<ArrayBuffer> {
    const response = await fetch(recordingsApi.fileUrl(id), { credentials: 'same-origin' });
    if (!response.ok) {
      const err = (await response.json().catch(() => ({}))) as { error?: string };
      throw new ApiError(response.status, err.error ?? `The server answered ${response.status}`);
    }
    return response.arrayBuffer();
  },
};
